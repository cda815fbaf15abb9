//! The raw C ABI between the sluice host and its plugins: a hand-written mirror of
//! `sluice/abi.h`. Every struct is `#[repr(C)]` with the fields of the header in its order;
//! `tests/layout.rs` compiles a C program against the header and checks that every size and
//! offset here is the same, so the two cannot drift apart silently.
//!
//! Read `abi.h` for the OWNERSHIP and THREADING rules of each struct and hook. Plugin authors
//! use the safe `sluice-sdk` crate instead of this one.
#![allow(non_camel_case_types)]
#![no_std]

use core::ffi::{c_char, c_void};

pub const SLUICE_ABI_MAJOR: u32 = 1;
pub const SLUICE_ABI_MINOR: u32 = 3;

/// The name of the one function every plugin library exports.
pub const SLUICE_MODULE_ENTRY: &core::ffi::CStr = c"sluice_module_get";

pub type sluice_status = i32;
pub const SLUICE_OK: sluice_status = 0;
pub const SLUICE_RETRY: sluice_status = 1;
pub const SLUICE_ERROR: sluice_status = 2;
pub const SLUICE_FATAL: sluice_status = 3;

pub type sluice_kind = i32;
pub const SLUICE_KIND_SOURCE: sluice_kind = 1;
pub const SLUICE_KIND_TRANSFORM: sluice_kind = 2;
pub const SLUICE_KIND_SINK: sluice_kind = 3;

pub const SLUICE_LOG_TRACE: i32 = 0;
pub const SLUICE_LOG_DEBUG: i32 = 1;
pub const SLUICE_LOG_INFO: i32 = 2;
pub const SLUICE_LOG_WARN: i32 = 3;
pub const SLUICE_LOG_ERROR: i32 = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_error {
    pub struct_size: u32,
    pub message: *mut c_char,
    pub message_capacity: usize,
    pub field: *mut c_char,
    pub field_capacity: usize,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_bytes {
    pub ptr: *const u8,
    pub len: usize,
}

/// FROZEN for ABI 1.x, as `sluice_record`: headers travel in arrays (abi.h).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_header {
    pub key: sluice_bytes,
    pub value: sluice_bytes,
}

/// FROZEN for ABI 1.x: records travel in arrays indexed with this size, which never changes
/// within a major (abi.h). Data a later minor adds per record goes beside the array.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_record {
    pub struct_size: u32,
    pub key: sluice_bytes,
    pub value: sluice_bytes,
    pub topic: sluice_bytes,
    pub headers: *const sluice_header,
    pub header_count: usize,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_batch {
    pub struct_size: u32,
    pub records: *const sluice_record,
    pub count: usize,
}

