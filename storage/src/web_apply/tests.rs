use super::*;
use crate::codec;
use crate::command::Command;
use crate::command::tests::{MemTxn, cdr, ext};
use crate::model::{DialogLeg, Role};
use crate::web::{Grants, Totp};

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn acct(name: &str, role: &str) -> WebAccount {
    WebAccount {
        username: name.into(),
        password_hash: "$argon2id$x".into(),
        role: role.into(),
        extension: None,
        email: None,
        disabled: false,
        must_change_password: false,
        totp: None,
        password_changed_at: 1,
        created_at: 1,
        updated_at: 1,
    }
}

fn legacy(name: &str, role: Role) -> UserAccount {
    UserAccount {
        username: name.into(),
        password_hash: "$argon2id$legacy".into(),
        role,
        extension: None,
        password_changed_at: 5,
        created_at: 2,
    }
}

fn role(name: &str) -> WebRole {
    WebRole {
        name: name.into(),
        description: "desk".into(),
        grants: Grants::OPERATOR,
        created_at: 1,
        updated_at: 1,
    }
}

fn session(id: &str, user: &str, expires_at: u64) -> WebSession {
    WebSession {
        id: id.into(),
        username: user.into(),
        created_at: 1,
        expires_at,
        source: "198.18.0.21".into(),
    }
}

fn call(id: &str) -> ActiveCall {
    ActiveCall {
        id: id.into(),
        node_id: 1,
        caller: DialogLeg::default(),
        callee: DialogLeg::default(),
        media_addr: "192.0.2.100".into(),
        streams: vec![],
        started_at: 1,
        answered_at: 2,
        updated_at: 2,
    }
}

fn hangup(call_id: &str) -> HangupRequest {
    HangupRequest {
        call_id: call_id.into(),
        requested_by: "admin".into(),
        requested_at: 10,
    }
}

fn put_acct(a: WebAccount, mode: PutMode) -> Command {
    Command::PutWebAccount {
        account: Box::new(a),
        mode,
    }
}

fn put_role_cmd(r: WebRole, mode: PutMode) -> Command {
    Command::PutWebRole { role: r, mode }
}

fn open(s: WebSession, totp_step: Option<u64>) -> Command {
    Command::OpenWebSession {
        session: s,
        totp_step,
    }
}

fn del_acct(name: &str) -> Command {
    Command::DeleteWebAccount {
        username: name.into(),
    }
}

fn stored(txn: &MemTxn, name: &str) -> Option<WebAccount> {
    get::<WebAccount>(txn, name).unwrap()
}

fn sessions(txn: &MemTxn) -> Vec<String> {
    txn.keys_with_prefix(Table::WebSessions, "")
}

fn nf(table: &str, key: &str) -> Response {
    Response::NotFound {
        table: table.into(),
        key: key.into(),
    }
}

fn cf(table: &str, key: &str) -> Response {
    Response::Conflict {
        table: table.into(),
        key: key.into(),
    }
}

/// A store with one enabled admin, `root`.
fn with_admin() -> MemTxn {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(&mut txn, put_acct(acct("root", "admin"), PutMode::Create)),
        Response::Ok
    );
    txn
}

fn put_legacy(txn: &mut MemTxn, u: &UserAccount) {
    txn.put(Table::Users, &u.username, codec::encode(u).unwrap());
}

#[test]
fn creating_twice_conflicts_and_keeps_the_first() {
    let mut txn = with_admin();
    let mut other = acct("root", "user");
    other.email = Some("x@example.com".into());
    assert_eq!(
        apply(&mut txn, put_acct(other, PutMode::Create)),
        cf("web_accounts", "root")
    );
    assert_eq!(stored(&txn, "root").unwrap(), acct("root", "admin"));
}

#[test]
fn creating_over_a_legacy_account_conflicts() {
    let mut txn = MemTxn::default();
    put_legacy(&mut txn, &legacy("old", Role::User));
    assert_eq!(
        apply(&mut txn, put_acct(acct("old", "user"), PutMode::Create)),
        cf("web_accounts", "old")
    );
    assert!(txn.get(Table::Users, "old").is_some());
    assert!(stored(&txn, "old").is_none());
}

