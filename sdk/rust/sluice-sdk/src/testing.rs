//! A fake host for plugin unit tests: drives a plugin through its C tables, in-process, as the
//! sluice host would, and records what it did (output records, rejects, logs, counters,
//! gauges). It needs no runtime:
//!
//! ```ignore
//! use sluice_sdk::testing::{Module, TestRecord};
//! let module = Module::new(my_plugin::sluice_module_get).unwrap(); // the plugin crate's entry
//! let upper = module.instance("uppercase", r#"{"field":"name"}"#).unwrap();
//! let out = upper.process(&[TestRecord::with_value(r#"{"name":"ada"}"#)]);
//! assert_eq!(out.records[0].value.as_deref(), Some(&br#"{"name":"ADA"}"#[..]));
//! ```
//!
//! It follows abi.h's lifecycle: the entry point, the handshake, the module's `init`, `create`,
//! the calls, `destroy`, `shutdown`. For a plugin crate to be testable this way its library is
//! built as an `rlib` too: `crate-type = ["cdylib", "rlib"]`.
use crate::sys;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;

/// A record owned by the test: input of a batch, or a copy of what the plugin appended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    /// None: a tombstone.
    pub value: Option<Vec<u8>>,
    pub topic: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// Of an output record: the input record it derives from (`usize::MAX` from a source).
    pub input_index: usize,
}

