//! The `uppercase` transform in Rust: upper-cases one string field of JSON object values.
//! The same plugin as sdk/template/uppercase.cpp (C++) and sdk/examples/c/uppercase.c (C).
use serde::Deserialize;
use sluice_sdk::{sluice_module, Error, Host, OutRecord, Plugin, Record, RecordOutput, Result, Transform};
use std::ffi::CStr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The top-level string field to upper-case.
    field: String,
    /// A value of the field that makes `process` panic: only for the SDK's panic test.
    #[serde(default)]
    panic_on: Option<String>,
}

pub struct Uppercase {
    field: String,
    panic_on: Option<String>,
}

impl Plugin for Uppercase {
    type Config = Config;
    const NAME: &'static CStr = c"uppercase";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr = c"Upper-cases one string field of JSON objects.";
    const SCHEMA: &'static CStr = cr#"{"fields":[
        {"name":"field","type":"string","required":true,"doc":"The top-level string field to upper-case."},
        {"name":"panic_on","type":"string","doc":"Panic on a record whose field has this value (tests)."}]}"#;

    fn validate(config: &Config) -> Result<()> {
        if config.field.is_empty() {
            return Err(Error::config("field", "field must not be empty"));
        }
        Ok(())
    }

    fn create(config: Config, _host: Host) -> Result<Self> {
        Ok(Uppercase {
            field: config.field,
            panic_on: config.panic_on,
        })
    }
}

impl Transform for Uppercase {
    // May run on several threads at once: it only reads `self`.
    fn process(&self, record: &Record<'_>, out: &mut RecordOutput<'_, '_>) -> Result<()> {
        let Some(value) = record.value() else {
            return out.forward(record); // tombstones pass unchanged
        };
        let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(value)
            .map_err(|_| Error::failed("uppercase: value is not a JSON object"))?; // rejects this record
        let Some(serde_json::Value::String(text)) = doc.get_mut(&self.field) else {
            return out.forward(record);
        };
        if self.panic_on.as_deref() == Some(text.as_str()) {
            panic!("uppercase: told to panic on {text:?}");
        }
        *text = text.to_uppercase();
        let changed = serde_json::to_vec(&doc).map_err(|e| Error::failed(e.to_string()))?;
        out.emit(&OutRecord::from_record(record).value(Some(&changed))) // the host copies it
    }
}

sluice_module!("rust_uppercase", "0.1.0", transform Uppercase);
