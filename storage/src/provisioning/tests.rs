use super::*;
use crate::codec;
use crate::command::Command;
use crate::command::tests::{MemTxn, ext};

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn creds(number: &str, tag: &str) -> SipCredentials {
    SipCredentials {
        username: number.into(),
        realm: "pbx".into(),
        ha1_md5: format!("md5-{tag}"),
        ha1_sha256: format!("sha-{tag}"),
        changed_at: 5,
    }
}

fn device(mac: &str, extension: &str, secret: &str) -> Device {
    Device {
        mac: mac.into(),
        brand: Brand::Yealink,
        model: "T54W".into(),
        extension: extension.into(),
        label: String::new(),
        line_keys: Vec::new(),
        token_sha256: "ab".repeat(32),
        sip_secret: secret.into(),
        created_at: 1,
        updated_at: 1,
        last_config: None,
        last_firmware: None,
    }
}

fn create(d: Device, secret: SecretChange) -> Command {
    Command::PutDevices(vec![DevicePut {
        device: d,
        mode: PutMode::Create,
        secret,
    }])
}

fn join(d: Device) -> Command {
    let c = creds(&d.extension, &d.sip_secret);
    create(d, SecretChange::Join(c))
}

fn read<R: Record>(txn: &MemTxn, key: &str) -> Option<R> {
    txn.get(R::TABLE, key).map(|b| codec::decode(&b).unwrap())
}

fn setup() -> MemTxn {
    let mut txn = MemTxn::default();
    for n in ["1001", "1002", "1003"] {
        assert_eq!(
            apply(&mut txn, Command::CreateExtension(ext(n))),
            Response::Ok
        );
    }
    txn
}

fn reason(r: Response) -> String {
    match r {
        Response::Invalid { reason, .. } => reason,
        other => panic!("not invalid: {other:?}"),
    }
}

#[test]
fn macs_are_normalised_from_the_usual_spellings() {
    for raw in [
        "00:15:65:AA:BB:CC",
        "00-15-65-aa-bb-cc",
        "0015.65aa.bbcc",
        "001565aabbcc",
        " 00 15 65 AA BB CC ",
    ] {
        assert_eq!(normalize_mac(raw).unwrap(), "001565aabbcc", "{raw:?}");
    }
    for bad in [
        "",
        "00:15:65:aa:bb",
        "00:15:65:aa:bb:cc:dd",
        "00:15:65:aa:bb:cg",
        "000000000000",
        "ffffffffffff",
        "01:00:5e:00:00:01",
        "00:15:65\n:aa:bb:cc",
        "00_15_65_aa_bb_cc",
        &"0".repeat(40),
    ] {
        assert!(normalize_mac(bad).is_err(), "{bad:?}");
    }
    assert!(valid_mac("001565aabbcc"));
    assert!(!valid_mac("001565AABBCC"));
}

#[test]
fn a_device_is_checked_field_by_field() {
    let ok = device("001565aabbcc", "1001", "Secret123abc");
    assert_eq!(ok.problem(), None);
    let field = |f: &dyn Fn(&mut Device)| {
        let mut d = ok.clone();
        f(&mut d);
        d.problem().map(|(field, _)| field)
    };
    assert_eq!(field(&|d| d.mac = "001565AABBCC".into()), Some("mac"));
    assert_eq!(field(&|d| d.model = String::new()), Some("model"));
    assert_eq!(field(&|d| d.model = "T54W<x>".into()), Some("model"));
    assert_eq!(field(&|d| d.model = "M".repeat(33)), Some("model"));
    assert_eq!(field(&|d| d.extension = "1a".into()), Some("extension"));
    assert_eq!(field(&|d| d.label = "a\nb = c".into()), Some("label"));
    assert_eq!(field(&|d| d.label = "é".repeat(65)), Some("label"));
    assert_eq!(field(&|d| d.label = "é".repeat(64)), None);
    assert_eq!(
        field(&|d| d.line_keys = vec!["1002".into(), "1002".into()]),
        Some("line_keys")
    );
    assert_eq!(
        field(&|d| d.line_keys = (0..33).map(|i| format!("2{i:03}")).collect()),
        Some("line_keys")
    );
    assert_eq!(
        field(&|d| d.token_sha256 = "AB".repeat(32)),
        Some("token_sha256")
    );
    assert_eq!(field(&|d| d.sip_secret = "a\"b".into()), Some("sip_secret"));
    assert_eq!(field(&|d| d.sip_secret = String::new()), Some("sip_secret"));
}