impl TestRecord {
    pub fn with_value(value: impl Into<Vec<u8>>) -> Self {
        TestRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }
    /// The value as text (None for a tombstone or bytes that are not UTF-8).
    pub fn value_str(&self) -> Option<&str> {
        self.value.as_deref().and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The status of one call and the plugin's error text.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    pub status: sys::sluice_status,
    pub message: String,
    pub field: String,
}

impl CallResult {
    fn ok() -> Self {
        CallResult {
            status: sys::SLUICE_OK,
            message: String::new(),
            field: String::new(),
        }
    }
    pub fn is_ok(&self) -> bool {
        self.status == sys::SLUICE_OK
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub index: usize,
    pub status: sys::sluice_status,
    pub message: String,
}

/// What a poll, process or put gave back.
#[derive(Debug)]
pub struct Output {
    pub result: CallResult,
    pub records: Vec<TestRecord>,
    pub rejects: Vec<Rejected>,
    /// A poll's end of input.
    pub end_of_stream: bool,
}

#[derive(Default)]
struct HostState {
    logs: Vec<(i32, String)>,
    counters: HashMap<String, f64>,
    gauges: HashMap<String, f64>,
    memory_pressure: f64,
    memory_limit: u64,
}

/// The host API of one instance (or of the module's init): captures logs, counters, gauges.
pub struct FakeHost {
    api: sys::sluice_host_api,
    name: CString,
    state: Mutex<HostState>,
}

unsafe fn host_of<'a>(ctx: *mut c_void) -> &'a FakeHost {
    &*ctx.cast::<FakeHost>()
}
unsafe fn text_of(ptr: *const c_char, len: usize) -> String {
    String::from_utf8_lossy(std::slice::from_raw_parts(ptr.cast::<u8>(), len)).into_owned()
}
unsafe extern "C" fn host_log(ctx: *mut c_void, level: i32, message: *const c_char, len: usize) {
    host_of(ctx)
        .state
        .lock()
        .unwrap()
        .logs
        .push((level, text_of(message, len)));
}
unsafe extern "C" fn host_counter(ctx: *mut c_void, name: *const c_char, delta: f64) {
    let name = CStr::from_ptr(name).to_string_lossy().into_owned();
    *host_of(ctx)
        .state
        .lock()
        .unwrap()
        .counters
        .entry(name)
        .or_default() += delta;
}
unsafe extern "C" fn host_gauge(ctx: *mut c_void, name: *const c_char, value: f64) {
    let name = CStr::from_ptr(name).to_string_lossy().into_owned();
    host_of(ctx).state.lock().unwrap().gauges.insert(name, value);
}
unsafe extern "C" fn host_pressure(ctx: *mut c_void) -> f64 {
    host_of(ctx).state.lock().unwrap().memory_pressure
}
unsafe extern "C" fn host_limit(ctx: *mut c_void) -> u64 {
    host_of(ctx).state.lock().unwrap().memory_limit
}
unsafe extern "C" fn host_name(ctx: *mut c_void) -> *const c_char {
    host_of(ctx).name.as_ptr()
}

impl FakeHost {
    fn new(name: &str) -> Box<FakeHost> {
        let mut host = Box::new(FakeHost {
            api: sys::sluice_host_api {
                struct_size: std::mem::size_of::<sys::sluice_host_api>() as u32,
                abi_major: sys::SLUICE_ABI_MAJOR,
                abi_minor: sys::SLUICE_ABI_MINOR,
                host_ctx: std::ptr::null_mut(),
                sluice_host_log: Some(host_log),
                sluice_host_counter_add: Some(host_counter),
                sluice_host_gauge_set: Some(host_gauge),
                sluice_host_memory_pressure: Some(host_pressure),
                sluice_host_instance_name: Some(host_name),
                sluice_host_drain: None, // no pipeline behind a test
                sluice_host_memory_limit: Some(host_limit),
            },
            name: CString::new(name).unwrap_or_default(),
            state: Mutex::new(HostState::default()),
        });
        host.api.host_ctx = (&mut *host as *mut FakeHost).cast();
        host
    }
    /// The log lines (level, message) written so far.
    pub fn logs(&self) -> Vec<(i32, String)> {
        self.state.lock().unwrap().logs.clone()
    }
    /// A counter's total (0 if never added to).
    pub fn counter(&self, name: &str) -> f64 {
        self.state
            .lock()
            .unwrap()
            .counters
            .get(name)
            .copied()
            .unwrap_or(0.0)
    }
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.state.lock().unwrap().gauges.get(name).copied()
    }
    /// What `sluice_host_memory_pressure` answers from now on.
    pub fn set_memory_pressure(&self, level: f64) {
        self.state.lock().unwrap().memory_pressure = level;
    }
    /// What `sluice_host_memory_limit` answers from now on (0, unknown, until set).
    pub fn set_memory_limit(&self, bytes: u64) {
        self.state.lock().unwrap().memory_limit = bytes;
    }
}

/// Runs one call with host-owned error buffers; gives its status and the plugin's message.
fn with_error(call: impl FnOnce(*mut sys::sluice_error) -> sys::sluice_status) -> CallResult {
    let mut message = [0u8; 2048];
    let mut field = [0u8; 256];
    let mut error = sys::sluice_error {
        struct_size: std::mem::size_of::<sys::sluice_error>() as u32,
        message: message.as_mut_ptr().cast(),
        message_capacity: message.len(),
        field: field.as_mut_ptr().cast(),
        field_capacity: field.len(),
    };
    let status = call(&mut error);
    let text = |buf: &[u8]| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    };
    CallResult {
        status,
        message: text(&message),
        field: text(&field),
    }
}

fn copy_bytes(b: sys::sluice_bytes) -> Option<Vec<u8>> {
    // SAFETY: bytes the plugin passed to append, valid during the call.
    (!b.ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(b.ptr, b.len) }.to_vec())
}

/// A writer that copies what is appended (the host's contract) into an `Output`.
struct FakeWriter<'o> {
    raw: sys::sluice_writer,
    out: &'o mut Output,
    input_count: usize,
}

unsafe extern "C" fn writer_append(ctx: *mut c_void, index: usize, r: *const sys::sluice_record) -> i32 {
    let writer = &mut *ctx.cast::<FakeWriter>();
    if r.is_null() || (writer.input_count != usize::MAX && index >= writer.input_count) {
        return sys::SLUICE_ERROR;
    }
    let r = &*r;
    let headers = if r.headers.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(r.headers, r.header_count)
    };
    writer.out.records.push(TestRecord {
        key: copy_bytes(r.key),
        value: copy_bytes(r.value),
        topic: copy_bytes(r.topic).unwrap_or_default(),
        headers: headers
            .iter()
            .map(|h| {
                (
                    copy_bytes(h.key).unwrap_or_default(),
                    copy_bytes(h.value).unwrap_or_default(),
                )
            })
            .collect(),
        partition: r.partition,
        offset: r.offset,
        timestamp_ms: r.timestamp_ms,
        input_index: index,
    });
    sys::SLUICE_OK
}
unsafe extern "C" fn writer_reject(
    ctx: *mut c_void,
    index: usize,
    status: i32,
    message: *const c_char,
    len: usize,
) {
    let writer = &mut *ctx.cast::<FakeWriter>();
    let message = if message.is_null() {
        String::new()
    } else {
        text_of(message, len)
    };
    writer.out.rejects.push(Rejected {
        index,
        status,
        message,
    });
}

