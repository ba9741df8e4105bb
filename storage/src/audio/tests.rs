use super::*;
use crate::command::Command;
use crate::command::tests::MemTxn;

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn file(id: &str, owner: &str, size: u64) -> AudioFile {
    AudioFile {
        id: id.into(),
        kind: AudioKind::Voicemail,
        owner: owner.into(),
        name: "message".into(),
        call_id: None,
        size,
        sha256: "00".repeat(32),
        created_at: 1,
        retain_until: None,
        holders: vec![1],
    }
}

fn id(n: u8) -> String {
    format!("{n:032x}")
}

fn used(txn: &MemTxn, owner: &str) -> (u64, u64) {
    let u = usage(txn, owner).unwrap();
    (u.bytes, u.files)
}

#[test]
fn ids_are_32_lowercase_hex_digits_and_nothing_a_path_could_use() {
    assert!(AudioFile::valid_id(&id(7)));
    for bad in [
        "",
        "../../etc/passwd",
        &"A".repeat(32),
        &"0".repeat(31),
        &"0".repeat(33),
        &format!("{}/", "0".repeat(31)),
    ] {
        assert!(!AudioFile::valid_id(bad), "{bad:?}");
    }
}

#[test]
fn files_count_against_their_owner_and_the_cluster_until_deleted() {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file(&id(1), "1001", 100))),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file(&id(2), "", 50))),
        Response::Ok
    );
    assert_eq!(used(&txn, "1001"), (100, 1));
    assert_eq!(used(&txn, AudioUsage::TOTAL), (150, 2));
    assert!(
        matches!(
            apply(&mut txn, Command::PutAudioFile(file(&id(1), "1001", 1))),
            Response::Conflict { .. }
        ),
        "an id is entered once"
    );
    assert_eq!(
        apply(&mut txn, Command::DeleteAudioFile { id: id(1) }),
        Response::Ok
    );
    assert_eq!(used(&txn, "1001"), (0, 0));
    assert_eq!(used(&txn, AudioUsage::TOTAL), (50, 1));
    assert!(matches!(
        apply(&mut txn, Command::DeleteAudioFile { id: id(1) }),
        Response::NotFound { .. }
    ));
}

#[test]
fn a_file_over_the_owners_or_the_clusters_quota_is_refused_and_nothing_counted() {
    let mut txn = MemTxn::default();
    let quotas = AudioQuotas {
        per_owner_bytes: 100,
        total_bytes: 250,
    };
    assert_eq!(
        apply(&mut txn, Command::PutAudioQuotas(quotas)),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file(&id(1), "1001", 60))),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file(&id(2), "1001", 41))),
        Response::QuotaExceeded {
            scope: QuotaScope::Owner,
            limit: 100,
            used: 60
        }
    );
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file(&id(3), "1001", 40))),
        Response::Ok,
        "exactly at the quota is allowed"
    );
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file(&id(4), "", 150))),
        Response::Ok,
        "cluster files count against no owner"
    );
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file(&id(5), "1002", 1))),
        Response::QuotaExceeded {
            scope: QuotaScope::Cluster,
            limit: 250,
            used: 250
        }
    );
    assert!(txn.get(Table::AudioFiles, &id(5)).is_none());
    assert_eq!(used(&txn, "1002"), (0, 0));
}

#[test]
fn holders_are_added_once_and_a_node_that_leaves_holds_nothing() {
    let mut txn = MemTxn::default();
    apply(&mut txn, Command::PutAudioFile(file(&id(1), "1001", 10)));
    for node in [2, 2, 3] {
        assert_eq!(
            apply(&mut txn, Command::AudioHeld { id: id(1), node }),
            Response::Ok
        );
    }
    let stored = |txn: &MemTxn| get::<AudioFile>(txn, &id(1)).unwrap().unwrap();
    assert_eq!(stored(&txn).holders, vec![1, 2, 3]);
    assert!(matches!(
        apply(&mut txn, Command::AudioHeld { id: id(9), node: 2 }),
        Response::NotFound { .. }
    ));
    assert_eq!(
        apply(&mut txn, Command::RemoveMember { node_id: 2 }),
        Response::Ok
    );
    assert_eq!(stored(&txn).holders, vec![1, 3]);
}

#[test]
fn retention_drops_expired_files_and_gives_their_bytes_back() {
    let mut txn = MemTxn::default();
    let mut old = file(&id(1), "1001", 10);
    old.retain_until = Some(1_000);
    let mut young = file(&id(2), "1001", 20);
    young.retain_until = Some(5_000);
    apply(&mut txn, Command::PutAudioFile(old));
    apply(&mut txn, Command::PutAudioFile(young));
    apply(&mut txn, Command::PutAudioFile(file(&id(3), "1001", 30)));
    assert_eq!(
        apply(&mut txn, Command::PruneAudio { now: 1_000 }),
        Response::Ok
    );
    assert!(txn.get(Table::AudioFiles, &id(1)).is_none());
    assert!(txn.get(Table::AudioFiles, &id(2)).is_some());
    assert!(txn.get(Table::AudioFiles, &id(3)).is_some());
    assert_eq!(used(&txn, "1001"), (50, 2));
}

#[test]
fn a_calls_recordings_are_indexed_by_the_call_until_deleted_or_expired() {
    let mut txn = MemTxn::default();
    let seg = |n: u8, call: &str, until: Option<u64>| {
        let mut f = file(&id(n), "1002", 10);
        f.kind = AudioKind::Recording;
        f.call_id = Some(call.into());
        f.retain_until = until;
        f
    };
    let (a, b, c) = (
        seg(1, "call-a", None),
        seg(2, "call-a", Some(5)),
        seg(3, "call-b", None),
    );
    for f in [a, b, c] {
        assert_eq!(apply(&mut txn, Command::PutAudioFile(f)), Response::Ok);
    }
    let of = |txn: &MemTxn, call: &str| {
        txn.keys_with_prefix(Table::RecordingsByCall, &CallRecording::prefix(call))
    };
    assert_eq!(
        of(&txn, "call-a"),
        vec![format!("call-a/{}", id(1)), format!("call-a/{}", id(2))]
    );
    assert_eq!(of(&txn, "call-b").len(), 1);
    apply(&mut txn, Command::PruneAudio { now: 5 });
    assert_eq!(of(&txn, "call-a"), vec![format!("call-a/{}", id(1))]);
    apply(&mut txn, Command::DeleteAudioFile { id: id(1) });
    assert!(of(&txn, "call-a").is_empty());
    assert_eq!(of(&txn, "call-b").len(), 1, "another call's untouched");
}