/// FROZEN for ABI 1.x, as `sluice_record`: positions travel in arrays (abi.h).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_position {
    pub struct_size: u32,
    pub topic: sluice_bytes,
    pub partition: i32,
    pub offset: i64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_writer {
    pub struct_size: u32,
    pub host_ctx: *mut c_void,
    pub append: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            input_index: usize,
            record: *const sluice_record,
        ) -> sluice_status,
    >,
    pub append_owned: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            input_index: usize,
            record: *const sluice_record,
            release: Option<unsafe extern "C" fn(release_ctx: *mut c_void)>,
            release_ctx: *mut c_void,
        ) -> sluice_status,
    >,
    pub reject: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            input_index: usize,
            status: sluice_status,
            message: *const c_char,
            message_len: usize,
        ),
    >,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_poll_args {
    pub struct_size: u32,
    pub max_records: u32,
    pub timeout_ms: u32,
    pub end_of_stream: i32,
    /// ABI 1.1: append records until about this many bytes (0: no room). Read it only when
    /// `struct_size` covers it: an ABI 1.0 host passes the shorter struct.
    pub max_bytes: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_buffer {
    pub struct_size: u32,
    pub host_ctx: *mut c_void,
    pub append: Option<unsafe extern "C" fn(host_ctx: *mut c_void, data: *const u8, len: usize)>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_host_api {
    pub struct_size: u32,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub host_ctx: *mut c_void,
    pub sluice_host_log:
        Option<unsafe extern "C" fn(host_ctx: *mut c_void, level: i32, message: *const c_char, len: usize)>,
    pub sluice_host_counter_add:
        Option<unsafe extern "C" fn(host_ctx: *mut c_void, name: *const c_char, delta: f64)>,
    pub sluice_host_gauge_set:
        Option<unsafe extern "C" fn(host_ctx: *mut c_void, name: *const c_char, value: f64)>,
    pub sluice_host_memory_pressure: Option<unsafe extern "C" fn(host_ctx: *mut c_void) -> f64>,
    pub sluice_host_instance_name: Option<unsafe extern "C" fn(host_ctx: *mut c_void) -> *const c_char>,
    pub sluice_host_drain: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            partitions: *const sluice_position,
            count: usize,
            timeout_ms: u32,
        ) -> sluice_status,
    >,
    /// Since ABI 1.3: read only when `struct_size` covers it.
    pub sluice_host_memory_limit: Option<unsafe extern "C" fn(host_ctx: *mut c_void) -> u64>,
}

pub type ValidateFn = unsafe extern "C" fn(
    config_json: *const c_char,
    config_len: usize,
    error: *mut sluice_error,
) -> sluice_status;
pub type CreateFn = unsafe extern "C" fn(
    host: *const sluice_host_api,
    config_json: *const c_char,
    config_len: usize,
    instance: *mut *mut c_void,
    error: *mut sluice_error,
) -> sluice_status;
pub type PollFn = unsafe extern "C" fn(
    instance: *mut c_void,
    args: *mut sluice_poll_args,
    out: *mut sluice_writer,
    error: *mut sluice_error,
) -> sluice_status;
pub type CommitFn = unsafe extern "C" fn(
    instance: *mut c_void,
    positions: *const sluice_position,
    count: usize,
    error: *mut sluice_error,
) -> sluice_status;
pub type BatchFn = unsafe extern "C" fn(
    instance: *mut c_void,
    input: *const sluice_batch,
    out: *mut sluice_writer,
    error: *mut sluice_error,
) -> sluice_status;
pub type InstanceFn = unsafe extern "C" fn(instance: *mut c_void, error: *mut sluice_error) -> sluice_status;
pub type SnapshotFn = unsafe extern "C" fn(
    instance: *mut c_void,
    out: *mut sluice_buffer,
    error: *mut sluice_error,
) -> sluice_status;
pub type RestoreFn = unsafe extern "C" fn(
    instance: *mut c_void,
    data: *const u8,
    len: usize,
    error: *mut sluice_error,
) -> sluice_status;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_plugin {
    pub struct_size: u32,
    pub kind: sluice_kind,
    pub name: *const c_char,
    pub version: *const c_char,
    pub description: *const c_char,
    pub config_schema_json: *const c_char,
    pub validate: Option<ValidateFn>,
    pub create: Option<CreateFn>,
    pub destroy: Option<unsafe extern "C" fn(instance: *mut c_void)>,
    pub poll: Option<PollFn>,
    pub commit: Option<CommitFn>,
    pub process: Option<BatchFn>,
    pub put: Option<BatchFn>,
    pub flush: Option<InstanceFn>,
    pub pre_commit: Option<InstanceFn>,
    pub on_memory_pressure: Option<unsafe extern "C" fn(instance: *mut c_void, level: f64)>,
    pub snapshot: Option<SnapshotFn>,
    pub restore: Option<RestoreFn>,
    pub set_paused: Option<unsafe extern "C" fn(instance: *mut c_void, paused: i32)>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sluice_module {
    pub struct_size: u32,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub plugins: *const *const sluice_plugin,
    pub plugin_count: usize,
    pub init:
        Option<unsafe extern "C" fn(host: *const sluice_host_api, error: *mut sluice_error) -> sluice_status>,
    pub shutdown: Option<unsafe extern "C" fn()>,
}

/// The signature of `sluice_module_get`, the entry point every plugin library exports.
pub type sluice_module_get_fn =
    unsafe extern "C" fn(host_abi_major: u32, host_abi_minor: u32) -> *const sluice_module;

/// `SLUICE_HAS_FIELD` of abi.h: whether `$field` of the versioned struct at `$ptr` (a
/// `*const $ty`) lies inside its `struct_size`, i.e. whether the peer that filled it knew the
/// field. Read a field only when this is true. Only `struct_size` is read.
///
/// ```
/// use sluice_sdk_sys::{has_field, sluice_poll_args};
/// let mut args: sluice_poll_args = unsafe { core::mem::zeroed() };
/// args.struct_size = 16; // an ABI 1.0 host's, before max_bytes
/// assert!(has_field!(&args as *const _, sluice_poll_args, end_of_stream));
/// assert!(!has_field!(&args as *const _, sluice_poll_args, max_bytes));
/// ```
#[macro_export]
macro_rules! has_field {
    ($ptr:expr, $ty:ty, $field:ident) => {{
        let ptr: *const $ty = $ptr;
        // SAFETY: the caller passes a live struct of the ABI; its first field is struct_size.
        let size = unsafe { ::core::ptr::addr_of!((*ptr).struct_size).read() } as usize;
        size >= ::core::mem::offset_of!($ty, $field)
            + $crate::pointee_size(|p: *const $ty| unsafe { ::core::ptr::addr_of!((*p).$field) })
    }};
}

/// The size of the field a projection points to (for `has_field!`, which cannot name the
/// field's type).
#[doc(hidden)]
pub fn pointee_size<T, F>(_project: fn(*const T) -> *const F) -> usize {
    core::mem::size_of::<F>()
}
