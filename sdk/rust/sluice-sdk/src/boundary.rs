//! The ABI boundary: the `extern "C"` hooks the host calls, each wrapped in `catch_unwind`, and
//! the static tables that `sluice_module!` builds. All the crate's table `unsafe` lives here.
use crate::records::{Batch, Position, RecordOutput, Writer};
use crate::{sys, Error, Host, Plugin, PollLimits, Result, Sink, Source, Transform};
use std::any::Any;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Copies `text` into a host buffer, truncated to fit on a UTF-8 boundary, NUL-terminated.
fn write_text(buf: *mut c_char, capacity: usize, text: &str) {
    if buf.is_null() || capacity == 0 {
        return;
    }
    let mut n = text.len().min(capacity - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the host's buffer holds `capacity` bytes; n + 1 <= capacity.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

/// Fills the host's error report; `field` only if the host's struct is long enough to hold it.
fn report(error: *mut sys::sluice_error, message: &str, field: &str) {
    if error.is_null() {
        return;
    }
    // SAFETY: the host's error struct, valid during the call.
    let e = unsafe { &*error };
    write_text(e.message, e.message_capacity, message);
    if sys::has_field!(error, sys::sluice_error, field_capacity) {
        write_text(e.field, e.field_capacity, field);
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)");
    format!("panic: {text}")
}

/// Runs a hook's body: Ok is SLUICE_OK, an `Error` its status, a panic SLUICE_ERROR; the
/// message (and field) go into `error`.
fn guarded(error: *mut sys::sluice_error, body: impl FnOnce() -> Result<()>) -> sys::sluice_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => sys::SLUICE_OK,
        Ok(Err(e)) => {
            let field = if let Error::Config { field, .. } = &e {
                field.as_str()
            } else {
                ""
            };
            report(error, e.message(), field);
            e.status()
        }
        Err(payload) => {
            report(error, &panic_message(payload.as_ref()), "");
            sys::SLUICE_ERROR
        }
    }
}

/// Runs a hook that returns nothing; a panic is swallowed (there is nowhere to report it).
fn quiet(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// The config field a serde error is about: named in the message ("missing field `x`"), else
/// the last key before the error's position.
fn field_of(json: &str, error: &serde_json::Error) -> String {
    let message = error.to_string();
    if let Some(start) = message.find('`') {
        if message[..start].ends_with("field ") {
            if let Some(len) = message[start + 1..].find('`') {
                return message[start + 1..start + 1 + len].to_string();
            }
        }
    }
    let line_start: usize = json
        .split_inclusive('\n')
        .take(error.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let mut end = (line_start + error.column()).min(json.len());
    while !json.is_char_boundary(end) {
        end -= 1;
    }
    let before = &json[..end];
    before
        .rfind("\":")
        .and_then(|close| {
            before[..close]
                .rfind('"')
                .map(|open| before[open + 1..close].to_string())
        })
        .unwrap_or_default()
}

fn parse_config<T: Plugin>(json: *const c_char, len: usize) -> Result<T::Config> {
    // SAFETY: the host's config text of `len` bytes, valid during the call.
    let bytes = if json.is_null() {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(json.cast::<u8>(), len) }
    };
    let text = std::str::from_utf8(bytes).map_err(|_| Error::config("", "the config is not UTF-8"))?;
    serde_json::from_str(text).map_err(|e| {
        let field = field_of(text, &e);
        Error::Config {
            message: format!("{field}: {e}"),
            field,
        }
    })
}

/// # Safety
/// `instance` came from `create::<T>` and is not destroyed yet.
unsafe fn this<'a, T>(instance: *mut c_void) -> &'a T {
    &*instance.cast::<T>()
}

unsafe extern "C" fn validate<T: Plugin>(
    json: *const c_char,
    len: usize,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || T::validate(&parse_config::<T>(json, len)?))
}

unsafe extern "C" fn create<T: Plugin>(
    host: *const sys::sluice_host_api,
    json: *const c_char,
    len: usize,
    instance: *mut *mut c_void,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || {
        let config = parse_config::<T>(json, len)?;
        T::validate(&config)?;
        let object = T::create(config, Host::from_raw(host))?;
        *instance = Box::into_raw(Box::new(object)).cast();
        Ok(())
    })
}

unsafe extern "C" fn destroy<T: Plugin>(instance: *mut c_void) {
    quiet(|| drop(Box::from_raw(instance.cast::<T>())))
}

unsafe extern "C" fn on_memory_pressure<T: Plugin>(instance: *mut c_void, level: f64) {
    quiet(|| this::<T>(instance).on_memory_pressure(level))
}

unsafe extern "C" fn snapshot<T: Plugin>(
    instance: *mut c_void,
    out: *mut sys::sluice_buffer,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || {
        let state = this::<T>(instance).snapshot()?;
        if let Some(append) = (*out).append {
            append((*out).host_ctx, state.as_ptr(), state.len());
        }
        Ok(())
    })
}

unsafe extern "C" fn restore<T: Plugin>(
    instance: *mut c_void,
    data: *const u8,
    len: usize,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    let state = if data.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(data, len)
    };
    guarded(error, || this::<T>(instance).restore(state))
}

/// Transform::process_batch's default: each record under its own catch_unwind, so an `Err` or
/// a panic rejects that record alone. `Error::Fatal` stops the batch.
pub(crate) fn process_each<T: Transform>(t: &T, input: &Batch<'_>, out: &mut Writer<'_>) -> Result<()> {
    for (index, record) in input.iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            t.process(&record, &mut RecordOutput::new(out, index))
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e @ Error::Fatal(_))) => return Err(e),
            Ok(Err(e)) => out.reject_with(index, e.status(), e.message()),
            Err(payload) => out.reject(index, &panic_message(payload.as_ref())),
        }
    }
    Ok(())
}