#[test]
fn updating_a_missing_account_is_not_found() {
    let mut txn = with_admin();
    assert_eq!(
        apply(&mut txn, put_acct(acct("ghost", "user"), PutMode::Update)),
        nf("web_accounts", "ghost")
    );
    assert!(stored(&txn, "ghost").is_none());
}

#[test]
fn updating_an_existing_account_replaces_it() {
    let mut txn = with_admin();
    apply(&mut txn, put_acct(acct("ann", "user"), PutMode::Create));
    let mut a = acct("ann", "operator");
    a.must_change_password = true;
    assert_eq!(
        apply(&mut txn, put_acct(a.clone(), PutMode::Update)),
        Response::Ok
    );
    assert_eq!(stored(&txn, "ann").unwrap(), a);
}

#[test]
fn a_legacy_account_is_seen_and_moved_on_update() {
    let mut txn = MemTxn::default();
    let mut u = legacy("old", Role::User);
    u.extension = Some("1001".into());
    put_legacy(&mut txn, &u);
    apply(&mut txn, Command::CreateExtension(ext("1001")));
    // Read as a WebAccount through the legacy table.
    let seen = account(&txn, "old").unwrap().unwrap();
    assert_eq!(seen, WebAccount::from_legacy(u.clone()));
    assert_eq!(seen.role, "user");
    assert_eq!(seen.extension.as_deref(), Some("1001"));

    let mut changed = seen;
    changed.email = Some("old@example.com".into());
    assert_eq!(
        apply(&mut txn, put_acct(changed.clone(), PutMode::Update)),
        Response::Ok
    );
    assert!(txn.get(Table::Users, "old").is_none(), "left in Users");
    assert_eq!(stored(&txn, "old").unwrap(), changed);
    assert_eq!(account(&txn, "old").unwrap().unwrap(), changed);
}

#[test]
fn a_legacy_admin_is_read_as_admin() {
    let u = legacy("boss", Role::Admin);
    let a = WebAccount::from_legacy(u);
    assert_eq!(a.role, "admin");
    assert!(!a.disabled);
    assert_eq!(a.updated_at, 5);
}

#[test]
fn an_unknown_role_or_extension_is_not_found() {
    let mut txn = with_admin();
    assert_eq!(
        apply(&mut txn, put_acct(acct("ann", "desk"), PutMode::Create)),
        nf("web_roles", "desk")
    );
    let mut a = acct("ann", "user");
    a.extension = Some("1001".into());
    assert_eq!(
        apply(&mut txn, put_acct(a.clone(), PutMode::Create)),
        nf("extensions", "1001")
    );
    assert!(stored(&txn, "ann").is_none());

    // Once both exist the account is accepted.
    apply(&mut txn, put_role_cmd(role("desk"), PutMode::Create));
    apply(&mut txn, Command::CreateExtension(ext("1001")));
    a.role = "desk".into();
    assert_eq!(
        apply(&mut txn, put_acct(a.clone(), PutMode::Create)),
        Response::Ok
    );
    assert_eq!(stored(&txn, "ann").unwrap(), a);
}

#[test]
fn an_update_also_checks_role_and_extension() {
    let mut txn = with_admin();
    apply(&mut txn, put_acct(acct("ann", "user"), PutMode::Create));
    assert_eq!(
        apply(&mut txn, put_acct(acct("ann", "desk"), PutMode::Update)),
        nf("web_roles", "desk")
    );
    let mut a = acct("ann", "user");
    a.extension = Some("2000".into());
    assert_eq!(
        apply(&mut txn, put_acct(a, PutMode::Update)),
        nf("extensions", "2000")
    );
    assert_eq!(stored(&txn, "ann").unwrap(), acct("ann", "user"));
}

#[test]
fn the_last_enabled_admin_cannot_be_deleted_disabled_or_demoted() {
    let mut txn = with_admin();
    let last = cf("last_admin", "root");
    assert_eq!(apply(&mut txn, del_acct("root")), last);
    let mut disabled = acct("root", "admin");
    disabled.disabled = true;
    assert_eq!(apply(&mut txn, put_acct(disabled, PutMode::Update)), last);
    for r in ["operator", "user"] {
        assert_eq!(
            apply(&mut txn, put_acct(acct("root", r), PutMode::Update)),
            last
        );
    }
    assert_eq!(stored(&txn, "root").unwrap(), acct("root", "admin"));
    // A change that keeps it an enabled admin is fine.
    let mut same = acct("root", "admin");
    same.email = Some("root@example.com".into());
    assert_eq!(
        apply(&mut txn, put_acct(same, PutMode::Update)),
        Response::Ok
    );
}

