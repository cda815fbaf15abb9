//! The fake host (`sluice_sdk::testing`) driving a source: poll bounds in records and bytes
//! (ABI 1.1's max_bytes, and an ABI 1.0 host's shorter args), counters and logs.
use sluice_sdk::testing::Module;
use sluice_sdk::{sluice_module, sys, Host, OutRecord, Plugin, PollLimits, Result, Source, Writer};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Emits 10-byte values, as many as the poll's limits allow.
struct Tens {
    host: Host,
    sent: AtomicU32,
}

impl Plugin for Tens {
    type Config = serde_json::Value;
    const NAME: &'static CStr = c"tens";
    const SCHEMA: &'static CStr = cr#"{"fields":[]}"#;
    fn create(_config: serde_json::Value, host: Host) -> Result<Self> {
        host.info("tens created");
        Ok(Tens {
            host,
            sent: AtomicU32::new(0),
        })
    }
}

impl Source for Tens {
    fn poll(&self, out: &mut Writer<'_>, limits: &PollLimits) -> Result<bool> {
        let mut n = 0;
        while n < limits.max_records && !limits.reached(out) {
            out.push(&OutRecord::new(Some(b"0123456789")))?;
            n += 1;
        }
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.host.counter_add("sent", n as f64);
        self.host
            .gauge_set("memory_limit", self.host.memory_limit() as f64);
        Ok(false)
    }
}

sluice_module!("tens", "0.1.0", source Tens);

#[test]
fn a_poll_stops_at_the_byte_bound_after_the_record_that_crosses_it() {
    let module = Module::new(sluice_module_get).unwrap();
    let tens = module.instance("tens", "{}").unwrap();
    assert_eq!(tens.poll(100, 25).records.len(), 3); // 10, 20, 30 >= 25
    assert_eq!(tens.poll(2, u64::MAX).records.len(), 2);
    assert_eq!(tens.poll(100, 0).records.len(), 0); // no byte room is no room
    assert_eq!(tens.host().counter("sent"), 5.0);
    assert_eq!(
        tens.host().logs(),
        vec![(sys::SLUICE_LOG_INFO, "tens created".to_string())]
    );
}

#[test]
fn an_abi_1_0_host_without_max_bytes_bounds_by_records_only() {
    let module = Module::new(sluice_module_get).unwrap();
    let tens = module.instance("tens", "{}").unwrap();
    // The args of an ABI 1.0 host end before max_bytes: what lies there must be ignored.
    let mut args = sys::sluice_poll_args {
        struct_size: std::mem::offset_of!(sys::sluice_poll_args, max_bytes) as u32,
        max_records: 4,
        timeout_ms: 0,
        end_of_stream: 0,
        max_bytes: 1,
    };
    assert_eq!(tens.poll_with(&mut args).records.len(), 4);
}

#[test]
fn the_memory_limit_is_what_the_host_gives() {
    let module = Module::new(sluice_module_get).unwrap();
    let tens = module.instance("tens", "{}").unwrap();
    tens.poll(1, u64::MAX);
    assert_eq!(tens.host().gauge("memory_limit"), Some(0.0)); // unknown until the host says
    tens.host().set_memory_limit(64 << 20);
    tens.poll(1, u64::MAX);
    assert_eq!(tens.host().gauge("memory_limit"), Some((64u64 << 20) as f64));
}