#[test]
fn the_first_device_of_an_extension_sets_its_secret_and_the_next_shares_it() {
    let mut txn = setup();
    assert_eq!(
        apply(
            &mut txn,
            join(device("001565000001", "1001", "FirstSecret1"))
        ),
        Response::Ok
    );
    let e: Extension = read(&txn, "1001").unwrap();
    assert_eq!(e.credentials.ha1_md5, "md5-FirstSecret1");
    // The second device brings its own credentials, but takes the first one's secret: the first
    // phone keeps working.
    assert_eq!(
        apply(
            &mut txn,
            join(device("001565000002", "1001", "OtherSecret2"))
        ),
        Response::Ok
    );
    let e: Extension = read(&txn, "1001").unwrap();
    assert_eq!(e.credentials.ha1_md5, "md5-FirstSecret1");
    let second: Device = read(&txn, "001565000002").unwrap();
    assert_eq!(second.sip_secret, "FirstSecret1");
    assert_eq!(
        txn.keys_with_prefix(Table::DevicesByExtension, ""),
        ["1001/001565000001", "1001/001565000002"]
    );

    // A reprovision rotates the secret of the extension and of every device on it.
    let mut again = second;
    again.sip_secret = "RotatedSecret3".into();
    let rotate = Command::PutDevices(vec![DevicePut {
        device: again,
        mode: PutMode::Update,
        secret: SecretChange::Rotate(creds("1001", "RotatedSecret3")),
    }]);
    assert_eq!(apply(&mut txn, rotate), Response::Ok);
    let e: Extension = read(&txn, "1001").unwrap();
    assert_eq!(e.credentials.ha1_md5, "md5-RotatedSecret3");
    for mac in ["001565000001", "001565000002"] {
        let d: Device = read(&txn, mac).unwrap();
        assert_eq!(d.sip_secret, "RotatedSecret3", "{mac}");
    }
}

#[test]
fn an_update_keeps_the_stored_secret_and_a_move_joins_the_new_extension() {
    let mut txn = setup();
    apply(
        &mut txn,
        join(device("001565000001", "1001", "FirstSecret1")),
    );
    let mut changed = device("001565000001", "1001", "ignored");
    changed.label = "Front desk".into();
    changed.line_keys = vec!["1002".into()];
    let keep = |d: Device| {
        Command::PutDevices(vec![DevicePut {
            device: d,
            mode: PutMode::Update,
            secret: SecretChange::Keep,
        }])
    };
    assert_eq!(apply(&mut txn, keep(changed.clone())), Response::Ok);
    let d: Device = read(&txn, "001565000001").unwrap();
    assert_eq!(
        (d.sip_secret.as_str(), d.label.as_str()),
        ("FirstSecret1", "Front desk")
    );

    // Moving with Keep is the proposer's bug, refused; with Join, the index follows.
    let mut moved = changed;
    moved.extension = "1003".into();
    assert!(reason(apply(&mut txn, keep(moved.clone()))).starts_with("sip_secret:"));
    moved.sip_secret = "MovedSecret4".into();
    let join_update = Command::PutDevices(vec![DevicePut {
        device: moved,
        mode: PutMode::Update,
        secret: SecretChange::Join(creds("1003", "MovedSecret4")),
    }]);
    assert_eq!(apply(&mut txn, join_update), Response::Ok);
    assert_eq!(
        txn.keys_with_prefix(Table::DevicesByExtension, ""),
        ["1003/001565000001"]
    );
    let e: Extension = read(&txn, "1003").unwrap();
    assert_eq!(e.credentials.ha1_md5, "md5-MovedSecret4");
    // Credentials for another extension than the device's are refused.
    let wrong = create(
        device("001565000009", "1002", "S3cretSecret"),
        SecretChange::Join(creds("1001", "x")),
    );
    assert!(reason(apply(&mut txn, wrong)).starts_with("sip_secret:"));
}