/// Calls `call` with a writer over a fresh `Output` (input indexes checked against
/// `input_count`; `usize::MAX`: a source).
fn with_writer(
    input_count: usize,
    call: impl FnOnce(*mut sys::sluice_writer, *mut sys::sluice_error) -> i32,
) -> Output {
    let mut out = Output {
        result: CallResult::ok(),
        records: Vec::new(),
        rejects: Vec::new(),
        end_of_stream: false,
    };
    let result = {
        let mut writer = Box::new(FakeWriter {
            raw: sys::sluice_writer {
                struct_size: std::mem::size_of::<sys::sluice_writer>() as u32,
                host_ctx: std::ptr::null_mut(),
                append: Some(writer_append),
                append_owned: None,
                reject: Some(writer_reject),
            },
            out: &mut out,
            input_count,
        });
        writer.raw.host_ctx = (&mut *writer as *mut FakeWriter).cast();
        with_error(|e| call(&mut writer.raw, e))
    };
    out.result = result;
    out
}

fn view(bytes: Option<&[u8]>) -> sys::sluice_bytes {
    static EMPTY: u8 = 0; // an empty but present value still needs a pointer
    match bytes {
        None => sys::sluice_bytes {
            ptr: std::ptr::null(),
            len: 0,
        },
        Some(b) if b.is_empty() => sys::sluice_bytes { ptr: &EMPTY, len: 0 },
        Some(b) => sys::sluice_bytes {
            ptr: b.as_ptr(),
            len: b.len(),
        },
    }
}

/// One loaded module, through the host's handshake and init; shut down when dropped.
pub struct Module {
    raw: &'static sys::sluice_module,
    host: Box<FakeHost>,
}

impl Module {
    /// The module behind an entry point linked into the test (the plugin crate's
    /// `sluice_module_get`): the handshake, then the module's init.
    pub fn new(get: sys::sluice_module_get_fn) -> std::result::Result<Module, String> {
        // SAFETY: the plugin's entry point returns a static table or null.
        let raw = unsafe { get(sys::SLUICE_ABI_MAJOR, sys::SLUICE_ABI_MINOR).as_ref() }
            .ok_or("the plugin declined the host's ABI")?;
        if !sys::has_field!(raw, sys::sluice_module, plugin_count)
            || raw.abi_major != sys::SLUICE_ABI_MAJOR
            || raw.abi_minor > sys::SLUICE_ABI_MINOR
        {
            return Err("the plugin's ABI does not match the host's".into());
        }
        let host = FakeHost::new("module");
        if let Some(init) = raw
            .init
            .filter(|_| sys::has_field!(raw, sys::sluice_module, init))
        {
            // SAFETY: the module's init with a live host API.
            let r = with_error(|e| unsafe { init(&host.api, e) });
            if !r.is_ok() {
                return Err(format!("plugin init failed: {}", r.message));
            }
        }
        Ok(Module { raw, host })
    }

    /// The host API the module's init was given.
    pub fn host(&self) -> &FakeHost {
        &self.host
    }