#[test]
fn a_disabled_second_admin_does_not_count() {
    let mut txn = with_admin();
    let mut two = acct("two", "admin");
    two.disabled = true;
    apply(&mut txn, put_acct(two, PutMode::Create));
    apply(&mut txn, put_acct(acct("op", "operator"), PutMode::Create));
    assert_eq!(apply(&mut txn, del_acct("root")), cf("last_admin", "root"));
    // The disabled admin itself may go.
    assert_eq!(apply(&mut txn, del_acct("two")), Response::Ok);
}

#[test]
fn with_a_second_enabled_admin_one_may_go() {
    for action in 0..3 {
        let mut txn = with_admin();
        apply(&mut txn, put_acct(acct("two", "admin"), PutMode::Create));
        let cmd = match action {
            0 => del_acct("root"),
            1 => {
                let mut a = acct("root", "admin");
                a.disabled = true;
                put_acct(a, PutMode::Update)
            }
            _ => put_acct(acct("root", "user"), PutMode::Update),
        };
        assert_eq!(apply(&mut txn, cmd), Response::Ok, "action {action}");
        // Now `two` is the last one.
        assert_eq!(
            apply(&mut txn, del_acct("two")),
            cf("last_admin", "two"),
            "action {action}"
        );
    }
}

#[test]
fn a_legacy_admin_counts_as_the_other_admin() {
    let mut txn = with_admin();
    put_legacy(&mut txn, &legacy("boss", Role::Admin));
    assert_eq!(
        apply(&mut txn, put_acct(acct("root", "user"), PutMode::Update)),
        Response::Ok
    );
    // The legacy admin is now the last one: neither deleted nor demoted.
    assert_eq!(apply(&mut txn, del_acct("boss")), cf("last_admin", "boss"));
    let demoted = WebAccount {
        role: "user".into(),
        ..WebAccount::from_legacy(legacy("boss", Role::Admin))
    };
    assert_eq!(
        apply(&mut txn, put_acct(demoted, PutMode::Update)),
        cf("last_admin", "boss")
    );
    assert!(txn.get(Table::Users, "boss").is_some());
    assert!(stored(&txn, "boss").is_none());
}

#[test]
fn the_last_admin_may_go_once_a_legacy_user_is_promoted() {
    let mut txn = with_admin();
    put_legacy(&mut txn, &legacy("old", Role::User));
    assert_eq!(apply(&mut txn, del_acct("root")), cf("last_admin", "root"));
    apply(&mut txn, put_acct(acct("old", "admin"), PutMode::Update));
    assert_eq!(apply(&mut txn, del_acct("root")), Response::Ok);
}

#[test]
fn a_legacy_admin_alone_is_the_last_admin() {
    let mut txn = MemTxn::default();
    put_legacy(&mut txn, &legacy("boss", Role::Admin));
    assert_eq!(apply(&mut txn, del_acct("boss")), cf("last_admin", "boss"));
    assert!(txn.get(Table::Users, "boss").is_some());
}

#[test]
fn deleting_an_account_removes_it_and_closes_its_sessions() {
    let mut txn = with_admin();
    apply(&mut txn, put_acct(acct("ann", "user"), PutMode::Create));
    for (id, user) in [("s1", "ann"), ("s2", "ann"), ("s3", "root")] {
        assert_eq!(
            apply(&mut txn, open(session(id, user, 1_000), None)),
            Response::Ok
        );
    }
    assert_eq!(apply(&mut txn, del_acct("ann")), Response::Ok);
    assert!(account(&txn, "ann").unwrap().is_none());
    assert_eq!(sessions(&txn), ["s3"]);
    assert_eq!(apply(&mut txn, del_acct("ann")), nf("web_accounts", "ann"));
}