#[test]
fn bad_duplicate_and_unknown_references_are_refused_and_write_nothing() {
    let mut txn = setup();
    apply(
        &mut txn,
        join(device("001565000001", "1001", "FirstSecret1")),
    );
    let before = txn.0.clone();
    assert_eq!(
        apply(
            &mut txn,
            join(device("001565000001", "1002", "S3cretSecret"))
        ),
        Response::Conflict {
            table: "devices".into(),
            key: "001565000001".into()
        }
    );
    assert_eq!(
        apply(
            &mut txn,
            join(device("001565000002", "1999", "S3cretSecret"))
        ),
        Response::NotFound {
            table: "extensions".into(),
            key: "1999".into()
        }
    );
    let mut keys = device("001565000002", "1002", "S3cretSecret");
    keys.line_keys = vec!["1001".into(), "1998".into()];
    assert_eq!(
        reason(apply(&mut txn, join(keys))),
        "line_keys[1]: extension 1998 does not exist"
    );
    let mut bad = device("001565000002", "1002", "S3cretSecret");
    bad.model = "T54W\n".into();
    assert!(reason(apply(&mut txn, join(bad))).starts_with("model:"));
    // A batch with one bad put writes none of it, not even the good ones before it.
    let good = DevicePut {
        device: device("001565000003", "1003", "GoodSecret33"),
        mode: PutMode::Create,
        secret: SecretChange::Join(creds("1003", "GoodSecret33")),
    };
    let dup = DevicePut {
        device: device("001565000001", "1002", "S3cretSecret"),
        mode: PutMode::Create,
        secret: SecretChange::Join(creds("1002", "S3cretSecret")),
    };
    let r = apply(&mut txn, Command::PutDevices(vec![good.clone(), dup]));
    assert!(matches!(r, Response::Conflict { .. }), "{r:?}");
    let r = apply(&mut txn, Command::PutDevices(vec![good.clone(), good]));
    assert!(reason(r).contains("given twice"));
    assert_eq!(txn.0, before);
    // Replacing a device that does not exist.
    let missing = Command::PutDevices(vec![DevicePut {
        device: device("001565000004", "1001", "S3cretSecret"),
        mode: PutMode::Update,
        secret: SecretChange::Keep,
    }]);
    assert!(matches!(
        apply(&mut txn, missing),
        Response::NotFound { .. }
    ));
    assert_eq!(txn.0, before);
}

#[test]
fn an_extension_holds_a_bounded_number_of_devices_counting_the_batch() {
    let mut txn = setup();
    let puts: Vec<DevicePut> = (0..=MAX_PER_EXTENSION)
        .map(|i| DevicePut {
            device: device(&format!("0015650000{i:02x}"), "1001", "S3cretSecret"),
            mode: PutMode::Create,
            secret: SecretChange::Join(creds("1001", "S3cretSecret")),
        })
        .collect();
    let before = txn.0.clone();
    let r = apply(&mut txn, Command::PutDevices(puts.clone()));
    assert!(reason(r).starts_with("extension:"));
    assert_eq!(txn.0, before);
    let fits = puts[..MAX_PER_EXTENSION].to_vec();
    assert_eq!(apply(&mut txn, Command::PutDevices(fits)), Response::Ok);
    assert_eq!(
        txn.keys_with_prefix(Table::DevicesByExtension, "1001/")
            .len(),
        MAX_PER_EXTENSION
    );
}

#[test]
fn fetches_are_recorded_bounded_and_devices_go_with_their_extension() {
    let mut txn = setup();
    apply(
        &mut txn,
        join(device("001565000001", "1001", "FirstSecret1")),
    );
    apply(
        &mut txn,
        join(device("001565000002", "1002", "OtherSecret2")),
    );
    let fetch = Fetch {
        file: "x".repeat(1000),
        at: 42,
        from: "198.18.0.21".into(),
    };
    let record = |mac: &str, kind| Command::RecordDeviceFetch {
        mac: mac.into(),
        kind,
        fetch: fetch.clone(),
    };
    assert_eq!(
        apply(&mut txn, record("001565000001", FetchKind::Config)),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, record("001565000001", FetchKind::Firmware)),
        Response::Ok
    );
    let d: Device = read(&txn, "001565000001").unwrap();
    let got = d.last_config.unwrap();
    assert_eq!((got.at, got.from.as_str()), (42, "198.18.0.21"));
    assert_eq!(got.file.len(), MAX_FETCH_FIELD);
    assert!(d.last_firmware.is_some());
    assert!(matches!(
        apply(&mut txn, record("001565000009", FetchKind::Config)),
        Response::NotFound { .. }
    ));

    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteExtension {
                number: "1001".into()
            }
        ),
        Response::Ok
    );
    assert!(read::<Device>(&txn, "001565000001").is_none());
    assert_eq!(
        txn.keys_with_prefix(Table::DevicesByExtension, ""),
        ["1002/001565000002"]
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteDevice {
                mac: "001565000002".into()
            }
        ),
        Response::Ok
    );
    assert!(
        txn.keys_with_prefix(Table::DevicesByExtension, "")
            .is_empty()
    );
    assert!(matches!(
        apply(
            &mut txn,
            Command::DeleteDevice {
                mac: "001565000002".into()
            }
        ),
        Response::NotFound { .. }
    ));
}

