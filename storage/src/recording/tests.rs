use super::*;
use crate::command::tests::{MemTxn, ext};
use crate::command::{Command, get};

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn policy(extension: &str, mode: RecordingMode) -> RecordingPolicy {
    RecordingPolicy {
        extension: extension.into(),
        mode,
        updated_at: 7,
    }
}

fn stored(txn: &MemTxn, extension: &str) -> Option<RecordingPolicy> {
    get::<RecordingPolicy>(txn, extension).unwrap()
}

#[test]
fn modes_parse_from_their_names_and_nothing_else() {
    for mode in RecordingMode::ALL {
        assert_eq!(RecordingMode::parse(mode.as_str()), Some(mode));
    }
    for bad in ["", "Always", "on-demand", "sometimes"] {
        assert_eq!(RecordingMode::parse(bad), None, "{bad:?}");
    }
    assert_eq!(RecordingMode::default(), RecordingMode::Never);
}

#[test]
fn a_policy_for_a_missing_extension_is_not_found_and_not_stored() {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(
            &mut txn,
            Command::PutRecordingPolicy(policy("1001", RecordingMode::Always))
        ),
        Response::NotFound {
            table: "extensions".into(),
            key: "1001".into()
        }
    );
    assert!(txn.0.is_empty());
}

#[test]
fn a_policy_is_stored_and_replaced() {
    let mut txn = MemTxn::default();
    apply(&mut txn, Command::CreateExtension(ext("1001")));
    assert_eq!(stored(&txn, "1001"), None, "no record: never recorded");
    for mode in [RecordingMode::Always, RecordingMode::Never] {
        assert_eq!(
            apply(&mut txn, Command::PutRecordingPolicy(policy("1001", mode))),
            Response::Ok
        );
        assert_eq!(stored(&txn, "1001"), Some(policy("1001", mode)));
    }
}

#[test]
fn deleting_the_extension_deletes_its_policy() {
    let mut txn = MemTxn::default();
    for n in ["1001", "1002"] {
        apply(&mut txn, Command::CreateExtension(ext(n)));
        apply(
            &mut txn,
            Command::PutRecordingPolicy(policy(n, RecordingMode::Always)),
        );
    }
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteExtension {
                number: "1001".into()
            }
        ),
        Response::Ok
    );
    assert_eq!(
        stored(&txn, "1001"),
        None,
        "a new extension with the number starts unrecorded"
    );
    assert!(stored(&txn, "1002").is_some(), "others keep theirs");
}

#[test]
fn a_calls_on_demand_recording_state_goes_with_the_call() {
    use crate::command::tests::cdr;
    use crate::model::Setting;
    let on = |call_id: &str| {
        Command::PutSetting(Setting {
            key: on_demand_key(call_id),
            value: "1001".into(),
            updated_at: 1,
        })
    };
    let mut txn = MemTxn::default();
    for id in ["ended", "deleted", "other"] {
        assert_eq!(apply(&mut txn, on(id)), Response::Ok);
    }
    let ended = cdr(100, "ended");
    apply(
        &mut txn,
        Command::EndCall {
            call_id: ended.id.clone(),
            cdr: Box::new(ended),
        },
    );
    apply(
        &mut txn,
        Command::DeleteCall {
            call_id: "deleted".into(),
        },
    );
    let left = |id: &str| get::<Setting>(&txn, &on_demand_key(id)).unwrap();
    assert_eq!(left("ended"), None);
    assert_eq!(left("deleted"), None);
    assert_eq!(left("other").map(|s| s.value), Some("1001".to_owned()));
}