#[test]
fn deleting_a_legacy_account_removes_it_from_users() {
    let mut txn = with_admin();
    put_legacy(&mut txn, &legacy("old", Role::User));
    apply(&mut txn, open(session("s1", "old", 1_000), None));
    assert_eq!(apply(&mut txn, del_acct("old")), Response::Ok);
    assert!(txn.get(Table::Users, "old").is_none());
    assert!(sessions(&txn).is_empty());
}

#[test]
fn built_in_role_names_are_refused() {
    let mut txn = MemTxn::default();
    for name in BUILT_IN_ROLES {
        for mode in [PutMode::Create, PutMode::Update] {
            assert_eq!(
                apply(&mut txn, put_role_cmd(role(name), mode)),
                cf("web_roles", name)
            );
        }
    }
    assert!(txn.keys_with_prefix(Table::WebRoles, "").is_empty());
}

#[test]
fn custom_roles_are_created_updated_and_deleted() {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(&mut txn, put_role_cmd(role("desk"), PutMode::Update)),
        nf("web_roles", "desk")
    );
    assert_eq!(
        apply(&mut txn, put_role_cmd(role("desk"), PutMode::Create)),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, put_role_cmd(role("desk"), PutMode::Create)),
        cf("web_roles", "desk")
    );
    let mut r = role("desk");
    r.grants = Grants::USER;
    assert_eq!(
        apply(&mut txn, put_role_cmd(r.clone(), PutMode::Update)),
        Response::Ok
    );
    assert_eq!(get::<WebRole>(&txn, "desk").unwrap().unwrap(), r);
    let del = |n: &str| Command::DeleteWebRole { name: n.into() };
    assert_eq!(apply(&mut txn, del("desk")), Response::Ok);
    assert_eq!(apply(&mut txn, del("desk")), nf("web_roles", "desk"));
    assert_eq!(apply(&mut txn, del("admin")), nf("web_roles", "admin"));
}

#[test]
fn a_role_in_use_cannot_be_deleted() {
    let mut txn = with_admin();
    apply(&mut txn, put_role_cmd(role("desk"), PutMode::Create));
    apply(&mut txn, put_acct(acct("ann", "desk"), PutMode::Create));
    let del = || Command::DeleteWebRole {
        name: "desk".into(),
    };
    assert_eq!(apply(&mut txn, del()), cf("web_accounts", "ann"));
    assert!(txn.get(Table::WebRoles, "desk").is_some());
    apply(&mut txn, put_acct(acct("ann", "user"), PutMode::Update));
    assert_eq!(apply(&mut txn, del()), Response::Ok);
}

#[test]
fn sessions_open_only_for_enabled_known_accounts() {
    let mut txn = with_admin();
    assert_eq!(
        apply(&mut txn, open(session("s1", "ghost", 1_000), None)),
        nf("web_accounts", "ghost")
    );
    let mut off = acct("off", "user");
    off.disabled = true;
    apply(&mut txn, put_acct(off, PutMode::Create));
    assert_eq!(
        apply(&mut txn, open(session("s1", "off", 1_000), None)),
        nf("web_accounts", "off")
    );
    assert!(sessions(&txn).is_empty());
    assert_eq!(
        apply(&mut txn, open(session("s1", "root", 1_000), None)),
        Response::Ok
    );
    assert_eq!(
        get::<WebSession>(&txn, "s1").unwrap().unwrap(),
        session("s1", "root", 1_000)
    );
    // The same id twice is refused.
    assert_eq!(
        apply(&mut txn, open(session("s1", "root", 2_000), None)),
        cf("web_sessions", "s1")
    );
}

#[test]
fn a_legacy_account_may_open_a_session() {
    let mut txn = MemTxn::default();
    put_legacy(&mut txn, &legacy("old", Role::User));
    assert_eq!(
        apply(&mut txn, open(session("s1", "old", 1_000), None)),
        Response::Ok
    );
    // Without a TOTP step it stays where it was.
    assert!(txn.get(Table::Users, "old").is_some());
}

fn with_totp(last_step: u64) -> MemTxn {
    let mut txn = with_admin();
    let mut a = acct("ann", "user");
    a.totp = Some(Totp {
        secret: vec![1; 20],
        confirmed: true,
        last_step,
    });
    apply(&mut txn, put_acct(a, PutMode::Create));
    txn
}