#[test]
fn settings_are_bounded() {
    let mut txn = MemTxn::default();
    let mut s = ProvisioningSettings {
        transport: SipTransport::Tls,
        ntp_server: Some("pool.ntp.org".into()),
        allowed_networks: vec!["198.18.0.0/24".into()],
        updated_at: 1,
    };
    assert_eq!(
        apply(&mut txn, Command::PutProvisioningSettings(s.clone())),
        Response::Ok
    );
    assert_eq!(
        read::<ProvisioningSettings>(&txn, ProvisioningSettings::KEY),
        Some(s.clone())
    );
    s.ntp_server = Some("ntp\nserver".into());
    assert!(
        reason(apply(&mut txn, Command::PutProvisioningSettings(s.clone())))
            .starts_with("ntp_server:")
    );
    s.ntp_server = None;
    s.allowed_networks = vec!["10.0.0.0/8".into(); MAX_NETWORKS + 1];
    assert!(
        reason(apply(&mut txn, Command::PutProvisioningSettings(s)))
            .starts_with("allowed_networks:")
    );
    assert_eq!(SipTransport::parse("tcp"), Some(SipTransport::Tcp));
    assert_eq!(Brand::parse("polycom"), Some(Brand::Polycom));
    assert_eq!(Brand::parse("Polycom"), None);
}

#[test]
fn firmware_needs_its_file() {
    let mut txn = MemTxn::default();
    let f = Firmware {
        brand: Brand::Yealink,
        model: "T54W".into(),
        file_name: "T54W-96.86.0.70.rom".into(),
        audio_id: "a".repeat(32),
        size: 10,
        sha256: "0".repeat(64),
        uploaded_at: 1,
    };
    assert!(matches!(
        apply(&mut txn, Command::PutFirmware(f.clone())),
        Response::NotFound { .. }
    ));
    let mut bad = f.clone();
    bad.file_name = "../etc/passwd".into();
    assert!(reason(apply(&mut txn, Command::PutFirmware(bad))).starts_with("file_name:"));
    assert_eq!(f.key(), "yealink/t54w");
}

#[test]
fn deleting_a_firmware_file_forgets_its_entry() {
    let mut txn = MemTxn::default();
    let file = crate::audio::AudioFile {
        id: "b".repeat(32),
        kind: crate::audio::AudioKind::Firmware,
        owner: String::new(),
        name: "yealink T54W fw.rom".into(),
        call_id: None,
        size: 10,
        sha256: "0".repeat(64),
        created_at: 1,
        retain_until: None,
        holders: vec![1, 2],
    };
    assert_eq!(
        apply(&mut txn, Command::PutAudioFile(file.clone())),
        Response::Ok
    );
    let f = Firmware {
        brand: Brand::Yealink,
        model: "T54W".into(),
        file_name: "T54W-96.86.0.70.rom".into(),
        audio_id: file.id.clone(),
        size: 10,
        sha256: "0".repeat(64),
        uploaded_at: 1,
    };
    assert_eq!(
        apply(&mut txn, Command::PutFirmware(f.clone())),
        Response::Ok
    );
    assert_eq!(read::<Firmware>(&txn, "yealink/t54w"), Some(f));
    assert_eq!(
        apply(&mut txn, Command::DeleteAudioFile { id: file.id }),
        Response::Ok
    );
    assert!(txn.keys_with_prefix(Table::Firmware, "").is_empty());
}
