//! The SDK's ABI boundary driven the way the host drives it: through the tables that
//! `sluice_module!` exports, with a fake writer that records appends and rejects.
use serde::Deserialize;
use sluice_sdk::sys;
use sluice_sdk::{
    sluice_module, Batch, Error, Host, OutRecord, Plugin, Record, RecordOutput, Result, Sink, Transform,
    Writer,
};
use std::ffi::{c_char, c_void, CStr};

#[derive(Deserialize)]
struct Config {
    limit: u32,
}

/// Emits each value twice, rejects "bad", panics on "boom".
struct Twice;

impl Plugin for Twice {
    type Config = Config;
    const NAME: &'static CStr = c"twice";
    const SCHEMA: &'static CStr = cr#"{"fields":[{"name":"limit","type":"int"}]}"#;
    fn create(config: Config, _host: Host) -> Result<Self> {
        if config.limit == 0 {
            return Err(Error::config("limit", "limit must be positive"));
        }
        Ok(Twice)
    }
}

impl Transform for Twice {
    fn process(&self, record: &Record<'_>, out: &mut RecordOutput<'_, '_>) -> Result<()> {
        match record.value() {
            Some(b"bad") => Err(Error::failed("bad value")),
            Some(b"boom") => panic!("went boom"),
            _ => {
                out.forward(record)?;
                out.emit(&OutRecord::from_record(record).value(Some(b"copy")))
            }
        }
    }
}

/// Panics in put.
struct Crashy;

impl Plugin for Crashy {
    type Config = serde_json::Value;
    const NAME: &'static CStr = c"crashy";
    const SCHEMA: &'static CStr = cr#"{"fields":[]}"#;
    fn create(_config: serde_json::Value, _host: Host) -> Result<Self> {
        Ok(Crashy)
    }
}

impl Sink for Crashy {
    fn put(&self, _input: &Batch<'_>, _rejects: &mut Writer<'_>) -> Result<()> {
        panic!("sink on fire")
    }
}

sluice_module!("test_module", "1.2.3", transform Twice, sink Crashy);

#[derive(Default)]
struct Captured {
    appended: Vec<(usize, Option<Vec<u8>>)>,
    rejected: Vec<(usize, i32, String)>,
}

unsafe extern "C" fn append(ctx: *mut c_void, index: usize, record: *const sys::sluice_record) -> i32 {
    let captured = &mut *ctx.cast::<Captured>();
    let value = &(*record).value;
    let bytes = (!value.ptr.is_null()).then(|| std::slice::from_raw_parts(value.ptr, value.len).to_vec());
    captured.appended.push((index, bytes));
    sys::SLUICE_OK
}

unsafe extern "C" fn reject(ctx: *mut c_void, index: usize, status: i32, message: *const c_char, len: usize) {
    let captured = &mut *ctx.cast::<Captured>();
    let text = String::from_utf8_lossy(std::slice::from_raw_parts(message.cast::<u8>(), len)).into_owned();
    captured.rejected.push((index, status, text));
}

struct ErrorBuffers {
    message: [u8; 256],
    field: [u8; 64],
}

