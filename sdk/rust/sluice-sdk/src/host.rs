//! The host's callbacks, as a safe handle.
use crate::sys;
use std::ffi::{CStr, CString};

/// Log levels, as the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace = sys::SLUICE_LOG_TRACE as isize,
    Debug = sys::SLUICE_LOG_DEBUG as isize,
    Info = sys::SLUICE_LOG_INFO as isize,
    Warn = sys::SLUICE_LOG_WARN as isize,
    Error = sys::SLUICE_LOG_ERROR as isize,
}

/// The host of one instance: its log, counters and gauges, memory pressure and name.
/// Valid from `create` until the instance is dropped (the host's `destroy`), which is exactly
/// as long as the instance can hold it.
#[derive(Clone, Copy)]
pub struct Host {
    raw: *const sys::sluice_host_api,
}

// SAFETY: abi.h: "every callback may be called from any thread the host calls the plugin on",
// and the table stays valid until `destroy`, which drops the instance that holds this handle.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

impl Host {
    /// # Safety
    /// `raw` is the host table passed to `create`, valid until the instance is destroyed.
    pub(crate) unsafe fn from_raw(raw: *const sys::sluice_host_api) -> Self {
        Host { raw }
    }

    fn api(&self) -> &sys::sluice_host_api {
        // SAFETY: see from_raw.
        unsafe { &*self.raw }
    }

    /// Writes into the host's log, tagged with the instance name.
    pub fn log(&self, level: LogLevel, message: &str) {
        let api = self.api();
        if let Some(log) = api.sluice_host_log {
            // SAFETY: the host copies the message before returning.
            unsafe { log(api.host_ctx, level as i32, message.as_ptr().cast(), message.len()) }
        }
    }
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message)
    }
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message)
    }

    /// Adds `delta` to the plugin counter `name` (shown in the stats under the instance).
    pub fn counter_add(&self, name: &str, delta: f64) {
        let api = self.api();
        if let (Some(add), Ok(name)) = (api.sluice_host_counter_add, CString::new(name)) {
            // SAFETY: the host copies the name before returning.
            unsafe { add(api.host_ctx, name.as_ptr(), delta) }
        }
    }

    /// Sets the plugin gauge `name`.
    pub fn gauge_set(&self, name: &str, value: f64) {
        let api = self.api();
        if let (Some(set), Ok(name)) = (api.sluice_host_gauge_set, CString::new(name)) {
            // SAFETY: the host copies the name before returning.
            unsafe { set(api.host_ctx, name.as_ptr(), value) }
        }
    }

    /// The memory pressure in [0, 1+]: the larger of RSS and the records the pipeline holds, over
    /// its memory limit, as last sampled.
    pub fn memory_pressure(&self) -> f64 {
        let api = self.api();
        // SAFETY: a plain host callback.
        api.sluice_host_memory_pressure
            .map_or(0.0, |f| unsafe { f(api.host_ctx) })
    }

    /// The pipeline's memory limit in bytes, for sizing the plugin's own buffers (a client's
    /// prefetch queue, a cache); 0 if unknown (a host older than ABI 1.3).
    pub fn memory_limit(&self) -> u64 {
        let end = std::mem::offset_of!(sys::sluice_host_api, sluice_host_memory_limit)
            + std::mem::size_of::<Option<unsafe extern "C" fn(*mut std::ffi::c_void) -> u64>>();
        // SAFETY: struct_size is the first field of every host table.
        let size = unsafe { (*self.raw).struct_size } as usize;
        if size < end {
            return 0;
        }
        let api = self.api();
        // SAFETY: a plain host callback, inside the table the host gave.
        api.sluice_host_memory_limit
            .map_or(0, |f| unsafe { f(api.host_ctx) })
    }

    /// The instance's name in the pipeline (e.g. "orders.sink").
    pub fn instance_name(&self) -> String {
        let api = self.api();
        match api.sluice_host_instance_name {
            // SAFETY: the host returns a NUL-terminated string it owns, or NULL.
            Some(name) => unsafe {
                let p = name(api.host_ctx);
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            },
            None => String::new(),
        }
    }
}
