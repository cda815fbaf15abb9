//! Write sluice plugins in safe Rust.
//!
//! A plugin is a type that implements [`Plugin`] (its name, config schema and constructor) and
//! one of [`Source`], [`Transform`] or [`Sink`]; [`sluice_module!`] builds the static tables and
//! the exported entry point. The SDK owns every `unsafe` line: the author's code sees borrowed
//! [`Batch`]/[`Record`] views whose lifetimes end with the call, a [`Writer`] for output and
//! rejects, and a [`Host`] for logs and counters. Every hook runs inside `catch_unwind`, so a
//! panic becomes an ERROR status (or a rejected record) carrying the panic's message, never an
//! unwind across the C boundary. That needs `panic = "unwind"` (Cargo's default) in the plugin's
//! profile: with `panic = "abort"` a panic kills the host process.
//!
//! ```ignore
//! use serde::Deserialize;
//! use sluice_sdk::{Batch, Host, Plugin, Record, RecordOutput, Result, Transform};
//!
//! #[derive(Deserialize)]
//! struct Config { field: String }
//!
//! struct Uppercase { field: String }
//!
//! impl Plugin for Uppercase {
//!     type Config = Config;
//!     const NAME: &'static core::ffi::CStr = c"uppercase";
//!     const SCHEMA: &'static core::ffi::CStr = cr#"{"fields":[{"name":"field","type":"string","required":true}]}"#;
//!     fn create(config: Config, _host: Host) -> Result<Self> { Ok(Uppercase { field: config.field }) }
//! }
//! impl Transform for Uppercase {
//!     fn process(&self, record: &Record, out: &mut RecordOutput) -> Result<()> { out.forward(record) }
//! }
//! sluice_sdk::sluice_module!("my_plugins", "0.1.0", transform Uppercase);
//! ```

// A panic must unwind to the boundary's catch_unwind; with "abort" it kills the host process.
#[cfg(panic = "abort")]
compile_error!(
    "sluice-sdk needs panic = \"unwind\" in the plugin's Cargo profile: with \"abort\" a panic in a \
     plugin kills the whole sluice host instead of rejecting one record"
);

mod boundary;
mod host;
mod records;
pub mod testing;

pub use host::{Host, LogLevel};
pub use records::{Batch, OutRecord, Position, Record, RecordOutput, Writer};
pub use serde;
pub use serde_json;
pub use sluice_sdk_sys as sys;

#[doc(hidden)]
pub use boundary::tables;

use std::ffi::CStr;
use std::fmt;

/// Why a hook failed; it maps onto the ABI's statuses.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Transient: the host retries the call with backoff (SLUICE_RETRY).
    Retry(String),
    /// This batch or record failed: the pipeline's error policy decides (SLUICE_ERROR).
    Failed(String),
    /// The stage cannot go on: its pipeline stops cleanly (SLUICE_FATAL).
    Fatal(String),
    /// A config field is wrong; the host turns `field` into FILE:LINE:COL (SLUICE_ERROR).
    Config { field: String, message: String },
}