impl ErrorBuffers {
    fn new() -> Self {
        ErrorBuffers {
            message: [0; 256],
            field: [0; 64],
        }
    }
    fn raw(&mut self) -> sys::sluice_error {
        sys::sluice_error {
            struct_size: std::mem::size_of::<sys::sluice_error>() as u32,
            message: self.message.as_mut_ptr().cast(),
            message_capacity: self.message.len(),
            field: self.field.as_mut_ptr().cast(),
            field_capacity: self.field.len(),
        }
    }
    fn message(&self) -> String {
        CStr::from_bytes_until_nul(&self.message)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
    fn field(&self) -> String {
        CStr::from_bytes_until_nul(&self.field)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

fn plugin(index: usize) -> &'static sys::sluice_plugin {
    let module = unsafe { &*sluice_module_get(sys::SLUICE_ABI_MAJOR, sys::SLUICE_ABI_MINOR) };
    assert_eq!(module.plugin_count, 2);
    unsafe { &**module.plugins.add(index) }
}

fn record(value: &'static [u8]) -> sys::sluice_record {
    *OutRecord::new(Some(value)).as_raw()
}

fn create(table: &sys::sluice_plugin, config: &str, errors: &mut ErrorBuffers) -> (i32, *mut c_void) {
    let mut instance = std::ptr::null_mut();
    let mut error = errors.raw();
    let status = unsafe {
        table.create.unwrap()(
            std::ptr::null(),
            config.as_ptr().cast(),
            config.len(),
            &mut instance,
            &mut error,
        )
    };
    (status, instance)
}

/// Runs `hook` (process or put) over records with these values.
fn run_batch(
    hook: sys::BatchFn,
    instance: *mut c_void,
    values: &[&'static [u8]],
) -> (i32, Captured, ErrorBuffers) {
    let records: Vec<sys::sluice_record> = values.iter().map(|v| record(v)).collect();
    let batch = sys::sluice_batch {
        struct_size: std::mem::size_of::<sys::sluice_batch>() as u32,
        records: records.as_ptr(),
        count: records.len(),
    };
    let mut captured = Captured::default();
    let mut writer = sys::sluice_writer {
        struct_size: std::mem::size_of::<sys::sluice_writer>() as u32,
        host_ctx: (&mut captured as *mut Captured).cast(),
        append: Some(append),
        append_owned: None,
        reject: Some(reject),
    };
    let mut errors = ErrorBuffers::new();
    let mut error = errors.raw();
    let status = unsafe { hook(instance, &batch, &mut writer, &mut error) };
    (status, captured, errors)
}

#[test]
fn module_table_names_every_plugin() {
    let module = unsafe { &*sluice_module_get(sys::SLUICE_ABI_MAJOR, 0) };
    assert_eq!(unsafe { CStr::from_ptr(module.name) }, c"test_module");
    assert_eq!(unsafe { CStr::from_ptr(module.version) }, c"1.2.3");
    assert_eq!(plugin(0).kind, sys::SLUICE_KIND_TRANSFORM);
    assert_eq!(unsafe { CStr::from_ptr(plugin(0).name) }, c"twice");
    assert_eq!(plugin(1).kind, sys::SLUICE_KIND_SINK);
    assert!(plugin(0).process.is_some() && plugin(0).put.is_none());
    assert!(sluice_module_get(sys::SLUICE_ABI_MAJOR + 1, 0).is_null());
}

#[test]
fn a_panic_or_an_error_rejects_only_its_record() {
    let table = plugin(0);
    let mut errors = ErrorBuffers::new();
    let (status, instance) = create(table, r#"{"limit": 3}"#, &mut errors);
    assert_eq!(status, sys::SLUICE_OK, "{}", errors.message());
    let (status, captured, _) = run_batch(table.process.unwrap(), instance, &[b"a", b"boom", b"bad", b"d"]);
    assert_eq!(status, sys::SLUICE_OK);
    let copy = Some(b"copy".to_vec());
    assert_eq!(
        captured.appended,
        vec![
            (0, Some(b"a".to_vec())),
            (0, copy.clone()),
            (3, Some(b"d".to_vec())),
            (3, copy)
        ]
    );
    assert_eq!(
        captured.rejected,
        vec![
            (1, sys::SLUICE_ERROR, "panic: went boom".to_string()),
            (2, sys::SLUICE_ERROR, "bad value".to_string())
        ]
    );
    unsafe { table.destroy.unwrap()(instance) };
}

#[test]
fn a_panic_in_a_sink_is_an_error_status_with_its_message() {
    let table = plugin(1);
    let mut errors = ErrorBuffers::new();
    let (status, instance) = create(table, "{}", &mut errors);
    assert_eq!(status, sys::SLUICE_OK);
    let (status, captured, errors) = run_batch(table.put.unwrap(), instance, &[b"x"]);
    assert_eq!(status, sys::SLUICE_ERROR);
    assert_eq!(errors.message(), "panic: sink on fire");
    assert!(captured.appended.is_empty());
    unsafe { table.destroy.unwrap()(instance) };
}

#[test]
fn config_errors_name_the_field() {
    let table = plugin(0);
    let mut errors = ErrorBuffers::new();
    let (status, _) = create(table, r#"{"limit": 0}"#, &mut errors);
    assert_eq!((status, errors.field().as_str()), (sys::SLUICE_ERROR, "limit"));
    assert_eq!(errors.message(), "limit must be positive");

    let mut errors = ErrorBuffers::new();
    let (status, _) = create(table, r#"{"limit": "many"}"#, &mut errors);
    assert_eq!((status, errors.field().as_str()), (sys::SLUICE_ERROR, "limit"));

    let mut errors = ErrorBuffers::new();
    let (status, _) = create(table, "{}", &mut errors);
    assert_eq!((status, errors.field().as_str()), (sys::SLUICE_ERROR, "limit"));
    assert!(errors.message().contains("missing field"), "{}", errors.message());
}