unsafe extern "C" fn process<T: Transform>(
    instance: *mut c_void,
    input: *const sys::sluice_batch,
    out: *mut sys::sluice_writer,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || {
        this::<T>(instance).process_batch(&Batch::from_raw(&*input), &mut Writer::from_raw(&mut *out))
    })
}

unsafe extern "C" fn put<T: Sink>(
    instance: *mut c_void,
    input: *const sys::sluice_batch,
    rejects: *mut sys::sluice_writer,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || {
        this::<T>(instance).put(&Batch::from_raw(&*input), &mut Writer::from_raw(&mut *rejects))
    })
}

unsafe extern "C" fn flush<T: Sink>(
    instance: *mut c_void,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || this::<T>(instance).flush())
}

unsafe extern "C" fn pre_commit<T: Sink>(
    instance: *mut c_void,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || this::<T>(instance).pre_commit())
}

unsafe extern "C" fn poll<T: Source>(
    instance: *mut c_void,
    args: *mut sys::sluice_poll_args,
    out: *mut sys::sluice_writer,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || {
        let limits = PollLimits::from_raw(args);
        let end = this::<T>(instance).poll(&mut Writer::from_raw(&mut *out), &limits)?;
        if end {
            (*args).end_of_stream = 1;
        }
        Ok(())
    })
}

unsafe extern "C" fn commit<T: Source>(
    instance: *mut c_void,
    positions: *const sys::sluice_position,
    count: usize,
    error: *mut sys::sluice_error,
) -> sys::sluice_status {
    guarded(error, || {
        let raw = if positions.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(positions, count)
        };
        let positions: Vec<Position<'_>> = raw.iter().map(Position::from_raw).collect();
        this::<T>(instance).commit(&positions)
    })
}

unsafe extern "C" fn set_paused<T: Source>(instance: *mut c_void, paused: i32) {
    quiet(|| this::<T>(instance).set_paused(paused != 0))
}

/// The static tables behind `sluice_module!`. Not for direct use.
pub mod tables {
    use super::*;

    /// A plugin table that may live in a `static`: it holds only pointers to static data and
    /// functions, which every thread may read.
    #[repr(transparent)]
    pub struct PluginTable(sys::sluice_plugin);
    // SAFETY: immutable, and everything it points to is 'static and immutable.
    unsafe impl Sync for PluginTable {}

    #[repr(transparent)]
    pub struct PluginList<const N: usize>(pub [*const sys::sluice_plugin; N]);
    // SAFETY: pointers to immutable static PluginTables.
    unsafe impl<const N: usize> Sync for PluginList<N> {}

    #[repr(transparent)]
    pub struct ModuleTable(sys::sluice_module);
    // SAFETY: immutable, pointing to static data only.
    unsafe impl Sync for ModuleTable {}

    /// A pointer to a NUL-terminated literal (the macro appends the NUL).
    pub const fn c_str(text: &'static str) -> *const c_char {
        text.as_ptr().cast()
    }

    const fn common<T: Plugin>(kind: sys::sluice_kind) -> sys::sluice_plugin {
        sys::sluice_plugin {
            struct_size: std::mem::size_of::<sys::sluice_plugin>() as u32,
            kind,
            name: T::NAME.as_ptr(),
            version: T::VERSION.as_ptr(),
            description: T::DESCRIPTION.as_ptr(),
            config_schema_json: T::SCHEMA.as_ptr(),
            validate: Some(validate::<T>),
            create: Some(create::<T>),
            destroy: Some(destroy::<T>),
            poll: None,
            commit: None,
            process: None,
            put: None,
            flush: None,
            pre_commit: None,
            on_memory_pressure: Some(on_memory_pressure::<T>),
            snapshot: Some(snapshot::<T>),
            restore: Some(restore::<T>),
            set_paused: None,
        }
    }

    pub const fn transform<T: Transform>() -> PluginTable {
        PluginTable(sys::sluice_plugin {
            process: Some(process::<T>),
            ..common::<T>(sys::SLUICE_KIND_TRANSFORM)
        })
    }

    pub const fn sink<T: Sink>() -> PluginTable {
        PluginTable(sys::sluice_plugin {
            put: Some(put::<T>),
            flush: Some(flush::<T>),
            pre_commit: Some(pre_commit::<T>),
            ..common::<T>(sys::SLUICE_KIND_SINK)
        })
    }

    pub const fn source<T: Source>() -> PluginTable {
        PluginTable(sys::sluice_plugin {
            poll: Some(poll::<T>),
            commit: Some(commit::<T>),
            set_paused: Some(set_paused::<T>),
            ..common::<T>(sys::SLUICE_KIND_SOURCE)
        })
    }

    pub const fn module(
        name: *const c_char,
        version: *const c_char,
        plugins: *const *const sys::sluice_plugin,
        plugin_count: usize,
    ) -> ModuleTable {
        ModuleTable(sys::sluice_module {
            struct_size: std::mem::size_of::<sys::sluice_module>() as u32,
            abi_major: sys::SLUICE_ABI_MAJOR,
            abi_minor: sys::SLUICE_ABI_MINOR,
            name,
            version,
            plugins,
            plugin_count,
            init: None,
            shutdown: None,
        })
    }
}
