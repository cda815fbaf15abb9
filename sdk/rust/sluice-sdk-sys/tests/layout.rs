//! Checks the Rust mirror against `sluice/abi.h`: compiles `tests/abi_layout.c` with the C
//! compiler (`$CC`, else `cc`) against the header, runs it, and compares every size, offset and
//! constant it prints with the Rust side. The header is found through `$SLUICE_SDK_INCLUDE`, else
//! in the SDK's source tree or an installed SDK (`<prefix>/share/sluice/rust/sluice-sdk-sys`).
use sluice_sdk_sys::*;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

macro_rules! layout {
    ($out:ident; $( $t:ident { $($f:ident),* } )*) => {
        $(
            $out.push(format!("{} size {}", stringify!($t), size_of::<$t>()));
            $( $out.push(format!("{}.{} {}", stringify!($t), stringify!($f), offset_of!($t, $f))); )*
        )*
    };
}

fn rust_layout() -> Vec<String> {
    let mut out = Vec::new();
    layout!(out;
        sluice_error { message, message_capacity, field, field_capacity }
        sluice_bytes { len }
        sluice_header { value }
        sluice_record { key, value, topic, headers, header_count, partition, offset, timestamp_ms }
        sluice_batch { records, count }
        sluice_position { topic, partition, offset }
        sluice_writer { host_ctx, append, append_owned, reject }
        sluice_poll_args { max_records, timeout_ms, end_of_stream, max_bytes }
        sluice_buffer { host_ctx, append }
        sluice_host_api { abi_major, abi_minor, host_ctx, sluice_host_log, sluice_host_counter_add,
            sluice_host_gauge_set, sluice_host_memory_pressure, sluice_host_instance_name,
            sluice_host_drain, sluice_host_memory_limit }
        sluice_plugin { kind, name, version, description, config_schema_json, validate, create,
            destroy, poll, commit, process, put, flush, pre_commit, on_memory_pressure, snapshot,
            restore, set_paused }
        sluice_module { abi_major, abi_minor, name, version, plugins, plugin_count, init, shutdown }
    );
    out.push(format!("SLUICE_ABI {}.{}", SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR));
    out.push(format!(
        "SLUICE_STATUS {} {} {} {}",
        SLUICE_OK, SLUICE_RETRY, SLUICE_ERROR, SLUICE_FATAL
    ));
    out.push(format!(
        "SLUICE_KIND {} {} {}",
        SLUICE_KIND_SOURCE, SLUICE_KIND_TRANSFORM, SLUICE_KIND_SINK
    ));
    out
}

fn header_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SLUICE_SDK_INCLUDE") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../include"),
        manifest.join("../../../../include"),
    ];
    candidates
        .into_iter()
        .find(|dir| dir.join("sluice/abi.h").is_file())
        .expect("sluice/abi.h not found: set SLUICE_SDK_INCLUDE to the SDK's include folder")
}

fn c_layout() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let exe = dir.join("abi_layout");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/abi_layout.c");
    let status = Command::new(&cc)
        .args(["-std=c11", "-o"])
        .arg(&exe)
        .arg("-I")
        .arg(header_dir())
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(status.success(), "{cc} failed to compile {}", source.display());
    let output = Command::new(&exe).output().expect("cannot run abi_layout");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_size_offset_and_constant_matches_abi_h() {
    let c = c_layout();
    let rust = rust_layout();
    for (c_line, rust_line) in c.iter().zip(rust.iter()) {
        assert_eq!(
            c_line, rust_line,
            "abi.h (left) and sluice-sdk-sys (right) differ"
        );
    }
    assert_eq!(
        c.len(),
        rust.len(),
        "abi.h and sluice-sdk-sys list different fields"
    );
}
