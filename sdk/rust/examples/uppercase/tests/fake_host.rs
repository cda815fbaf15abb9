//! The plugin unit-tested without the runtime: sluice_sdk::testing loads its module in-process
//! (through the entry point `sluice_module!` made) and drives it as the host would.
use sluice_sdk::sys;
use sluice_sdk::testing::{Module, TestRecord};

fn module() -> Module {
    Module::new(uppercase::sluice_module_get).expect("the module loads")
}

#[test]
fn upper_cases_the_field_and_keeps_the_input_index() {
    let module = module();
    let upper = module.instance("uppercase", r#"{"field":"name"}"#).unwrap();
    let tombstone = TestRecord {
        key: Some(b"k".to_vec()),
        ..Default::default()
    };
    let out = upper.process(&[
        TestRecord::with_value(r#"{"name":"ada","n":1}"#),
        TestRecord::with_value("not json"),
        tombstone,
    ]);
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert_eq!(out.records.len(), 2);
    assert_eq!(out.records[0].value_str(), Some(r#"{"n":1,"name":"ADA"}"#));
    assert_eq!(out.records[0].input_index, 0);
    assert_eq!(out.records[1].value, None);
    assert_eq!(out.records[1].input_index, 2);
    assert_eq!(out.rejects.len(), 1);
    assert_eq!(out.rejects[0].index, 1);
    assert_eq!(out.rejects[0].status, sys::SLUICE_ERROR);
}

#[test]
fn a_panic_rejects_only_its_record() {
    let module = module();
    let upper = module
        .instance("uppercase", r#"{"field":"name","panic_on":"boom"}"#)
        .unwrap();
    let out = upper.process(&[
        TestRecord::with_value(r#"{"name":"boom"}"#),
        TestRecord::with_value(r#"{"name":"ok"}"#),
    ]);
    assert!(out.result.is_ok());
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.rejects[0].index, 0);
    assert!(
        out.rejects[0].message.contains("told to panic"),
        "{:?}",
        out.rejects
    );
}

#[test]
fn config_errors_name_the_field() {
    let module = module();
    assert!(module.schema("uppercase").unwrap().contains(r#""name":"field""#));
    let error = module.instance("uppercase", r#"{"field":""}"#).err().unwrap();
    assert_eq!(error.status, sys::SLUICE_ERROR);
    assert_eq!(error.field, "field");
    assert_eq!(module.validate("uppercase", "{}").field, "field");
}

#[test]
fn snapshot_and_restore_hand_on_no_state() {
    let module = module();
    let old = module.instance("uppercase", r#"{"field":"name"}"#).unwrap();
    let state = old.snapshot().unwrap();
    let new = module.instance("uppercase", r#"{"field":"name"}"#).unwrap();
    assert!(new.restore(&state).is_ok());
    assert!(state.is_empty());
}