fn last_step(txn: &MemTxn) -> u64 {
    stored(txn, "ann").unwrap().totp.unwrap().last_step
}

#[test]
fn a_totp_step_is_recorded_and_never_accepted_again() {
    let mut txn = with_totp(100);
    assert_eq!(
        apply(&mut txn, open(session("s1", "ann", 1_000), Some(101))),
        Response::Ok
    );
    assert_eq!(last_step(&txn), 101);
    for step in [101, 100, 0] {
        assert_eq!(
            apply(&mut txn, open(session("s2", "ann", 1_000), Some(step))),
            cf("totp_code", "ann"),
            "step {step}"
        );
    }
    assert_eq!(last_step(&txn), 101);
    assert_eq!(sessions(&txn), ["s1"]);
    assert_eq!(
        apply(&mut txn, open(session("s2", "ann", 1_000), Some(105))),
        Response::Ok
    );
    assert_eq!(last_step(&txn), 105);
}

#[test]
fn a_totp_step_without_totp_is_refused() {
    let mut txn = with_admin();
    assert_eq!(
        apply(&mut txn, open(session("s1", "root", 1_000), Some(7))),
        nf("web_accounts", "root")
    );
    assert!(sessions(&txn).is_empty());
    assert_eq!(stored(&txn, "root").unwrap().totp, None);
}

#[test]
fn a_refused_session_does_not_use_up_the_totp_step() {
    // A session id that is taken refuses the command; the step it carried should stay unused.
    let mut txn = with_totp(100);
    apply(&mut txn, open(session("s1", "ann", 1_000), Some(101)));
    let refused = apply(&mut txn, open(session("s1", "ann", 1_000), Some(102)));
    assert_eq!(refused, cf("web_sessions", "s1"));
    assert_eq!(
        last_step(&txn),
        101,
        "a refused command changed the account"
    );
}

#[test]
fn closing_sessions() {
    let mut txn = with_admin();
    apply(&mut txn, put_acct(acct("ann", "user"), PutMode::Create));
    for (id, user) in [("a1", "ann"), ("a2", "ann"), ("a3", "ann"), ("r1", "root")] {
        apply(&mut txn, open(session(id, user, 1_000), None));
    }
    let close = |id: &str| Command::CloseWebSession { id: id.into() };
    assert_eq!(apply(&mut txn, close("a3")), Response::Ok);
    assert_eq!(apply(&mut txn, close("a3")), Response::Ok, "idempotent");
    assert_eq!(sessions(&txn), ["a1", "a2", "r1"]);

    let of = |except: Option<&str>| Command::CloseWebSessionsOf {
        username: "ann".into(),
        except: except.map(str::to_owned),
    };
    assert_eq!(apply(&mut txn, of(Some("a2"))), Response::Ok);
    assert_eq!(sessions(&txn), ["a2", "r1"]);
    // `except` naming another account's session does not spare ann's nor touch root's.
    apply(&mut txn, open(session("a4", "ann", 1_000), None));
    assert_eq!(apply(&mut txn, of(Some("r1"))), Response::Ok);
    assert_eq!(sessions(&txn), ["r1"]);
    apply(&mut txn, open(session("a5", "ann", 1_000), None));
    assert_eq!(apply(&mut txn, of(None)), Response::Ok);
    assert_eq!(sessions(&txn), ["r1"]);
}

#[test]
fn pruning_drops_only_expired_sessions() {
    let mut txn = with_admin();
    for (id, exp) in [("s1", 100), ("s2", 200), ("s3", 201), ("s4", 5_000)] {
        apply(&mut txn, open(session(id, "root", exp), None));
    }
    assert_eq!(
        apply(&mut txn, Command::PruneWebSessions { now: 200 }),
        Response::Ok
    );
    assert_eq!(sessions(&txn), ["s3", "s4"]);
    apply(&mut txn, Command::PruneWebSessions { now: 0 });
    assert_eq!(sessions(&txn), ["s3", "s4"]);
}

#[test]
fn a_hangup_needs_a_call_in_progress() {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(&mut txn, Command::RequestHangup(hangup("c1"))),
        nf("calls", "c1")
    );
    assert!(txn.get(Table::HangupRequests, "c1").is_none());
    apply(&mut txn, Command::PutCall(Box::new(call("c1"))));
    assert_eq!(
        apply(&mut txn, Command::RequestHangup(hangup("c1"))),
        Response::Ok
    );
    assert_eq!(
        get::<HangupRequest>(&txn, "c1").unwrap().unwrap(),
        hangup("c1")
    );
}

