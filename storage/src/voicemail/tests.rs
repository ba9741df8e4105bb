use super::*;
use crate::audio::AudioQuotas;
use crate::command::Command;
use crate::command::tests::{MemTxn, ext};

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn file(n: u8, kind: AudioKind, owner: &str) -> AudioFile {
    AudioFile {
        id: format!("{n:032x}"),
        kind,
        owner: owner.into(),
        name: "from 1001".into(),
        call_id: Some(format!("call{n}")),
        size: 1000,
        sha256: "00".repeat(32),
        created_at: 1,
        retain_until: None,
        holders: vec![1],
    }
}

fn message(n: u8, mailbox: &str) -> VoicemailMessage {
    VoicemailMessage {
        mailbox: mailbox.into(),
        audio_id: format!("{n:032x}"),
        caller: "1001".into(),
        caller_name: "Alice".into(),
        because: LeftBecause::NoAnswer,
        call_id: format!("call{n}"),
        received_at: 10,
        duration_ms: 4000,
        heard: false,
    }
}

fn office() -> MemTxn {
    let mut txn = MemTxn::default();
    for n in ["1001", "1002"] {
        assert_eq!(
            apply(&mut txn, Command::CreateExtension(ext(n))),
            Response::Ok
        );
    }
    let quotas = AudioQuotas::default();
    assert_eq!(
        apply(&mut txn, Command::PutAudioQuotas(quotas)),
        Response::Ok
    );
    txn
}

fn leave(txn: &mut MemTxn, n: u8, mailbox: &str) -> Response {
    let r = apply(
        txn,
        Command::PutAudioFile(file(n, AudioKind::Voicemail, mailbox)),
    );
    assert_eq!(r, Response::Ok);
    apply(txn, Command::PutVoicemailMessage(message(n, mailbox)))
}

fn messages(txn: &MemTxn, mailbox: &str) -> Vec<VoicemailMessage> {
    txn.keys_with_prefix(Table::VoicemailMessages, &VoicemailMessage::prefix(mailbox))
        .iter()
        .filter_map(|k| get::<VoicemailMessage>(txn, k).unwrap())
        .collect()
}

#[test]
fn a_mailbox_needs_its_extension_sane_limits_and_its_own_greetings() {
    let mut txn = office();
    let mut m = Mailbox::new("1002", 1);
    assert_eq!(
        apply(&mut txn, Command::PutMailbox(m.clone())),
        Response::Ok
    );
    let mut stray = Mailbox::new("1999", 1);
    stray.email = None;
    assert!(matches!(
        apply(&mut txn, Command::PutMailbox(stray)),
        Response::NotFound { .. }
    ));
    m.ring_secs = 2;
    let Response::Invalid { reason, .. } = apply(&mut txn, Command::PutMailbox(m.clone())) else {
        panic!("a 2 s ring time is refused");
    };
    assert!(reason.starts_with("ring_secs"), "{reason}");
    m.ring_secs = 20;
    // Another extension's greeting, or a prompt, is not this mailbox's greeting.
    apply(
        &mut txn,
        Command::PutAudioFile(file(7, AudioKind::Greeting, "1001")),
    );
    m.greeting_busy = Some(format!("{:032x}", 7));
    assert!(matches!(
        apply(&mut txn, Command::PutMailbox(m.clone())),
        Response::Invalid { .. }
    ));
    apply(
        &mut txn,
        Command::PutAudioFile(file(8, AudioKind::Greeting, "1002")),
    );
    m.greeting_busy = Some(format!("{:032x}", 8));
    assert_eq!(apply(&mut txn, Command::PutMailbox(m)), Response::Ok);
}