    /// The plugin table named `name`.
    pub fn plugin(&self, name: &str) -> Option<&'static sys::sluice_plugin> {
        // SAFETY: the module's static list of plugin_count static tables.
        let plugins = unsafe { std::slice::from_raw_parts(self.raw.plugins, self.raw.plugin_count) };
        plugins
            .iter()
            .map(|&p| unsafe { &*p })
            .find(|p| unsafe { CStr::from_ptr(p.name) }.to_bytes() == name.as_bytes())
    }

    /// The plugin's config schema (JSON), as the host reads it after init.
    pub fn schema(&self, name: &str) -> Option<String> {
        let p = self.plugin(name)?;
        (!p.config_schema_json.is_null()).then(|| {
            unsafe { CStr::from_ptr(p.config_schema_json) }
                .to_string_lossy()
                .into_owned()
        })
    }

    /// Creates an instance of plugin `name` from a JSON config (the host would have filled in
    /// defaults first); the plugin's error if `create` fails.
    pub fn instance(&self, name: &str, config_json: &str) -> std::result::Result<Instance<'_>, CallResult> {
        let table = self.plugin(name).ok_or_else(|| CallResult {
            status: sys::SLUICE_FATAL,
            message: format!("no plugin named {name}"),
            field: String::new(),
        })?;
        let host = FakeHost::new("test.instance");
        let mut handle: *mut c_void = std::ptr::null_mut();
        let create = table.create.expect("a plugin table without create");
        // SAFETY: the plugin's create with a live host API and config text.
        let r = with_error(|e| unsafe {
            create(
                &host.api,
                config_json.as_ptr().cast(),
                config_json.len(),
                &mut handle,
                e,
            )
        });
        if !r.is_ok() || handle.is_null() {
            return Err(r);
        }
        Ok(Instance {
            table,
            handle,
            host,
            _module: self,
        })
    }

    /// The plugin's validate hook on a config (OK if it has none).
    pub fn validate(&self, name: &str, config_json: &str) -> CallResult {
        match self.plugin(name).and_then(|p| p.validate) {
            // SAFETY: the plugin's validate with a live config text.
            Some(validate) => {
                with_error(|e| unsafe { validate(config_json.as_ptr().cast(), config_json.len(), e) })
            }
            None => CallResult::ok(),
        }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if let Some(shutdown) = self
            .raw
            .shutdown
            .filter(|_| sys::has_field!(self.raw, sys::sluice_module, shutdown))
        {
            // SAFETY: every instance borrowed the module, so all are destroyed by now.
            unsafe { shutdown() }
        }
    }
}

/// Whether `table` carries `$hook` inside its struct_size; gives the hook.
macro_rules! hook {
    ($table:expr, $hook:ident) => {
        $table
            .$hook
            .filter(|_| sys::has_field!($table, sys::sluice_plugin, $hook))
    };
}

/// One plugin instance with its own `FakeHost`; destroyed when dropped. An optional hook the
/// plugin lacks answers OK.
pub struct Instance<'m> {
    table: &'static sys::sluice_plugin,
    handle: *mut c_void,
    host: Box<FakeHost>,
    _module: &'m Module,
}