#[test]
fn a_call_ending_removes_its_hangup_request() {
    let mut txn = MemTxn::default();
    for id in ["c1", "c2", "c3"] {
        apply(&mut txn, Command::PutCall(Box::new(call(id))));
        apply(&mut txn, Command::RequestHangup(hangup(id)));
    }
    let end = Command::EndCall {
        call_id: "c1".into(),
        cdr: Box::new(cdr(1, "c1")),
    };
    assert_eq!(apply(&mut txn, end), Response::Ok);
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteCall {
                call_id: "c2".into()
            }
        ),
        Response::Ok
    );
    assert_eq!(txn.keys_with_prefix(Table::HangupRequests, ""), ["c3"]);
    assert_eq!(txn.keys_with_prefix(Table::Calls, ""), ["c3"]);
}

fn cluster() -> ClusterRecord {
    ClusterRecord {
        cluster_id: "c".into(),
        realm: "pbx".into(),
        secret: vec![7; 32],
        created_at: 1,
    }
}

#[test]
fn the_realm_changes_only_while_there_are_no_extensions() {
    let mut txn = MemTxn::default();
    let set = |r: &str| Command::SetRealm { realm: r.into() };
    assert_eq!(apply(&mut txn, set("a")), nf("cluster", "cluster"));
    apply(&mut txn, Command::InitCluster(cluster()));
    assert_eq!(apply(&mut txn, set("pbx.example")), Response::Ok);
    let rec = get::<ClusterRecord>(&txn, ClusterRecord::KEY)
        .unwrap()
        .unwrap();
    assert_eq!(rec.realm, "pbx.example");
    assert_eq!(rec.secret, cluster().secret);

    apply(&mut txn, Command::CreateExtension(ext("1001")));
    assert_eq!(apply(&mut txn, set("other")), cf("extensions", "1001"));
    let rec = get::<ClusterRecord>(&txn, ClusterRecord::KEY)
        .unwrap()
        .unwrap();
    assert_eq!(rec.realm, "pbx.example");
    assert!(set("x").changes_routing());
}

#[test]
fn batched_commands_see_each_other() {
    // Reads within one batch see earlier writes: a role created then used, an admin added then the
    // first one removed.
    let mut txn = with_admin();
    let batch = Command::Batch(vec![
        put_role_cmd(role("desk"), PutMode::Create),
        put_acct(acct("ann", "desk"), PutMode::Create),
        put_acct(acct("two", "admin"), PutMode::Create),
        del_acct("root"),
        del_acct("two"),
    ]);
    assert_eq!(
        apply(&mut txn, batch),
        Response::Batch(vec![
            Response::Ok,
            Response::Ok,
            Response::Ok,
            Response::Ok,
            cf("last_admin", "two"),
        ])
    );
}

#[test]
fn kinds_name_the_new_commands() {
    let cmds = [
        (
            put_acct(acct("a", "user"), PutMode::Create),
            "put_web_account",
        ),
        (del_acct("a"), "delete_web_account"),
        (put_role_cmd(role("r"), PutMode::Create), "put_web_role"),
        (
            Command::DeleteWebRole { name: "r".into() },
            "delete_web_role",
        ),
        (open(session("s", "a", 1), None), "open_web_session"),
        (
            Command::CloseWebSession { id: "s".into() },
            "close_web_session",
        ),
        (
            Command::CloseWebSessionsOf {
                username: "a".into(),
                except: None,
            },
            "close_web_sessions_of",
        ),
        (Command::PruneWebSessions { now: 1 }, "prune_web_sessions"),
        (Command::RequestHangup(hangup("c")), "request_hangup"),
        (Command::SetRealm { realm: "r".into() }, "set_realm"),
    ];
    for (cmd, kind) in cmds {
        assert_eq!(cmd.kind(), kind);
        let back: Command = codec::decode(&codec::encode(&cmd).unwrap()).unwrap();
        assert_eq!(back, cmd);
    }
}