#[test]
fn a_message_is_entered_once_its_file_is_and_leaves_with_it() {
    let mut txn = office();
    apply(&mut txn, Command::PutMailbox(Mailbox::new("1002", 1)));
    // No file yet: refused.
    assert!(matches!(
        apply(&mut txn, Command::PutVoicemailMessage(message(1, "1002"))),
        Response::NotFound { .. }
    ));
    assert_eq!(leave(&mut txn, 1, "1002"), Response::Ok);
    assert_eq!(leave(&mut txn, 2, "1002"), Response::Ok);
    assert_eq!(counts(&messages(&txn, "1002")), (2, 2));
    let heard = Command::SetVoicemailHeard {
        mailbox: "1002".into(),
        audio_id: format!("{:032x}", 1),
        heard: true,
    };
    assert_eq!(apply(&mut txn, heard), Response::Ok);
    assert_eq!(counts(&messages(&txn, "1002")), (2, 1));
    // Deleting the message deletes its file; deleting the file (audio API, retention) the message.
    let delete = Command::DeleteVoicemailMessage {
        mailbox: "1002".into(),
        audio_id: format!("{:032x}", 1),
    };
    assert_eq!(apply(&mut txn, delete), Response::Ok);
    assert!(
        get::<AudioFile>(&txn, &format!("{:032x}", 1))
            .unwrap()
            .is_none()
    );
    let delete_file = Command::DeleteAudioFile {
        id: format!("{:032x}", 2),
    };
    assert_eq!(apply(&mut txn, delete_file), Response::Ok);
    assert!(messages(&txn, "1002").is_empty());
}

#[test]
fn a_full_mailbox_and_a_foreign_file_are_refused() {
    let mut txn = office();
    let mut m = Mailbox::new("1002", 1);
    m.max_messages = 1;
    apply(&mut txn, Command::PutMailbox(m));
    apply(&mut txn, Command::PutMailbox(Mailbox::new("1001", 1)));
    assert_eq!(leave(&mut txn, 1, "1002"), Response::Ok);
    let Response::Invalid { reason, .. } = leave(&mut txn, 2, "1002") else {
        panic!("the second message does not fit");
    };
    assert!(reason.contains("full"), "{reason}");
    // 1001's voicemail file cannot become a message of 1002's.
    apply(
        &mut txn,
        Command::PutAudioFile(file(3, AudioKind::Voicemail, "1001")),
    );
    assert!(matches!(
        apply(&mut txn, Command::PutVoicemailMessage(message(3, "1002"))),
        Response::Invalid { .. }
    ));
}