impl Instance<'_> {
    pub fn host(&self) -> &FakeHost {
        &self.host
    }

    /// Source: one poll with these bounds (`max_bytes`: ABI 1.1's byte bound).
    pub fn poll(&self, max_records: u32, max_bytes: u64) -> Output {
        self.poll_with(&mut sys::sluice_poll_args {
            struct_size: std::mem::size_of::<sys::sluice_poll_args>() as u32,
            max_records,
            timeout_ms: 0,
            end_of_stream: 0,
            max_bytes,
        })
    }

    /// Source: one poll with these raw arguments (e.g. an older host's, with a shorter
    /// `struct_size`).
    pub fn poll_with(&self, args: &mut sys::sluice_poll_args) -> Output {
        let poll = hook!(self.table, poll).expect("not a source");
        // SAFETY: the plugin's poll with live arguments, writer and error.
        let mut out = with_writer(usize::MAX, |w, e| unsafe { poll(self.handle, args, w, e) });
        out.end_of_stream = args.end_of_stream != 0;
        out
    }

    /// Transform: one batch; output records carry the input index they derive from.
    pub fn process(&self, input: &[TestRecord]) -> Output {
        self.batch(input, hook!(self.table, process).expect("not a transform"))
    }

    /// Sink: one batch; `rejects` of the output are the records it rejected.
    pub fn put(&self, input: &[TestRecord]) -> Output {
        self.batch(input, hook!(self.table, put).expect("not a sink"))
    }

    fn batch(&self, input: &[TestRecord], call: sys::BatchFn) -> Output {
        let headers: Vec<Vec<sys::sluice_header>> = input
            .iter()
            .map(|r| {
                r.headers
                    .iter()
                    .map(|(k, v)| sys::sluice_header {
                        key: view(Some(k)),
                        value: view(Some(v)),
                    })
                    .collect()
            })
            .collect();
        let records: Vec<sys::sluice_record> = input
            .iter()
            .zip(&headers)
            .map(|(r, hs)| sys::sluice_record {
                struct_size: std::mem::size_of::<sys::sluice_record>() as u32,
                key: view(r.key.as_deref()),
                value: view(r.value.as_deref()),
                topic: view(Some(&r.topic)),
                headers: hs.as_ptr(),
                header_count: hs.len(),
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
            })
            .collect();
        let batch = sys::sluice_batch {
            struct_size: std::mem::size_of::<sys::sluice_batch>() as u32,
            records: records.as_ptr(),
            count: records.len(),
        };
        // SAFETY: the batch and everything it points to live until the call returns.
        with_writer(input.len(), |w, e| unsafe { call(self.handle, &batch, w, e) })
    }

    pub fn flush(&self) -> CallResult {
        self.instance_call(hook!(self.table, flush))
    }
    pub fn pre_commit(&self) -> CallResult {
        self.instance_call(hook!(self.table, pre_commit))
    }
    fn instance_call(&self, hook: Option<sys::InstanceFn>) -> CallResult {
        match hook {
            // SAFETY: the plugin's hook on its live instance.
            Some(call) => with_error(|e| unsafe { call(self.handle, e) }),
            None => CallResult::ok(),
        }
    }

    /// Source: positions (topic, partition, last done offset) that are done.
    pub fn commit(&self, positions: &[(&str, i32, i64)]) -> CallResult {
        let Some(commit) = hook!(self.table, commit) else {
            return CallResult::ok();
        };
        let raw: Vec<sys::sluice_position> = positions
            .iter()
            .map(|(topic, partition, offset)| sys::sluice_position {
                struct_size: std::mem::size_of::<sys::sluice_position>() as u32,
                topic: view(Some(topic.as_bytes())),
                partition: *partition,
                offset: *offset,
            })
            .collect();
        // SAFETY: live positions during the call.
        with_error(|e| unsafe { commit(self.handle, raw.as_ptr(), raw.len(), e) })
    }

    pub fn set_paused(&self, paused: bool) {
        if let Some(set) = hook!(self.table, set_paused) {
            unsafe { set(self.handle, paused as i32) }
        }
    }

    pub fn on_memory_pressure(&self, level: f64) {
        if let Some(on) = hook!(self.table, on_memory_pressure) {
            unsafe { on(self.handle, level) }
        }
    }

    /// The state a hot reload hands to the replacing instance.
    pub fn snapshot(&self) -> std::result::Result<Vec<u8>, CallResult> {
        let Some(snapshot) = hook!(self.table, snapshot) else {
            return Ok(Vec::new());
        };
        unsafe extern "C" fn append(ctx: *mut c_void, data: *const u8, len: usize) {
            if !data.is_null() {
                (*ctx.cast::<Vec<u8>>()).extend_from_slice(std::slice::from_raw_parts(data, len));
            }
        }
        let mut state = Vec::new();
        let mut buffer = sys::sluice_buffer {
            struct_size: std::mem::size_of::<sys::sluice_buffer>() as u32,
            host_ctx: (&mut state as *mut Vec<u8>).cast(),
            append: Some(append),
        };
        // SAFETY: the buffer and the state it appends to outlive the call.
        let r = with_error(|e| unsafe { snapshot(self.handle, &mut buffer, e) });
        if r.is_ok() {
            Ok(state)
        } else {
            Err(r)
        }
    }

    pub fn restore(&self, state: &[u8]) -> CallResult {
        match hook!(self.table, restore) {
            // SAFETY: the state lives during the call.
            Some(restore) => with_error(|e| unsafe { restore(self.handle, state.as_ptr(), state.len(), e) }),
            None => CallResult::ok(),
        }
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        if let Some(destroy) = self.table.destroy {
            // SAFETY: the instance is not used after this.
            unsafe { destroy(self.handle) }
        }
    }
}