impl Error {
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(message.into())
    }
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }
    pub(crate) fn status(&self) -> sys::sluice_status {
        match self {
            Error::Retry(_) => sys::SLUICE_RETRY,
            Error::Fatal(_) => sys::SLUICE_FATAL,
            Error::Failed(_) | Error::Config { .. } => sys::SLUICE_ERROR,
        }
    }
    pub(crate) fn message(&self) -> &str {
        match self {
            Error::Retry(m) | Error::Failed(m) | Error::Fatal(m) => m,
            Error::Config { message, .. } => message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// What every plugin declares: its name, config and constructor.
///
/// THREADING: the host may call one instance from several threads at once (a transform's
/// `process`, a sink's `put`), hence `Send + Sync`; state that changes goes behind a `Mutex` or
/// an atomic.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The config, deserialized from the JSON object the host passes (defaults filled in from
    /// the schema). A field that does not deserialize is a config error naming that field.
    type Config: serde::de::DeserializeOwned;
    /// The name pipelines use in `type:`.
    const NAME: &'static CStr;
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr = c"";
    /// JSON: {"fields":[{"name","type","doc","default","required","secret","path","enum","min",
    /// "max"}]}; the host checks a pipeline's config against it before `create`.
    const SCHEMA: &'static CStr;

    /// Checks a config without side effects (beyond what deserializing checks).
    fn validate(_config: &Self::Config) -> Result<()> {
        Ok(())
    }
    /// Creates an instance; on the host's control thread.
    fn create(config: Self::Config, host: Host) -> Result<Self>;
    /// Shrinks caches; `level` is the memory pressure in [0, 1+].
    fn on_memory_pressure(&self, _level: f64) {}
    /// State handed to the replacing instance on hot reload.
    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn restore(&self, _state: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// A transform: turns each input record into 0..n output records, or rejects it.
pub trait Transform: Plugin {
    /// One record. An `Err` or a panic rejects this record alone (the rest of the batch goes
    /// on), except `Error::Fatal`, which stops the stage.
    fn process(&self, record: &Record<'_>, out: &mut RecordOutput<'_, '_>) -> Result<()>;

    /// A whole batch; by default `process` for each record, each under its own `catch_unwind`.
    /// Override it to work on the batch at once (then an `Err` or panic fails the whole batch).
    fn process_batch(&self, input: &Batch<'_>, out: &mut Writer<'_>) -> Result<()> {
        boundary::process_each(self, input, out)
    }
}

/// A sink: makes records durable.
pub trait Sink: Plugin {
    /// Returns once every record of `input` is durable or rejected through `rejects`. An `Err`
    /// or a panic fails the whole batch.
    fn put(&self, input: &Batch<'_>, rejects: &mut Writer<'_>) -> Result<()>;
    /// Makes everything put so far durable.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Called before the host commits source positions.
    fn pre_commit(&self) -> Result<()> {
        self.flush()
    }
}

/// The bounds of one poll (`sluice_poll_args`): a struct, so that a later ABI minor can add one
/// without breaking every source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollLimits {
    /// Append at most this many records; 0 while the host applies backpressure (or has no byte
    /// room): append nothing, but return promptly anyway.
    pub max_records: u32,
    /// Append records until about this many bytes of key + value + headers are appended (the
    /// record that crosses it may still go). `u64::MAX` from a host older than ABI 1.1, which
    /// bounds polls by records only.
    pub max_bytes: u64,
    /// Return within about this long even if nothing arrived.
    pub timeout_ms: u32,
}

impl PollLimits {
    /// # Safety
    /// `args` is the host's live poll arguments.
    pub(crate) unsafe fn from_raw(args: *const sys::sluice_poll_args) -> Self {
        let max_bytes = if sys::has_field!(args, sys::sluice_poll_args, max_bytes) {
            (*args).max_bytes
        } else {
            u64::MAX
        };
        PollLimits {
            max_records: if max_bytes == 0 { 0 } else { (*args).max_records },
            max_bytes,
            timeout_ms: (*args).timeout_ms,
        }
    }

    /// Whether `out` has taken what this poll may append: stop appending then.
    pub fn reached(&self, out: &Writer<'_>) -> bool {
        self.max_records == 0 || out.bytes() >= self.max_bytes
    }
}

/// A source: produces records on its own thread.
pub trait Source: Plugin {
    /// Appends at most `limits.max_records` records, and about `limits.max_bytes` bytes, to
    /// `out` (`out.bytes()` counts them), within about `limits.timeout_ms`. Returns true at the
    /// end of input.
    fn poll(&self, out: &mut Writer<'_>, limits: &PollLimits) -> Result<bool>;
    /// Positions that are done: persist them.
    fn commit(&self, _positions: &[Position<'_>]) -> Result<()> {
        Ok(())
    }
    /// The host pauses (true) or resumes (false) intake; polls continue meanwhile.
    fn set_paused(&self, _paused: bool) {}
}

/// Builds the module's static tables and exports `sluice_module_get`:
/// `sluice_module!("module_name", "1.0.0", transform Uppercase, sink Lines);`
/// (kinds: `source`, `transform`, `sink`).
#[macro_export]
macro_rules! sluice_module {
    ($name:literal, $version:literal, $($kind:ident $plugin:ty),+ $(,)?) => {
        #[no_mangle]
        pub extern "C" fn sluice_module_get(
            host_abi_major: u32,
            _host_abi_minor: u32,
        ) -> *const $crate::sys::sluice_module {
            const COUNT: usize = [$(stringify!($plugin)),+].len();
            static PLUGINS: $crate::tables::PluginList<COUNT> = $crate::tables::PluginList([$({
                static TABLE: $crate::tables::PluginTable = $crate::tables::$kind::<$plugin>();
                &TABLE as *const $crate::tables::PluginTable as *const $crate::sys::sluice_plugin
            }),+]);
            static MODULE: $crate::tables::ModuleTable = $crate::tables::module(
                $crate::tables::c_str(concat!($name, "\0")),
                $crate::tables::c_str(concat!($version, "\0")),
                &PLUGINS as *const $crate::tables::PluginList<COUNT> as *const *const $crate::sys::sluice_plugin,
                COUNT,
            );
            if host_abi_major != $crate::sys::SLUICE_ABI_MAJOR {
                return ::core::ptr::null();
            }
            &MODULE as *const $crate::tables::ModuleTable as *const $crate::sys::sluice_module
        }
    };
}