#[test]
fn deleting_the_extension_deletes_its_mailbox_and_messages() {
    let mut txn = office();
    apply(&mut txn, Command::PutMailbox(Mailbox::new("1002", 1)));
    assert_eq!(leave(&mut txn, 1, "1002"), Response::Ok);
    let delete = Command::DeleteExtension {
        number: "1002".into(),
    };
    assert_eq!(apply(&mut txn, delete), Response::Ok);
    assert!(get::<Mailbox>(&txn, "1002").unwrap().is_none());
    assert!(messages(&txn, "1002").is_empty());
    assert!(
        get::<AudioFile>(&txn, &format!("{:032x}", 1))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_deleted_greeting_leaves_the_mailbox_with_the_beep_and_a_deleted_mailbox_takes_its_greetings() {
    let mut txn = office();
    apply(
        &mut txn,
        Command::PutAudioFile(file(8, AudioKind::Greeting, "1002")),
    );
    apply(
        &mut txn,
        Command::PutAudioFile(file(9, AudioKind::Greeting, "1002")),
    );
    let mut m = Mailbox::new("1002", 1);
    m.greeting_busy = Some(format!("{:032x}", 8));
    m.greeting_unavailable = Some(format!("{:032x}", 9));
    assert_eq!(apply(&mut txn, Command::PutMailbox(m)), Response::Ok);
    let gone = Command::DeleteAudioFile {
        id: format!("{:032x}", 8),
    };
    assert_eq!(apply(&mut txn, gone), Response::Ok);
    let stored = get::<Mailbox>(&txn, "1002").unwrap().unwrap();
    assert_eq!(stored.greeting_busy, None);
    assert_eq!(stored.greeting_unavailable, Some(format!("{:032x}", 9)));
    let delete = Command::DeleteMailbox {
        extension: "1002".into(),
    };
    assert_eq!(apply(&mut txn, delete), Response::Ok);
    assert!(
        get::<AudioFile>(&txn, &format!("{:032x}", 9))
            .unwrap()
            .is_none()
    );
}

fn name_of(txn: &MemTxn, extension: &str) -> Option<String> {
    get::<MailboxName>(txn, extension)
        .unwrap()
        .map(|n| n.greeting)
}

#[test]
fn a_name_greeting_is_the_extensions_own_and_goes_with_its_file_or_its_mailbox() {
    let mut txn = office();
    let set = |extension: &str, n: Option<u8>| Command::SetMailboxName {
        extension: extension.into(),
        greeting: n.map(|n| format!("{n:032x}")),
    };
    for (n, kind, owner) in [
        (7, AudioKind::Greeting, "1001"),
        (8, AudioKind::Greeting, "1002"),
        (9, AudioKind::Greeting, "1002"),
        (10, AudioKind::Prompt, "1002"),
    ] {
        assert_eq!(
            apply(&mut txn, Command::PutAudioFile(file(n, kind, owner))),
            Response::Ok
        );
    }
    // No mailbox yet: nothing to name.
    assert!(matches!(
        apply(&mut txn, set("1002", Some(8))),
        Response::NotFound { .. }
    ));
    apply(&mut txn, Command::PutMailbox(Mailbox::new("1002", 1)));
    // Another extension's greeting, a prompt, a file that does not exist, a malformed id: refused.
    for refused in [set("1002", Some(7)), set("1002", Some(10))] {
        let Response::Invalid { reason, .. } = apply(&mut txn, refused) else {
            panic!("not the mailbox's greeting");
        };
        assert!(reason.starts_with("greeting_name: "), "{reason}");
    }
    assert!(matches!(
        apply(&mut txn, set("1002", Some(99))),
        Response::NotFound { .. }
    ));
    let malformed = Command::SetMailboxName {
        extension: "1002".into(),
        greeting: Some("hello.wav".into()),
    };
    assert!(matches!(
        apply(&mut txn, malformed),
        Response::Invalid { .. }
    ));
    assert_eq!(name_of(&txn, "1002"), None);

    assert_eq!(apply(&mut txn, set("1002", Some(8))), Response::Ok);
    assert_eq!(name_of(&txn, "1002"), Some(format!("{:032x}", 8)));
    // The mailbox itself is written as before: its name stays.
    let mut m = Mailbox::new("1002", 1);
    m.ring_secs = 30;
    assert_eq!(apply(&mut txn, Command::PutMailbox(m)), Response::Ok);
    assert_eq!(name_of(&txn, "1002"), Some(format!("{:032x}", 8)));
    // Cleared, then set again.
    assert_eq!(apply(&mut txn, set("1002", None)), Response::Ok);
    assert_eq!(name_of(&txn, "1002"), None);
    assert_eq!(apply(&mut txn, set("1002", None)), Response::Ok);
    assert_eq!(apply(&mut txn, set("1002", Some(8))), Response::Ok);

    // Its file deleted (API, retention): the name is forgotten, the rest of the mailbox stays.
    let gone = Command::DeleteAudioFile {
        id: format!("{:032x}", 8),
    };
    assert_eq!(apply(&mut txn, gone), Response::Ok);
    assert_eq!(name_of(&txn, "1002"), None);
    assert_eq!(get::<Mailbox>(&txn, "1002").unwrap().unwrap().ring_secs, 30);

    // The mailbox deleted: its name and the name's file go with it.
    assert_eq!(apply(&mut txn, set("1002", Some(9))), Response::Ok);
    let delete = Command::DeleteMailbox {
        extension: "1002".into(),
    };
    assert_eq!(apply(&mut txn, delete), Response::Ok);
    assert_eq!(name_of(&txn, "1002"), None);
    assert!(
        get::<AudioFile>(&txn, &format!("{:032x}", 9))
            .unwrap()
            .is_none()
    );
    // A new mailbox starts without a name.
    apply(&mut txn, Command::PutMailbox(Mailbox::new("1002", 2)));
    assert_eq!(name_of(&txn, "1002"), None);
}
