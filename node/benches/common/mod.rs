//! A one-node cluster seeded like a busy office, shared by the benches that need one: 10,000
//! extensions (8,000 registered), 100,000 CDRs over the last 30 days, 2,000 audit entries, 2,000
//! events, an admin web account and a `user`-role account for one extension, all written through
//! Raft like a live node's.
#![allow(dead_code, reason = "each bench uses part of it")]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use cluster::{Cluster, ClusterConfig, NodeTlsFiles, generate_ca, issue_node_cert};
use storage::model::{
    AuditEntry, Binding, CallDetail, ClusterRecord, Disposition, Event, Extension, HangupSide,
    MemberRecord, NodeAddr, Setting, Severity,
};
use storage::routing::PutMode;
use storage::web::WebAccount;
use storage::{BindingOp, Command, Response};

pub(crate) const EXTENSIONS: usize = 10_000;
pub(crate) const REGISTERED: usize = 8_000;
pub(crate) const CDRS: usize = 100_000;
pub(crate) const AUDIT: usize = 2_000;
pub(crate) const EVENTS: usize = 2_000;
/// Records per Raft entry while seeding.
pub(crate) const BATCH: usize = 500;
/// Extension numbers are `FIRST..FIRST + EXTENSIONS`.
pub(crate) const FIRST: usize = 10_000;
pub(crate) const DAY_MS: u64 = 86_400_000;
pub(crate) const REALM: &str = "bench.example";
pub(crate) const PASSWORD: &str = "Quiet-Harbor-42x";
pub(crate) const ADMIN: &str = "admin";
/// The extension the `user` account belongs to (and its user name).
pub(crate) const USER_EXT: &str = "10042";

pub(crate) const FIRST_NAMES: [&str; 40] = [
    "Alice", "Bruno", "Chloé", "David", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Katia",
    "Liam", "Maya", "Nils", "Olga", "Pablo", "Quentin", "Rosa", "Sami", "Tara", "Ugo", "Vera",
    "Wim", "Xenia", "Yann", "Zoe", "Anna", "Boris", "Clara", "Dmitri", "Elif", "Felix", "Gina",
    "Hana", "Ivan", "Jade", "Karl", "Lena", "Marco", "Nora",
];
pub(crate) const LAST_NAMES: [&str; 40] = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "Andre", "Mercier", "Dupont", "Lambert", "Bonnet",
    "Francois", "Martinez", "Legrand", "Garnier", "Faure", "Rousseau", "Blanc", "Guerin", "Muller",
    "Henry", "Roussel", "Nicolas", "Perrin",
];

pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn number(i: usize) -> String {
    (FIRST + i).to_string()
}

pub(crate) async fn start_node(dir: &std::path::Path) -> Cluster {
    let ca = generate_ca("bench").expect("ca");
    let cert = issue_node_cert(&ca, 1, &[]).expect("node certificate");
    let tls = NodeTlsFiles::new(&ca.cert_pem, &cert);
    let advertise = NodeAddr {
        raft_addr: "127.0.0.1:1".into(),
        api_addr: "127.0.0.1:1".into(),
    };
    let cfg = ClusterConfig::new(1, "127.0.0.1:0".parse().expect("addr"), advertise, tls);
    let node = Cluster::start(cfg, &dir.join("n1")).await.expect("start");
    node.initialize().await.expect("initialize");
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.current_leader() != Some(1) {
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node
}

pub(crate) async fn propose(node: &Cluster, cmd: Command) {
    let kind = cmd.kind();
    let resp = node.propose(cmd).await.expect("propose");
    let ok = match &resp {
        Response::Batch(all) => all.iter().all(|r| *r == Response::Ok),
        r => *r == Response::Ok,
    };
    assert!(ok, "{kind} refused: {resp:?}");
}

/// Proposes `cmds` in batches of [`BATCH`], four batches in flight.
pub(crate) async fn propose_batched(node: &Cluster, cmds: Vec<Command>) {
    let mut batches = Vec::new();
    let mut it = cmds.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(Command::Batch(it.by_ref().take(BATCH).collect()));
    }
    for group in batches.chunks(4) {
        futures::future::join_all(group.iter().map(|b| propose(node, b.clone()))).await;
    }
}

pub(crate) fn account(username: &str, role: &str, extension: Option<&str>, now: u64) -> Command {
    Command::PutWebAccount {
        account: Box::new(WebAccount {
            username: username.into(),
            password_hash: pbx::accounts::hash_password(PASSWORD).expect("argon2"),
            role: role.into(),
            extension: extension.map(str::to_owned),
            email: None,
            disabled: false,
            must_change_password: false,
            totp: None,
            password_changed_at: now,
            created_at: now,
            updated_at: now,
        }),
        mode: PutMode::Create,
    }
}

pub(crate) fn extension(rng: &mut StdRng, i: usize, now: u64) -> Extension {
    let n = number(i);
    let name = format!(
        "{} {}",
        FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())],
        LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())]
    );
    let created = now - rng.gen_range(30..400) * DAY_MS;
    Extension {
        credentials: pbx::credentials::sip_credentials(&n, REALM, &format!("s3cret-{n}"), created),
        number: n,
        display_name: name,
        permission_group: "internal".into(),
        enabled: rng.gen_bool(0.98),
        created_at: created,
        updated_at: created,
    }
}

pub(crate) fn binding(rng: &mut StdRng, i: usize, now: u64) -> Binding {
    let n = number(i);
    let ip = format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256);
    Binding {
        contact: format!("sip:{n}@{ip}:5060;transport=udp"),
        aor: n,
        expires_at: now + 3_600_000,
        q: None,
        call_id: format!("{:016x}@{ip}", rng.r#gen::<u64>()),
        cseq: rng.gen_range(1..5000),
        source: format!("{ip}:5060"),
        transport: "udp".into(),
        user_agent: "Yealink SIP-T46U 108.86.0.45".into(),
        node_id: 1,
        registered_at: now - rng.gen_range(0..3_000_000),
        instance: None,
        reachable: Some(true),
    }
}

/// A CDR between two different extensions, started within the last 30 days.
pub(crate) fn cdr(rng: &mut StdRng, now: u64) -> CallDetail {
    let caller = rng.gen_range(0..EXTENSIONS);
    let mut callee = rng.gen_range(0..EXTENSIONS - 1);
    if callee >= caller {
        callee += 1;
    }
    let started_at = now - rng.gen_range(60_000..30 * DAY_MS);
    let ring = rng.gen_range(1_000..25_000);
    let roll: u32 = rng.gen_range(0..100);
    let (disposition, sip_status, cause) = match roll {
        0..65 => (Disposition::Answered, 200, "bye"),
        65..77 => (Disposition::NoAnswer, 480, "no-answer"),
        77..85 => (Disposition::Busy, 486, "486"),
        85..93 => (Disposition::Cancelled, 487, "cancel"),
        93..97 => (Disposition::Unavailable, 480, "480"),
        97..99 => (Disposition::Failed, 500, "500"),
        _ => (Disposition::NotFound, 404, "404"),
    };
    let (answered_at, duration_secs, ended_at, hangup_side) =
        if disposition == Disposition::Answered {
            // Mostly short calls, a few long ones (up to an hour).
            let d = (rng.r#gen::<f64>().powi(3) * 3_600.0) as u64 + 3;
            let side = if rng.gen_bool(0.5) {
                HangupSide::Caller
            } else {
                HangupSide::Callee
            };
            (
                Some(started_at + ring),
                d,
                started_at + ring + d * 1000,
                side,
            )
        } else {
            let side = match disposition {
                Disposition::Cancelled => HangupSide::Caller,
                Disposition::Busy => HangupSide::Callee,
                _ => HangupSide::Pbx,
            };
            (None, 0, started_at + ring, side)
        };
    CallDetail {
        id: format!("{:032x}", rng.r#gen::<u128>()),
        caller: number(caller),
        callee: number(callee),
        started_at,
        answered_at,
        ended_at,
        duration_secs,
        disposition,
        hangup_side,
        cause: cause.into(),
        sip_status,
        node_id: 1,
    }
}

/// Seeds the node; returns the key of the CDR in the middle of the table (a cursor for a later page).
pub(crate) async fn seed(node: &Cluster) -> String {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let now = now_millis();
    let started = Instant::now();
    propose(
        node,
        Command::InitCluster(ClusterRecord {
            cluster_id: "bench0000".into(),
            realm: REALM.into(),
            secret: vec![7; 32],
            created_at: now,
        }),
    )
    .await;
    propose(
        node,
        Command::PutMember(MemberRecord {
            node_id: 1,
            name: "pbx-1".into(),
            addr: NodeAddr {
                raft_addr: "127.0.0.1:1".into(),
                api_addr: "127.0.0.1:1".into(),
            },
            joined_at: now,
        }),
    )
    .await;
    propose(
        node,
        Command::PutSetting(Setting {
            key: "system.setup_done".into(),
            value: "true".into(),
            updated_at: now,
        }),
    )
    .await;
    let exts = (0..EXTENSIONS)
        .map(|i| Command::CreateExtension(extension(&mut rng, i, now)))
        .collect();
    propose_batched(node, exts).await;
    let bindings: Vec<BindingOp> = (0..REGISTERED)
        .map(|i| BindingOp::Put(binding(&mut rng, i * EXTENSIONS / REGISTERED, now)))
        .collect();
    for chunk in bindings.chunks(BATCH) {
        propose(node, Command::UpdateBindings(chunk.to_vec())).await;
    }
    println!(
        "seeded {EXTENSIONS} extensions, {REGISTERED} registrations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let cdrs: Vec<CallDetail> = (0..CDRS).map(|_| cdr(&mut rng, now)).collect();
    let mut keys: Vec<String> = cdrs.iter().map(storage::Record::key).collect();
    keys.sort();
    let cmds = cdrs
        .into_iter()
        .map(|c| Command::EndCall {
            call_id: c.id.clone(),
            cdr: Box::new(c),
        })
        .collect();
    propose_batched(node, cmds).await;
    println!(
        "seeded {CDRS} CDRs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let audit = (0..AUDIT)
        .map(|i| {
            Command::Audit(AuditEntry {
                at: now - (AUDIT - i) as u64 * 600_000,
                seq: format!("{i:04}"),
                actor: ADMIN.into(),
                source: "192.0.2.10".into(),
                action: format!("PATCH /api/v1/extensions/{}", number(i % EXTENSIONS)),
                status: 200,
                node_id: 1,
            })
        })
        .collect();
    propose_batched(node, audit).await;
    let events = (0..EVENTS)
        .map(|i| {
            Command::RecordEvent(Event {
                at: now - (EVENTS - i) as u64 * 600_000,
                seq: format!("{i:04}"),
                kind: if i % 3 == 0 {
                    "source_banned"
                } else {
                    "login_failed"
                }
                .into(),
                severity: if i % 3 == 0 {
                    Severity::Warning
                } else {
                    Severity::Info
                },
                node_id: 1,
                source: Some(format!("198.51.100.{}", i % 250)),
                message: "bench event".into(),
            })
        })
        .collect();
    propose_batched(node, events).await;
    propose(node, account(ADMIN, "admin", None, now)).await;
    propose(node, account(USER_EXT, "user", Some(USER_EXT), now)).await;
    keys.swap_remove(CDRS / 2)
}
