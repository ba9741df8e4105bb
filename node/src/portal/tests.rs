//! The portal's pages as functions: escaping, the sign-in redirect, navigation per grants, paging.

use storage::web::{Grants, Scope};

use super::extensions::testing::{Map, extension};
use super::extensions::{self, Found, NAME_BUDGET, PAGE};
use super::layout::{self, Nav};
use super::{enc, query, safe_next};
use crate::api::Principal;

fn principal(role: &str, grants: Grants) -> Principal {
    Principal {
        username: format!("{role}-user"),
        role: role.into(),
        extension: Some("1001".into()),
        grants,
        session: None,
        must_change_password: false,
        needs_totp: false,
    }
}

fn admin() -> Principal {
    principal("admin", Grants::ADMIN)
}

const HOSTILE: &str = "<script>alert(1)</script>";

#[test]
fn a_hostile_display_name_shows_as_text_in_the_extensions_table() {
    let found = Found {
        items: vec![
            extension("1001", HOSTILE),
            extension("1002", "\"><img src=x onerror=alert(2)>"),
        ],
        next: None,
    };
    let html = extensions::render(&admin(), HOSTILE, true, &found, 2, &[], &Default::default())
        .into_string();
    assert!(!html.contains(HOSTILE), "raw script in the page");
    assert!(!html.contains("<img"), "raw markup from an attribute value");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown literally"
    );
    // The edit form's value attribute is escaped too: no way out of the quotes.
    assert!(
        html.contains("value=\"&quot;&gt;&lt;img src=x onerror=alert(2)&gt;\""),
        "{html}"
    );
    // No inline script or style anywhere (the CSP forbids them).
    assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains(" onclick"));
}

#[test]
fn a_hostile_name_is_text_on_the_full_page_too() {
    let who = principal("admin", Grants::ADMIN);
    let page = layout::page(
        &who,
        Nav::Extensions,
        HOSTILE,
        maud::html! { p { (HOSTILE) } },
    );
    let html = page.into_string();
    assert!(!html.contains(HOSTILE));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the portal's own script tag"
    );
    assert!(html.contains("<script src=\"/assets/portal.js\" defer></script>"));
    assert!(html.contains("<meta name=\"csrf-token\" content=\"\">"));
}

#[test]
fn next_is_kept_only_when_it_is_a_path_on_this_site() {
    for ok in [
        "/",
        "/extensions",
        "/cdrs?extension=1001&after=x",
        "/account/totp",
    ] {
        assert_eq!(safe_next(Some(ok)), ok);
    }
    for bad in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil",
        "",
        "/login",
        "/login?next=/x",
        "/a\nb",
        "/a\\b",
    ] {
        assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
    }
    assert_eq!(safe_next(None), "/");
    assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(2000)))), "/");
}

fn ids(who: &Principal) -> Vec<&'static str> {
    layout::nav_items(who).into_iter().map(Nav::id).collect()
}

#[test]
fn the_navigation_follows_the_grants() {
    assert_eq!(
        ids(&admin()).len(),
        Nav::ALL.len(),
        "an admin sees everything"
    );
    assert_eq!(
        ids(&principal("user", Grants::USER)),
        ["nav-cdrs", "nav-audio", "nav-contacts", "nav-me"],
        "a user sees their own calls, recordings, the phonebook and account"
    );
    assert_eq!(
        ids(&principal("operator", Grants::OPERATOR)),
        [
            "nav-dashboard",
            "nav-extensions",
            "nav-cdrs",
            "nav-audio",
            "nav-contacts",
            "nav-events",
            "nav-cluster",
            "nav-me"
        ]
    );
    let routing_only = Grants {
        extensions: false,
        routing: true,
        security: false,
        monitor: false,
        hang_up: false,
        cdrs: Scope::None,
        recordings: Scope::None,
    };
    assert_eq!(
        ids(&principal("router", routing_only)),
        ["nav-trunks", "nav-routes", "nav-contacts", "nav-me"]
    );
    let extensions_only = Grants {
        extensions: true,
        routing: false,
        ..routing_only
    };
    assert_eq!(
        ids(&principal("helpdesk", extensions_only)),
        [
            "nav-extensions",
            "nav-ring-groups",
            "nav-audio",
            "nav-contacts",
            "nav-me"
        ],
        "prompts and music are the extensions grant's"
    );
    // A custom role called "admin"-like but not admin gets no admin pages.
    let everything_but_admin = principal("superuser", Grants::ADMIN);
    let seen = ids(&everything_but_admin);
    assert!(!seen.contains(&"nav-accounts") && !seen.contains(&"nav-policy"));
    assert!(!seen.contains(&"nav-devices") && !seen.contains(&"nav-backups"));
    assert!(ids(&admin()).starts_with(&["nav-dashboard", "nav-extensions", "nav-devices"]));
    // The rendered page carries exactly those links.
    let html = layout::page(
        &principal("user", Grants::USER),
        Nav::Me,
        "Me",
        maud::html! {},
    )
    .into_string();
    assert!(html.contains("id=\"nav-cdrs\"") && html.contains("id=\"nav-me\""));
    assert!(!html.contains("id=\"nav-extensions\"") && !html.contains("id=\"nav-accounts\""));
    assert!(html.contains("id=\"logout\""));
}

fn ten_thousand() -> Map {
    Map::new((0..10_000).map(|i| {
        let number = format!("{}", 10_000 + i);
        extension(&number, &format!("User {i}"))
    }))
}

#[test]
fn ten_thousand_extensions_render_one_page() {
    let src = ten_thousand();
    let found = extensions::find(&src, "", None, PAGE, NAME_BUDGET).unwrap();
    assert_eq!(found.items.len(), PAGE);
    assert_eq!(
        src.visited.get(),
        PAGE + 1,
        "one page and one row to tell there is more"
    );
    assert_eq!(found.next.as_deref(), Some("10049"));
    let html = extensions::render(&admin(), "", true, &found, 10_000, &[], &Default::default())
        .into_string();
    assert_eq!(html.matches("<tr id=\"ext-row-").count(), PAGE);
    assert!(
        html.contains("href=\"/extensions?after=10049\""),
        "a next link"
    );
    // The next page starts after the cursor.
    let second = extensions::find(&src, "", Some("10049"), PAGE, NAME_BUDGET).unwrap();
    assert_eq!(second.items[0].number, "10050");
}

#[test]
fn searches_by_number_prefix_and_by_name() {
    let src = ten_thousand();
    let found = extensions::find(&src, "1999", None, PAGE, NAME_BUDGET).unwrap();
    let numbers: Vec<&str> = found.items.iter().map(|e| e.number.as_str()).collect();
    assert_eq!(
        numbers,
        [
            "19990", "19991", "19992", "19993", "19994", "19995", "19996", "19997", "19998",
            "19999"
        ]
    );
    assert_eq!(found.next, None);
    assert!(src.visited.get() <= 11, "a number prefix is a key range");

    let src = ten_thousand();
    let found = extensions::find(&src, "user 999", None, PAGE, NAME_BUDGET).unwrap();
    assert_eq!(found.items.len(), 11, "User 999 and User 9990..9999");
    assert_eq!(found.next, None);

    // A name search that matches little stops at its budget and resumes where it stopped.
    let src = ten_thousand();
    let cut = extensions::find(&src, "nobody", None, PAGE, 3000).unwrap();
    assert!(cut.items.is_empty());
    assert_eq!(cut.next.as_deref(), Some("12999"));
    assert_eq!(src.visited.get(), 3000);
}

#[test]
fn query_strings_and_path_segments_are_encoded() {
    assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    assert_eq!(query(&[("q", "x y"), ("after", "")]), "?q=x%20y");
    assert_eq!(query(&[("q", "")]), "");
}

#[test]
fn datetime_local_values_become_utc_times() {
    use super::cdrs::api_time;
    assert_eq!(api_time("2026-11-28T10:00"), "2026-11-28T10:00:00Z");
    assert_eq!(api_time("2026-11-28T10:00:30"), "2026-11-28T10:00:30Z");
    assert_eq!(
        api_time("2026-11-28T10:00:00+01:00"),
        "2026-11-28T10:00:00+01:00"
    );
    assert_eq!(api_time("1700000000000"), "1700000000000");
}

#[test]
fn times_and_durations() {
    assert_eq!(layout::utc(1_764_324_000_000), "2025-11-28 10:00:00 UTC");
    assert_eq!(layout::iso(1_764_324_000_000), "2025-11-28T10:00:00Z");
    assert_eq!(layout::duration(59), "0:59");
    assert_eq!(layout::duration(3_725), "1:02:05");
    assert_eq!(layout::bytes(0), "0 B");
    assert_eq!(layout::bytes(1023), "1023 B");
    assert_eq!(layout::bytes(1536), "1.5 KiB");
    assert_eq!(layout::bytes(1024 * 1024 - 1), "1.0 MiB");
    assert_eq!(layout::bytes(16 * 1024 * 1024 * 1024), "16.0 GiB");
}

#[test]
fn the_login_page_has_its_ids_and_keeps_next() {
    let html = super::account::login_page("/cdrs?x=1").into_string();
    for id in [
        "login-form",
        "login-username",
        "login-password",
        "login-totp",
        "login-submit",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(html.contains("data-next=\"/cdrs?x=1\""));
}

#[test]
fn assets_are_served_with_their_type_and_cache_lifetime() {
    let resp = super::asset(super::SCRIPT, "text/javascript; charset=utf-8");
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["cache-control"], "public, max-age=300");
    // The script never writes data as HTML.
    assert!(!super::SCRIPT.contains("innerHTML"));
    assert!(!super::SCRIPT.contains("insertAdjacentHTML"));
}

#[test]
fn the_ring_groups_page_and_the_handling_form_show_data_as_text() {
    use storage::features::{CallHandling, FeatureCodes, PickupCodes, RingGroup, RingStrategy};

    let group = RingGroup {
        number: "600".into(),
        name: HOSTILE.into(),
        strategy: RingStrategy::Hunt,
        members: vec!["1001".into(), "1002".into()],
        ring_secs: 15,
        no_answer: Some("601".into()),
        created_at: 1,
        updated_at: 2,
    };
    let html = super::features::render(
        &[group],
        &[],
        &FeatureCodes::default(),
        &PickupCodes::default(),
    )
    .into_string();
    assert!(!html.contains(HOSTILE), "raw script in the page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for needle in [
        "id=\"ring-groups-table\"",
        "id=\"ring-group-row-600\"",
        "data-api=\"PUT /api/v1/ring-groups/600\"",
        "data-api=\"DELETE /api/v1/ring-groups/600\"",
        "value=\"1001, 1002\"",
        "<option value=\"hunt\" selected>",
        "id=\"ring-group-create\"",
        "data-api=\"PUT /api/v1/feature-codes\"",
        "value=\"*78\"",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(!html.contains("<script") && !html.contains("style="));

    let mut h = CallHandling::none("1001");
    h.dnd = true;
    h.forward_busy = Some("\"><b>x".into());
    let form = super::features::handling_form(&h, Some("me-handling")).into_string();
    assert!(form.contains("data-api=\"PUT /api/v1/extensions/1001/handling\""));
    assert!(form.contains("id=\"me-handling-dnd\" type=\"checkbox\" name=\"dnd\" checked"));
    assert!(form.contains("value=\"&quot;&gt;&lt;b&gt;x\""), "{form}");
    assert!(form.contains("name=\"no_answer_secs\"") && form.contains("value=\"20\""));
    // In a table row: no ids, so that fifty forms on a page do not repeat one.
    let row = super::features::handling_form(&h, None).into_string();
    assert!(!row.contains(" id="), "{row}");
}

#[test]
fn the_pickup_groups_and_codes_show_on_the_ring_groups_page() {
    use storage::features::{FeatureCodes, PickupCodes, PickupGroup};

    let group = |name: &str, members: &[&str]| PickupGroup {
        name: name.into(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        created_at: 1,
        updated_at: 2,
    };
    let groups = [group("Front desk", &["1001", "1002"]), group("empty", &[])];
    let html = super::features::render(
        &[],
        &groups,
        &FeatureCodes::default(),
        &PickupCodes::default(),
    )
    .into_string();
    for needle in [
        "id=\"pickup-groups-table\"",
        "id=\"pickup-group-row-Front%20desk\"",
        "data-pickup-group=\"Front desk\"",
        "data-api=\"PUT /api/v1/pickup-groups/Front%20desk\"",
        "data-api=\"DELETE /api/v1/pickup-groups/Front%20desk\"",
        "value=\"1001, 1002\"",
        "id=\"pickup-group-row-empty\"",
        "id=\"pickup-group-create\"",
        "data-api=\"PUT /api/v1/pickup-groups/{name}\"",
        "data-api=\"PUT /api/v1/pickup-codes\"",
        "id=\"pc-group\" type=\"text\" name=\"group\" required value=\"*8\"",
        "id=\"pc-directed\" type=\"text\" name=\"directed\" required value=\"**\"",
        "No ring groups.",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(!html.contains("id=\"pickup-codes-clash\""), "no clash");
    assert!(!html.contains("<script") && !html.contains("style="));

    // Codes stored before the rule may clash: the page says which.
    let codes = FeatureCodes {
        dnd_on: "*80".into(),
        ..FeatureCodes::default()
    };
    let html = super::features::render(&[], &[], &codes, &PickupCodes::default()).into_string();
    assert!(html.contains("No pickup groups."));
    assert!(html.contains("id=\"pickup-codes-clash\""), "{html}");
    assert!(html.contains("The group pickup code *8 and the feature code dnd_on (*80) clash"));

    // The user's list of codes names the pickup codes too.
    let list = super::features::codes_list(
        &FeatureCodes::default(),
        &PickupCodes {
            group: "#5".into(),
            directed: "#6".into(),
        },
    )
    .into_string();
    assert!(list.contains("id=\"pickup-group-code\">#5<"), "{list}");
    assert!(
        list.contains("<span class=\"mono\">#6</span> then the extension"),
        "{list}"
    );
}

// ---- Pages read from a one-node cluster -----------------------------------------------------

/// A one-node cluster, initialized and leading, in `dir`.
async fn one_node(dir: &std::path::Path) -> cluster::Cluster {
    use cluster::{ClusterConfig, NodeTlsFiles, generate_ca, issue_node_cert};
    use std::time::{Duration, Instant};
    use storage::model::NodeAddr;

    let ca = generate_ca("test").unwrap();
    let cert = issue_node_cert(&ca, 1, &[]).unwrap();
    let advertise = NodeAddr {
        raft_addr: "127.0.0.1:1".into(),
        api_addr: "127.0.0.1:1".into(),
    };
    let tls = NodeTlsFiles::new(&ca.cert_pem, &cert);
    let cfg = ClusterConfig::new(1, "127.0.0.1:0".parse().unwrap(), advertise, tls);
    let node = cluster::Cluster::start(cfg, dir).await.unwrap();
    node.initialize().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.current_leader() != Some(1) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node
}

async fn seed(node: &cluster::Cluster, cmd: storage::Command) {
    let answer = node.propose(cmd).await.unwrap();
    assert_eq!(answer, storage::Response::Ok);
}

fn audio_file(
    n: u64,
    kind: storage::audio::AudioKind,
    owner: &str,
    name: &str,
) -> storage::audio::AudioFile {
    storage::audio::AudioFile {
        id: format!("{n:032x}"),
        kind,
        owner: owner.into(),
        name: name.into(),
        call_id: (kind == storage::audio::AudioKind::Recording).then(|| format!("call-{n}")),
        size: 48_044 + n,
        sha256: "0".repeat(64),
        created_at: 1_764_324_000_000 + n * 1000,
        retain_until: (kind == storage::audio::AudioKind::Recording).then_some(1_772_100_000_000),
        holders: vec![1, 2, 3],
    }
}

/// The row ids of the audio table, in order.
fn audio_rows(html: &str) -> Vec<&str> {
    html.split("<tr id=\"audio-row-")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audio_page_lists_the_files_the_account_may_see() {
    use storage::audio::AudioKind;

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    let prompt = audio_file(1, AudioKind::Prompt, "", "Welcome");
    let mine = audio_file(2, AudioKind::Recording, "1001", "call of 1001");
    let theirs = audio_file(3, AudioKind::Recording, "1002", HOSTILE);
    let music = audio_file(4, AudioKind::MusicOnHold, "", "Hold tune");
    for f in [&prompt, &mine, &theirs, &music] {
        seed(&node, storage::Command::PutAudioFile(f.clone())).await;
    }
    let reader = node.reader();

    // The admin: every file, newest first, each with its player, download and delete; the upload
    // form and the quotas.
    let who = admin();
    let loaded = super::audio::load(reader, &who, None, None).unwrap();
    let content = super::audio::render(&who, None, true, &loaded);
    let html = layout::page(&who, Nav::Audio, "Audio", content).into_string();
    assert_eq!(
        audio_rows(&html),
        [&music.id, &theirs.id, &mine.id, &prompt.id]
    );
    assert!(!html.contains(HOSTILE), "raw script in the page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let id = &mine.id;
    for needle in [
        format!(
            "<audio class=\"player\" controls preload=\"none\" src=\"/api/v1/audio/{id}/content\">"
        ),
        format!("href=\"/api/v1/audio/{id}/content\" download>Download</a>"),
        format!("data-api=\"DELETE /api/v1/audio/{id}\""),
        "<td class=\"mono\">call-2</td>".to_owned(),
        "<td class=\"num\">46.9 KiB</td>".to_owned(),
        "title=\"nodes 1, 2, 3\">3</td>".to_owned(),
        "datetime=\"2026-02-26T10:00:00Z\"".to_owned(),
        "datetime=\"2025-11-28T10:00:02Z\"".to_owned(),
        "until deleted".to_owned(),
        "id=\"audio-upload\" data-upload=\"/api/v1/audio\"".to_owned(),
        "<option value=\"music_on_hold\">music on hold</option>".to_owned(),
        "accept=\".wav,audio/wav,audio/x-wav\"".to_owned(),
        "data-api=\"PUT /api/v1/audio-quotas\"".to_owned(),
        "name=\"total_bytes\" data-type=\"mib\" min=\"1\" step=\"any\" required value=\"16384\""
            .to_owned(),
        "name=\"per_owner_bytes\" data-type=\"mib\" min=\"1\" step=\"any\" required value=\"256\""
            .to_owned(),
        "class=\"nav-link active\" id=\"nav-audio\" href=\"/audio\"".to_owned(),
        "id=\"audio-count\">4<".to_owned(),
    ] {
        assert!(html.contains(&needle), "/audio lacks {needle}");
    }
    assert!(
        !html.contains("id=\"audio-more\""),
        "everything is on the page"
    );
    assert!(!html.contains("style=") && !html.contains(" onclick"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the portal's script"
    );

    // Filtered by kind.
    let loaded = super::audio::load(reader, &who, Some(AudioKind::Prompt), None).unwrap();
    let html = super::audio::render(&who, Some(AudioKind::Prompt), true, &loaded).into_string();
    assert_eq!(audio_rows(&html), [&prompt.id]);
    assert!(html.contains("<option value=\"prompt\" selected>prompt</option>"));

    // A user whose role sees its own extension's recordings: 1001's, not 1002's, no cluster
    // files, no upload and no quotas.
    let user = principal("user", Grants::USER);
    let loaded = super::audio::load(reader, &user, None, None).unwrap();
    assert!(loaded.storage.is_none());
    let html = super::audio::render(&user, None, true, &loaded).into_string();
    assert_eq!(audio_rows(&html), [&mine.id]);
    assert!(!html.contains(&theirs.id) && !html.contains(&prompt.id));
    assert!(!html.contains("id=\"audio-upload\"") && !html.contains("audio-quotas"));
    assert!(html.contains("id=\"audio-count\">1<"));
    // The same role without an extension sees nothing.
    let mut nobody = principal("user", Grants::USER);
    nobody.extension = None;
    let loaded = super::audio::load(reader, &nobody, None, None).unwrap();
    assert!(loaded.listing.files.is_empty());

    node.shutdown().await.unwrap();
}

#[test]
fn the_audio_page_shows_the_newest_page_and_counts_the_rest() {
    use super::audio::{Newest, Position};
    use storage::audio::AudioKind;

    // 450 recordings offered in no particular order, one of another extension's.
    let who = principal("user", Grants::USER);
    let mut files: Vec<_> = (0..450)
        .map(|n| audio_file(n, AudioKind::Recording, "1001", &format!("r{n}")))
        .collect();
    files.push(audio_file(1000, AudioKind::Recording, "1002", "not mine"));
    files.reverse();
    files.swap(3, 300);
    let page = |after: Option<Position>| {
        let mut newest = Newest::new(&who, None, after, 200);
        for f in &files {
            newest.offer(f);
        }
        newest.finish()
    };
    let first = page(None);
    assert_eq!(first.total, 450);
    assert_eq!(first.files.len(), 200);
    assert_eq!(first.files[0].name, "r449");
    assert_eq!(first.files[199].name, "r250");
    assert_eq!(first.more, 250);
    let cursor = first.next.clone().unwrap();
    let second = page(Position::parse(&cursor));
    assert_eq!(second.files[0].name, "r249");
    assert_eq!(second.more, 50);
    let third = page(Position::parse(&second.next.unwrap()));
    assert_eq!(third.files.len(), 50);
    assert_eq!(third.files[49].name, "r0");
    assert_eq!((third.more, third.next), (0, None));

    // The page says how many more there are and links to them.
    let loaded = super::audio::Loaded {
        listing: first,
        storage: None,
    };
    let html = super::audio::render(&who, Some(AudioKind::Recording), true, &loaded).into_string();
    assert!(html.contains("id=\"audio-more\">250 older files are not on this page."));
    assert!(
        html.contains(&format!(
            "href=\"/audio?kind=recording&amp;after={}\"",
            enc(&cursor)
        )),
        "{html}"
    );
    for bad in ["", "x", "12-nothex", "-0000", "1-00"] {
        assert!(Position::parse(bad).is_none(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extensions_page_shows_and_sets_the_recording_policy() {
    use storage::recording::{RecordingMode, RecordingPolicy};

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    for n in ["1001", "1002", "1003"] {
        seed(
            &node,
            storage::Command::CreateExtension(extension(n, &format!("User {n}"))),
        )
        .await;
    }
    let policy = |n: &str, mode| RecordingPolicy {
        extension: n.into(),
        mode,
        updated_at: 1,
    };
    seed(
        &node,
        storage::Command::PutRecordingPolicy(policy("1002", RecordingMode::Always)),
    )
    .await;
    seed(
        &node,
        storage::Command::PutRecordingPolicy(policy("1003", RecordingMode::Never)),
    )
    .await;
    let reader = node.reader();
    let loaded = extensions::load(reader, "", None).unwrap();
    assert_eq!(loaded.found.items.len(), 3);
    let render = |who: &Principal| {
        extensions::render(
            who,
            "",
            true,
            &loaded.found,
            loaded.total,
            &loaded.groups,
            &loaded.settings,
        )
        .into_string()
    };
    let html = render(&admin());
    let row = |html: &str, n: &str| -> String {
        let start = html.find(&format!("<tr id=\"ext-row-{n}\"")).unwrap();
        let end = html[start..].find("</tr>").unwrap();
        html[start..start + end].to_owned()
    };
    for (n, mode) in [("1001", "never"), ("1002", "always"), ("1003", "never")] {
        let r = row(&html, n);
        assert!(
            r.contains(&format!(
                "data-api=\"PUT /api/v1/extensions/{n}/recording\" data-then=\"notice\""
            )),
            "{r}"
        );
        assert!(r.contains("name=\"mode\" data-autosubmit"), "{r}");
        assert!(
            r.contains(&format!("<option value=\"{mode}\" selected>")),
            "{n}: {r}"
        );
        assert_eq!(r.matches(" selected>").count(), 1, "{r}");
    }
    assert!(html.contains("<th>Recording</th>"));

    // Who only watches sees the policy, with nothing to change it.
    let html = render(&principal("operator", Grants::OPERATOR));
    assert!(row(&html, "1002").contains(">always recorded</span>"));
    assert!(row(&html, "1001").contains(">not recorded</span>"));
    assert!(!html.contains("/recording\""));

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_page_shows_the_time_conditions() {
    use storage::Command;
    use storage::features::{RingGroup, RingStrategy};
    use storage::routing::{Destination, PutMode};
    use storage::time_condition::{Holiday, OpenHours, TimeCondition};

    /// 2026-11-30 12:00:00 UTC, a Monday.
    const NOON_UTC: u64 = 1_796_040_000_000;

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    seed(
        &node,
        Command::CreateExtension(extension("1001", "Reception")),
    )
    .await;
    let group = RingGroup {
        number: "600".into(),
        name: "Sales".into(),
        strategy: RingStrategy::All,
        members: vec!["1001".into()],
        ring_secs: 20,
        no_answer: None,
        created_at: 1,
        updated_at: 1,
    };
    seed(
        &node,
        Command::PutRingGroup {
            group,
            mode: PutMode::Create,
        },
    )
    .await;
    let holiday = |name: &str, from: &str, to: &str| Holiday {
        name: name.into(),
        from: from.into(),
        to: to.into(),
    };
    let office = TimeCondition {
        name: "office".into(),
        hours: vec![
            OpenHours {
                days: 0b1_1111,
                from: 9 * 60,
                to: 17 * 60 + 30,
            },
            OpenHours {
                days: 0b010_0000,
                from: 10 * 60,
                to: 24 * 60,
            },
        ],
        holidays: vec![
            holiday("Christmas", "2026-12-24", "2026-12-26"),
            holiday(HOSTILE, "2027-01-01", "2027-01-01"),
        ],
        open: Destination::Extension("1001".into()),
        closed: Destination::RingGroup("600".into()),
        created_at: 1,
        updated_at: 1,
    };
    let night = TimeCondition {
        name: "night".into(),
        hours: vec![],
        holidays: vec![],
        open: Destination::RingGroup("600".into()),
        closed: Destination::Extension("1001".into()),
        ..office.clone()
    };
    seed(&node, Command::PutTimeCondition(office)).await;
    seed(&node, Command::PutTimeCondition(night)).await;

    // The page reads the API's answer, as it does through the handler.
    let list = crate::api::time_condition_views(node.reader(), NOON_UTC).unwrap();
    let conds: super::routing::TimeConditions = super::api::answer(axum::Json(list)).await.unwrap();
    let outbound: super::routing::Outbound =
        serde_json::from_value(serde_json::json!({"routes": []})).unwrap();
    let inbound: super::routing::Inbound = serde_json::from_value(serde_json::json!({"routes": [{
        "name": "main", "did_kind": "exact", "did": "+15550100",
        "destination": {"type": "time_condition", "target": "office"}
    }]}))
    .unwrap();
    let menus = super::routing::IvrMenus {
        list: serde_json::from_value(serde_json::json!({"ivrs": []})).unwrap(),
        prompts: vec![],
        editing: None,
    };
    let html = super::routing::render(&outbound, &inbound, &conds, "UTC", &menus, &no_rooms())
        .into_string();
    let row = |name: &str| -> String {
        let start = html
            .find(&format!("<tr id=\"time-condition-row-{name}\""))
            .unwrap_or_else(|| panic!("no row {name}: {html}"));
        let end = html[start..].find("</tr>").unwrap();
        html[start..start + end].to_owned()
    };
    let office_row = row("office");
    for needle in [
        "<td>Mon–Fri 09:00–17:30; Sat 10:00–24:00</td>",
        ">2</td>",
        "extension <span class=\"mono\">1001</span>",
        "ring group <span class=\"mono\">600</span>",
        "open now",
        "data-api=\"DELETE /api/v1/time-conditions/office\"",
    ] {
        assert!(office_row.contains(needle), "{needle}: {office_row}");
    }
    // A holiday's name is text, in the count's title.
    assert!(
        office_row.contains("2026-12-24..2026-12-26 Christmas"),
        "{office_row}"
    );
    assert!(!html.contains(HOSTILE), "raw script in the page");
    assert!(html.contains("2027-01-01 &lt;script&gt;"), "{office_row}");
    let night_row = row("night");
    assert!(
        night_row.contains("never open") && night_row.contains("closed now"),
        "{night_row}"
    );
    for needle in [
        "id=\"time-conditions-zone\">UTC<",
        "id=\"time-condition-form\" data-api=\"PUT /api/v1/time-conditions/{name}\"",
        "name=\"hours.0.days\" value=\"mon\" data-type=\"list\" checked",
        "name=\"hours.0.days\" value=\"sun\" data-type=\"list\">",
        "name=\"hours.0.from\"",
        "name=\"hours.0.to\"",
        "data-for=\"hours.0.days\"",
        "name=\"holidays\" data-type=\"holidays\"",
        "name=\"open.type\"",
        "name=\"closed.target\"",
        "through the API",
        // The inbound route form offers conditions, and the table names one.
        "<option value=\"time_condition\">time condition</option>",
        "time condition <span class=\"mono\">office</span>",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(!html.contains("<script") && !html.contains("style="));

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_page_shows_the_ivrs_and_fills_the_form_in_to_change_one() {
    use storage::Command;
    use storage::audio::AudioKind;
    use storage::features::{RingGroup, RingStrategy};
    use storage::ivr::{Ivr, IvrOption};
    use storage::routing::{Destination, PutMode};
    use storage::time_condition::TimeCondition;

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    seed(
        &node,
        Command::CreateExtension(extension("1001", "Reception")),
    )
    .await;
    let group = RingGroup {
        number: "600".into(),
        name: "Sales".into(),
        strategy: RingStrategy::All,
        members: vec!["1001".into()],
        ring_secs: 20,
        no_answer: None,
        created_at: 1,
        updated_at: 1,
    };
    seed(
        &node,
        Command::PutRingGroup {
            group,
            mode: PutMode::Create,
        },
    )
    .await;
    let office = TimeCondition {
        name: "office".into(),
        hours: vec![],
        holidays: vec![],
        open: Destination::Extension("1001".into()),
        closed: Destination::RingGroup("600".into()),
        created_at: 1,
        updated_at: 1,
    };
    seed(&node, Command::PutTimeCondition(office)).await;
    let welcome = audio_file(1, AudioKind::Prompt, "", "Welcome");
    let hostile_prompt = audio_file(2, AudioKind::Prompt, "", HOSTILE);
    let recording = audio_file(3, AudioKind::Recording, "1001", "call of 1001");
    for f in [&welcome, &hostile_prompt, &recording] {
        seed(&node, Command::PutAudioFile(f.clone())).await;
    }
    let option = |digit: char, destination: Destination| IvrOption { digit, destination };
    let main = Ivr {
        number: "500".into(),
        name: "Main menu".into(),
        greeting: Some(welcome.id.clone()),
        options: vec![
            option('1', Destination::Extension("1001".into())),
            option('2', Destination::RingGroup("600".into())),
            option('*', Destination::Ivr("500".into())),
        ],
        direct_dial: true,
        timeout_secs: 5,
        attempts: 3,
        fallback: Some(Destination::TimeCondition("office".into())),
        created_at: 1,
        updated_at: 1,
    };
    let night = Ivr {
        number: "501".into(),
        name: HOSTILE.into(),
        greeting: None,
        options: vec![],
        direct_dial: false,
        timeout_secs: 10,
        attempts: 1,
        fallback: None,
        ..main.clone()
    };
    for ivr in [main, night] {
        seed(
            &node,
            Command::PutIvr {
                ivr,
                mode: PutMode::Create,
            },
        )
        .await;
    }

    // The page reads the API's answer, as it does through the handler.
    let reader = node.reader();
    let menus = |editing: Option<String>| async move {
        let list = crate::api::ivr_views(reader).unwrap();
        super::routing::IvrMenus {
            list: super::api::answer(axum::Json(list)).await.unwrap(),
            prompts: super::routing::prompts(reader, &admin()).unwrap(),
            editing,
        }
    };
    let outbound: super::routing::Outbound =
        serde_json::from_value(serde_json::json!({"routes": []})).unwrap();
    let inbound: super::routing::Inbound = serde_json::from_value(serde_json::json!({"routes": [{
        "name": "main", "did_kind": "exact", "did": "+15550100",
        "destination": {"type": "ivr", "target": "500"}
    }]}))
    .unwrap();
    let conds: super::routing::TimeConditions =
        serde_json::from_value(serde_json::json!({"time_conditions": []})).unwrap();
    let page = |menus: super::routing::IvrMenus| {
        super::routing::render(&outbound, &inbound, &conds, "UTC", &menus, &no_rooms())
            .into_string()
    };
    let html = page(menus(Some("500".into())).await);
    let part = |start: &str, end: &str| -> String {
        let at = html
            .find(start)
            .unwrap_or_else(|| panic!("no {start}: {html}"));
        let len = html[at..].find(end).unwrap();
        html[at..at + len].to_owned()
    };
    let main_row = part("<tr id=\"ivr-row-500\"", "</tr>");
    for needle in [
        "<strong>500</strong>",
        "<td>Main menu</td>",
        "<td>Welcome</td>",
        "<span class=\"mono\">1</span> → extension <span class=\"mono\">1001</span>",
        "<span class=\"mono\">2</span> → ring group <span class=\"mono\">600</span>",
        "<span class=\"mono\">*</span> → IVR <span class=\"mono\">500</span>",
        "<td>yes</td>",
        "3 × 5 s",
        "time condition <span class=\"mono\">office</span>",
        "href=\"/routes?ivr=500#ivr-form\"",
        "data-api=\"DELETE /api/v1/ivrs/500\"",
    ] {
        assert!(main_row.contains(needle), "{needle}: {main_row}");
    }
    let night_row = part("<tr id=\"ivr-row-501\"", "</tr>");
    for needle in ["no keys", "hang up", "none", "<td>no</td>", "1 × 10 s"] {
        assert!(night_row.contains(needle), "{needle}: {night_row}");
    }
    assert!(!html.contains(HOSTILE), "raw script in the page");
    assert!(night_row.contains("&lt;script&gt;"), "{night_row}");

    // The form is IVR 500's: its number fixed, its prompt chosen, its keys in their rows.
    let form = part("<form class=\"form\" id=\"ivr-form\"", "</form>");
    for needle in [
        "data-api=\"PUT /api/v1/ivrs/{number}\"",
        "name=\"number\"",
        "value=\"500\" readonly",
        "name=\"greeting\" data-empty=\"null\"",
        &format!("<option value=\"{}\" selected>Welcome</option>", welcome.id),
        "&lt;script&gt;alert(1)&lt;/script&gt;</option>",
        "name=\"timeout_secs\" min=\"1\" max=\"60\" data-type=\"number\" value=\"5\"",
        "name=\"attempts\" min=\"1\" max=\"5\" data-type=\"number\" value=\"3\"",
        "name=\"direct_dial\" checked",
        // Key 1 is the first row; key 2's row has its ring group chosen; key * leads back.
        "<tr id=\"ivr-key-0\" data-optional>",
        "name=\"options.0.digit\" value=\"1\"",
        "name=\"options.0.destination.target\" data-row-key aria-label=\"Key 1: number or name\" value=\"1001\"",
        "<option value=\"ring_group\" selected>ring group</option>",
        "name=\"options.9.digit\" value=\"*\"",
        "name=\"options.9.destination.target\" data-row-key aria-label=\"Key *: number or name\" value=\"500\"",
        "name=\"options.11.digit\" value=\"#\"",
        "data-for=\"options\"",
        "<option value=\"time_condition\" selected>time condition</option>",
        "name=\"fallback.target\" data-row-key value=\"office\"",
    ] {
        assert!(form.contains(needle), "{needle}: {form}");
    }
    assert!(
        !form.contains(&recording.id),
        "a recording is no greeting to offer"
    );
    assert!(
        form.contains("name=\"options.1.destination.target\" data-row-key aria-label=\"Key 2: number or name\" value=\"600\""),
        "{form}"
    );
    assert!(
        form.contains("name=\"options.3.destination.target\" data-row-key aria-label=\"Key 4: number or name\">"),
        "an unused key has no target: {form}"
    );
    // Inbound routes may send calls to an IVR, and time conditions too, but not to a condition.
    assert!(html.contains("<option value=\"ivr\">IVR</option>"));
    assert!(html.contains("IVR <span class=\"mono\">500</span>"));
    let open_select = part("id=\"time-condition-open-type\"", "</select>");
    assert!(open_select.contains("value=\"ivr\""), "{open_select}");
    assert!(
        !open_select.contains("value=\"time_condition\""),
        "{open_select}"
    );
    assert!(!html.contains("<script") && !html.contains("style="));

    // Without `?ivr=`: a blank form for a new IVR.
    let html = page(menus(None).await);
    assert!(html.contains("New IVR"), "{html}");
    assert!(html.contains(
        "name=\"number\" inputmode=\"numeric\" required maxlength=\"32\" placeholder=\"500\">"
    ));
    // An account that may not see the cluster's prompts is offered none.
    let user = principal("user", Grants::USER);
    assert!(super::routing::prompts(reader, &user).unwrap().is_empty());

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extensions_page_shows_and_sets_each_mailbox() {
    use storage::audio::AudioKind;
    use storage::voicemail::Mailbox;

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    for n in ["1001", "1002", "1003"] {
        seed(
            &node,
            storage::Command::CreateExtension(extension(n, &format!("User {n}"))),
        )
        .await;
    }
    let greeting = audio_file(7, AudioKind::Greeting, "1001", "Hello");
    seed(&node, storage::Command::PutAudioFile(greeting.clone())).await;
    let mut with_pin = Mailbox::new("1001", 1);
    with_pin.pin_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    with_pin.email = Some(HOSTILE.into());
    with_pin.ring_secs = 30;
    with_pin.greeting_busy = Some(greeting.id.clone());
    seed(&node, storage::Command::PutMailbox(with_pin)).await;
    let mut off = Mailbox::new("1003", 1);
    off.enabled = false;
    off.max_messages = 7;
    seed(&node, storage::Command::PutMailbox(off)).await;

    let loaded = extensions::load(node.reader(), "", None).unwrap();
    assert_eq!(loaded.settings.mailboxes.len(), 2);
    let html = extensions::render(
        &admin(),
        "",
        true,
        &loaded.found,
        loaded.total,
        &loaded.groups,
        &loaded.settings,
    )
    .into_string();
    let row = |n: &str| -> String {
        let start = html.find(&format!("<tr id=\"ext-row-{n}\"")).unwrap();
        let end = html[start..].find("</tr>").unwrap();
        html[start..start + end].to_owned()
    };

    // 1001: its settings in the form, the greeting carried along, the PIN set and removable.
    let r = row("1001");
    for needle in [
        "<span class=\"badge badge-info\">voicemail</span>",
        "class=\"form-stacked ext-voicemail\" data-api=\"PUT /api/v1/extensions/1001/voicemail\"",
        "name=\"enabled\" checked",
        "name=\"ring_secs\" data-type=\"number\" min=\"5\" max=\"120\" value=\"30\"",
        "name=\"max_message_secs\" data-type=\"number\" min=\"10\" max=\"600\" value=\"180\"",
        "name=\"max_messages\" data-type=\"number\" min=\"1\" max=\"1000\" value=\"100\"",
        "value=\"&lt;script&gt;alert(1)&lt;/script&gt;\"",
        "type=\"password\" name=\"pin\"",
        &format!(
            "<input type=\"hidden\" name=\"greeting_busy\" value=\"{}\">",
            greeting.id
        ),
        "Save voicemail",
        "Remove PIN",
        "data-api=\"DELETE /api/v1/extensions/1001/voicemail\"",
    ] {
        assert!(r.contains(needle), "1001 lacks {needle}: {r}");
    }
    assert!(!r.contains("argon2") && !r.contains(HOSTILE));
    assert!(!r.contains("name=\"greeting_unavailable\""));
    // The PIN is removed by a PUT of the same settings with `pin: null`.
    assert!(r.contains("&quot;pin&quot;:null"), "{r}");

    // 1002 has none: the defaults, and saving creates one.
    let r = row("1002");
    assert!(r.contains("No mailbox yet: saving creates one."), "{r}");
    assert!(r.contains("Create mailbox") && !r.contains("Delete mailbox"));
    assert!(!r.contains(">voicemail</span>"));
    assert!(
        r.contains("name=\"ring_secs\" data-type=\"number\" min=\"5\" max=\"120\" value=\"20\"")
    );

    // 1003 is off: no badge, an unchecked box, its own limits, no PIN to remove.
    let r = row("1003");
    assert!(!r.contains(">voicemail</span>"));
    assert!(
        r.contains("<input type=\"checkbox\" name=\"enabled\">"),
        "{r}"
    );
    assert!(r.contains("value=\"7\""));
    assert!(!r.contains("Remove PIN") && r.contains(">not set</span>"));
    assert!(!html.contains("style=") && !html.contains(" onclick"));

    // Who only watches gets no forms.
    let html = extensions::render(
        &principal("operator", Grants::OPERATOR),
        "",
        true,
        &loaded.found,
        loaded.total,
        &loaded.groups,
        &loaded.settings,
    )
    .into_string();
    assert!(!html.contains("/voicemail\""));

    node.shutdown().await.unwrap();
}

#[test]
fn the_users_voicemail_card_lists_messages_and_carries_the_settings() {
    use crate::api::{MailboxView, MessageList};
    use serde_json::json;

    let view: MailboxView = serde_json::from_value(json!({
        "extension": "1001", "enabled": true, "has_pin": false, "email": "me@example.com",
        "ring_secs": 25, "greeting_unavailable": "a".repeat(32), "greeting_busy": null,
        "max_message_secs": 120, "max_messages": 50, "messages_total": 2, "messages_new": 1,
        "created_at": 1, "updated_at": 2
    }))
    .unwrap();
    let new_id = "b".repeat(32);
    let heard_id = "c".repeat(32);
    let list: MessageList = serde_json::from_value(json!({
        "messages": [
            {"audio_id": new_id, "caller": "1002", "caller_name": HOSTILE, "because": "busy",
             "call_id": "c1", "received_at": 1_764_324_000_000u64, "duration_ms": 61_200,
             "heard": false},
            {"audio_id": heard_id, "caller": "+15550100", "caller_name": "", "because": "no_answer",
             "call_id": "c2", "received_at": 1_764_320_000_000u64, "duration_ms": 4000,
             "heard": true}
        ],
        "total": 2, "new": 1
    }))
    .unwrap();
    let html = super::voicemail::mine_card("1001", &Ok(Some((view, list)))).into_string();
    let msgs = "/api/v1/extensions/1001/voicemail/messages";
    for needle in [
        "id=\"voicemail-count\">2<".to_owned(),
        "id=\"voicemail-new\">1 new<".to_owned(),
        format!("<tr id=\"voicemail-row-{new_id}\""),
        format!(
            "<audio class=\"player\" controls preload=\"none\" src=\"/api/v1/audio/{new_id}/content\">"
        ),
        format!("data-api=\"PUT {msgs}/{new_id}\" data-body=\"{{&quot;heard&quot;:true}}\""),
        format!("data-api=\"PUT {msgs}/{heard_id}\" data-body=\"{{&quot;heard&quot;:false}}\""),
        format!("data-api=\"DELETE {msgs}/{heard_id}\""),
        "<td class=\"num\">1:02</td>".to_owned(),
        "<td class=\"num\">0:04</td>".to_owned(),
        "<td>busy</td>".to_owned(),
        "<td>not answered</td>".to_owned(),
        "datetime=\"2025-11-28T10:00:00Z\"".to_owned(),
        // The settings form edits three fields and carries the rest.
        "id=\"voicemail-settings\" data-api=\"PUT /api/v1/extensions/1001/voicemail\"".to_owned(),
        "id=\"voicemail-enabled\" type=\"checkbox\" name=\"enabled\" checked".to_owned(),
        "name=\"email\" maxlength=\"254\" autocomplete=\"email\" data-empty=\"null\" value=\"me@example.com\""
            .to_owned(),
        "name=\"ring_secs\" data-type=\"number\" min=\"5\" max=\"120\" value=\"25\"".to_owned(),
        "<input type=\"hidden\" name=\"max_message_secs\" data-type=\"number\" value=\"120\">"
            .to_owned(),
        format!("<input type=\"hidden\" name=\"greeting_unavailable\" value=\"{}\">", "a".repeat(32)),
        // The PIN form: typed twice, the repeat not sent.
        "id=\"voicemail-pin-new\" type=\"password\" name=\"pin\"".to_owned(),
        "data-skip data-match=\"pin\"".to_owned(),
        "<input type=\"hidden\" name=\"enabled\" data-type=\"bool\" value=\"true\">".to_owned(),
        ">not set</span>".to_owned(),
        // Greetings: the one set plays and can go back to a beep; the upload points the mailbox.
        format!("src=\"/api/v1/audio/{}/content\"", "a".repeat(32)),
        "&quot;greeting_unavailable&quot;:null".to_owned(),
        "data-upload=\"/api/v1/audio?owner=1001\" data-then=\"greeting\"".to_owned(),
        "data-mailbox-api=\"PUT /api/v1/extensions/1001/voicemail\"".to_owned(),
        "<input type=\"hidden\" name=\"kind\" value=\"greeting\">".to_owned(),
        "<option value=\"greeting_busy\">".to_owned(),
    ] {
        assert!(html.contains(&needle), "the card lacks {needle}: {html}");
    }
    assert!(!html.contains(HOSTILE), "raw script in the page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("style=") && !html.contains(" onclick"));

    // Without a mailbox, or when it cannot be read.
    let none = super::voicemail::mine_card("1001", &Ok(None)).into_string();
    assert!(none.contains("id=\"voicemail-none\""), "{none}");
    assert!(!none.contains("<form"));
    let failed = super::voicemail::mine_card(
        "1001",
        &Err(super::Problem::internal("the cluster is away")),
    )
    .into_string();
    assert!(failed.contains("the cluster is away"));
}

/// A routes page without conference rooms.
fn no_rooms() -> super::routing::Rooms {
    super::routing::Rooms {
        list: serde_json::from_value(serde_json::json!({"rooms": []})).unwrap(),
        editing: None,
        now: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_page_shows_the_conference_rooms_and_fills_the_form_in_to_change_one() {
    use storage::Command;
    use storage::conference::{ConferenceRoom, Participant};
    use storage::routing::PutMode;

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    let room = |number: &str, name: &str, pin: bool| ConferenceRoom {
        number: number.into(),
        name: name.into(),
        pin_hash: pin.then(|| "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        max_participants: 20,
        created_at: 1,
        updated_at: 1,
    };
    for r in [room("800", "Weekly", true), room("801", HOSTILE, false)] {
        seed(
            &node,
            Command::PutConferenceRoom {
                room: r,
                mode: PutMode::Create,
            },
        )
        .await;
    }
    for (n, joined_at) in [(1u8, 10_000), (2, 40_000)] {
        seed(
            &node,
            Command::PutParticipant(Participant {
                room: "800".into(),
                id: format!("{n:016x}"),
                caller: "1001".into(),
                caller_name: "Reception".into(),
                joined_at,
                muted: false,
                kicked: false,
                node_id: 1,
            }),
        )
        .await;
    }

    // The page reads the API's answer, as it does through the handler.
    let reader = node.reader();
    let rooms = |editing: Option<String>| async move {
        let list = crate::api::conference_views(reader).unwrap();
        super::routing::Rooms {
            list: super::api::answer(axum::Json(list)).await.unwrap(),
            editing,
            now: 135_000,
        }
    };
    let outbound: super::routing::Outbound =
        serde_json::from_value(serde_json::json!({"routes": []})).unwrap();
    let inbound: super::routing::Inbound = serde_json::from_value(serde_json::json!({"routes": [{
        "name": "main", "did_kind": "exact", "did": "+15550100",
        "destination": {"type": "conference", "target": "800"}
    }]}))
    .unwrap();
    let conds: super::routing::TimeConditions =
        serde_json::from_value(serde_json::json!({"time_conditions": []})).unwrap();
    let menus = || super::routing::IvrMenus {
        list: serde_json::from_value(serde_json::json!({"ivrs": []})).unwrap(),
        prompts: vec![],
        editing: None,
    };
    let html = super::routing::render(
        &outbound,
        &inbound,
        &conds,
        "UTC",
        &menus(),
        &rooms(Some("800".into())).await,
    )
    .into_string();
    let part = |start: &str, end: &str| -> String {
        let at = html
            .find(start)
            .unwrap_or_else(|| panic!("no {start}: {html}"));
        let len = html[at..].find(end).unwrap();
        html[at..at + len].to_owned()
    };
    let weekly = part("<tr id=\"room-row-800\"", "</tr>");
    for needle in [
        "<strong>800</strong>",
        "<td>Weekly</td>",
        "<td>yes</td>",
        "2 / 20",
        "data-secs=\"125\"",
        "href=\"/routes?room=800#room-form\"",
        "data-api=\"DELETE /api/v1/conferences/800\"",
    ] {
        assert!(weekly.contains(needle), "{needle}: {weekly}");
    }
    let other = part("<tr id=\"room-row-801\"", "</tr>");
    for needle in ["none", "0 / 20", "empty", "&lt;script&gt;"] {
        assert!(other.contains(needle), "{needle}: {other}");
    }
    assert!(!html.contains(HOSTILE), "raw script in the page");
    assert!(!html.contains("argon2"), "the PIN's hash in the page");
    let form = part("<form class=\"form\" id=\"room-form\"", "</form>");
    for needle in [
        "data-api=\"PUT /api/v1/conferences/{number}\"",
        "value=\"800\" readonly",
        "name=\"name\"",
        "value=\"Weekly\"",
        "name=\"pin\"",
        "name=\"max_participants\" min=\"2\" max=\"50\" data-type=\"number\" value=\"20\"",
        "Remove PIN",
    ] {
        assert!(form.contains(needle), "{needle}: {form}");
    }
    // Inbound routes, IVR keys and time conditions may send calls to a room.
    assert!(html.contains("<option value=\"conference\">conference room</option>"));
    assert!(html.contains("conference room <span class=\"mono\">800</span>"));
    let open_select = part("id=\"time-condition-open-type\"", "</select>");
    assert!(
        open_select.contains("value=\"conference\""),
        "{open_select}"
    );
    assert!(!html.contains("<script") && !html.contains("style="));

    // Without `?room=`: a blank form for a new room, with the default limit.
    let html = super::routing::render(
        &outbound,
        &inbound,
        &conds,
        "UTC",
        &menus(),
        &rooms(None).await,
    )
    .into_string();
    assert!(html.contains("New conference room"), "{html}");
    assert!(html.contains("data-type=\"number\" value=\"10\""), "{html}");
    assert!(!html.contains("Remove PIN"));

    node.shutdown().await.unwrap();
}

#[test]
fn the_monitor_lists_running_conferences_with_mute_and_remove_for_moderators() {
    use super::monitor::{Participant, RunningRoom};
    let rooms = [RunningRoom {
        number: "800".into(),
        name: HOSTILE.into(),
        participants: vec![
            Participant {
                id: "0000000000000001".into(),
                caller: "1001".into(),
                caller_name: "Reception".into(),
                duration_secs: 125,
                muted: false,
            },
            Participant {
                id: "0000000000000002".into(),
                caller: "1002".into(),
                caller_name: "Sales".into(),
                duration_secs: 30,
                muted: true,
            },
        ],
    }];
    let html = super::monitor::conferences(&admin(), &rooms).into_string();
    for needle in [
        "id=\"conferences\"",
        "<span class=\"mono\">800</span>",
        "2 in it, for 2:05",
        "data-participant=\"0000000000000001\"",
        "data-api=\"PUT /api/v1/conferences/800/participants/0000000000000001\"",
        "data-body=\"{&quot;muted&quot;:true}\"",
        ">Mute<",
        "data-body=\"{&quot;muted&quot;:false}\"",
        ">Unmute<",
        "data-api=\"DELETE /api/v1/conferences/800/participants/0000000000000002\"",
    ] {
        assert!(html.contains(needle), "{needle}: {html}");
    }
    assert!(!html.contains(HOSTILE), "raw script in the page");
    let viewer = Grants {
        routing: false,
        hang_up: false,
        ..Grants::ADMIN
    };
    let html = super::monitor::conferences(&principal("viewer", viewer), &rooms).into_string();
    assert!(
        html.contains("Reception") && !html.contains("data-api"),
        "{html}"
    );
    let html = super::monitor::conferences(&admin(), &[]).into_string();
    assert!(html.contains("No conference is running."), "{html}");
}

/// A peer trunk to `carrier.example`, for the routing pages.
fn storage_trunk(name: &str) -> storage::routing::Trunk {
    storage::routing::Trunk {
        name: name.into(),
        kind: storage::routing::TrunkKind::Peer,
        enabled: true,
        host: "carrier.example".into(),
        port: None,
        transport: None,
        outbound_proxy: None,
        username: String::new(),
        password: String::new(),
        realm: String::new(),
        from_user: String::new(),
        from_domain: String::new(),
        caller_id: String::new(),
        send_pai: false,
        dids: vec![],
        max_calls: 0,
        calls_per_minute: 0,
        qualify_secs: 0,
        register_expires: 600,
        allow_anonymous: false,
        peer_networks: vec![],
        peer_hosts: vec![],
        created_at: 1,
        updated_at: 1,
    }
}

/// The `<tr …>` of `html` that starts with `start`.
fn row_of(html: &str, start: &str) -> String {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start}: {html}"));
    let end = html[at..].find("</tr>").unwrap();
    html[at..at + end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trunks_and_routes_pages_show_and_set_each_ones_recording() {
    use storage::Command;
    use storage::recording::RecordingMode;
    use storage::recording_routes::{RecordingTarget, RouteRecordingPolicy};
    use storage::routing::{
        Destination, DidKind, InboundRoute, OutboundRoute, PutMode, RouteClass, RoutingKind,
        RoutingRecord,
    };

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    seed(
        &node,
        Command::CreateExtension(extension("1001", "Reception")),
    )
    .await;
    let outbound = |name: &str| OutboundRoute {
        name: name.into(),
        position: 0,
        patterns: vec!["9.".into()],
        strip: 1,
        prepend: String::new(),
        class: RouteClass::Local,
        trunks: vec!["carrier".into()],
        caller_id: None,
        created_at: 1,
        updated_at: 1,
    };
    let inbound = |name: &str| InboundRoute {
        name: name.into(),
        did_kind: DidKind::Exact,
        did: format!("+1555010{}", name.len()),
        caller_id: None,
        trunk: Some("carrier".into()),
        destination: Destination::Extension("1001".into()),
        created_at: 1,
        updated_at: 1,
    };
    let mut records = vec![
        RoutingRecord::Trunk(Box::new(storage_trunk("carrier"))),
        RoutingRecord::Trunk(Box::new(storage_trunk("backup"))),
    ];
    records.extend(["local", "intl"].map(|n| RoutingRecord::OutboundRoute(outbound(n))));
    records.extend(["main", "sales"].map(|n| RoutingRecord::InboundRoute(inbound(n))));
    for record in records {
        let mode = PutMode::Create;
        seed(&node, Command::PutRouting { record, mode }).await;
    }
    for target in [
        RecordingTarget::Trunk("carrier".into()),
        RecordingTarget::OutboundRoute("intl".into()),
        RecordingTarget::InboundRoute("sales".into()),
    ] {
        let policy = RouteRecordingPolicy {
            target,
            mode: RecordingMode::Always,
            updated_at: 1,
        };
        seed(&node, Command::PutRouteRecordingPolicy(policy)).await;
    }
    // Set back to never: shown as never, like no policy at all.
    let policy = RouteRecordingPolicy {
        target: RecordingTarget::InboundRoute("main".into()),
        mode: RecordingMode::Never,
        updated_at: 2,
    };
    seed(&node, Command::PutRouteRecordingPolicy(policy)).await;
    let reader = node.reader();

    // Each row has the badge when recorded, and a select (on its mode) and button that set it.
    let check = |row: &str, url: &str, always: bool| {
        assert!(
            row.contains(&format!(
                "data-api=\"PUT {url}/recording\" data-then=\"reload\""
            )),
            "{row}"
        );
        assert_eq!(row.contains(">always recorded</span>"), always, "{row}");
        let mode = if always { "always" } else { "never" };
        assert!(
            row.contains(&format!("<option value=\"{mode}\" selected>")),
            "{row}"
        );
        assert_eq!(row.matches(" selected>").count(), 1, "{row}");
        assert!(!row.contains("on_demand"), "{row}");
        assert!(row.contains("type=\"submit\""), "{row}");
    };

    let trunks: Vec<(super::routing::Trunk, Option<storage::routing::TrunkStatus>)> =
        ["backup", "carrier"]
            .into_iter()
            .map(|n| {
                let t = serde_json::json!({"name": n, "kind": "peer", "enabled": true, "host": "carrier.example"});
                (serde_json::from_value(t).unwrap(), None)
            })
            .collect();
    let modes = super::routing::recording_modes(reader, RoutingKind::Trunk).unwrap();
    let html = super::routing::render_trunks(&trunks, &modes).into_string();
    assert!(html.contains("<th>Recording</th>"), "{html}");
    for (name, always) in [("carrier", true), ("backup", false)] {
        let row = row_of(&html, &format!("<tr data-trunk=\"{name}\""));
        check(&row, &format!("/api/v1/trunks/{name}"), always);
    }

    let mut out: super::routing::Outbound = serde_json::from_value(
        serde_json::json!({"routes": [outbound("intl"), outbound("local")]}),
    )
    .unwrap();
    out.recording = super::routing::recording_modes(reader, RoutingKind::OutboundRoute).unwrap();
    let dest = serde_json::json!({"type": "extension", "target": "1001"});
    let mut inb: super::routing::Inbound = serde_json::from_value(serde_json::json!({"routes": [
        {"name": "main", "did_kind": "exact", "did": "+15550104", "destination": dest},
        {"name": "sales", "did_kind": "exact", "did": "+15550105", "destination": dest},
    ]}))
    .unwrap();
    inb.recording = super::routing::recording_modes(reader, RoutingKind::InboundRoute).unwrap();
    let conds: super::routing::TimeConditions =
        serde_json::from_value(serde_json::json!({"time_conditions": []})).unwrap();
    let menus = super::routing::IvrMenus {
        list: serde_json::from_value(serde_json::json!({"ivrs": []})).unwrap(),
        prompts: vec![],
        editing: None,
    };
    let html = super::routing::render(&out, &inb, &conds, "UTC", &menus, &no_rooms()).into_string();
    for (kind, name, always) in [
        ("outbound", "intl", true),
        ("outbound", "local", false),
        ("inbound", "sales", true),
        ("inbound", "main", false),
    ] {
        let table = &html[html.find(&format!("id=\"{kind}-table\"")).unwrap()..];
        let row = row_of(table, &format!("<tr data-route=\"{name}\""));
        check(&row, &format!("/api/v1/routes/{kind}/{name}"), always);
    }

    node.shutdown().await.unwrap();
}

// ---- Devices, backups and the name greeting ---------------------------------------------------

/// What the API's handlers reach, over the one-node cluster `node` (no SIP, no VIP).
fn app_state(node: &cluster::Cluster, dir: &std::path::Path) -> crate::api::AppState {
    use std::sync::Arc;

    let events =
        crate::events::Events::start(&crate::config::EventsSection::default(), node.clone())
            .unwrap();
    let audio = crate::audio::AudioStore::new(node.clone(), Arc::clone(&events));
    let security = crate::security::Security::start(
        &crate::config::SecuritySection::default(),
        node.clone(),
        Arc::clone(&events),
    );
    let backups =
        crate::backup::Backups::new(node.clone(), Arc::clone(&audio), Arc::clone(&events), dir)
            .unwrap();
    crate::api::AppState {
        cluster: node.clone(),
        prometheus: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        security,
        events,
        vip: None,
        audio,
        capture: Arc::new(crate::capture::Capture::new(
            1,
            crate::capture::CaptureConfig::default(),
        )),
        sip: crate::provisioning::SipListeners::of(&crate::config::SipSection::default()),
        backups,
    }
}

fn init_cluster() -> storage::Command {
    storage::Command::InitCluster(storage::model::ClusterRecord {
        cluster_id: "test".into(),
        realm: "pbx.test".into(),
        secret: vec![7; 32],
        created_at: 1,
    })
}

/// The 403 page a page handler answers `who` with, or a panic.
fn refused<T: std::fmt::Debug>(answer: Result<T, super::Problem>) -> super::Problem {
    let p = answer.expect_err("the page was shown");
    assert_eq!(p.status, axum::http::StatusCode::FORBIDDEN, "{p:?}");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_page_lists_devices_but_never_a_token_or_secret() {
    use axum::Json;
    use axum::extract::State;
    use serde_json::json;
    use storage::provisioning::{Fetch, FetchKind};

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    seed(&node, init_cluster()).await;
    for (n, name) in [("1001", "Alice"), ("1002", "Bob")] {
        seed(&node, storage::Command::CreateExtension(extension(n, name))).await;
    }
    let state = app_state(&node, dir.path());
    let who = admin();

    // Added as the page adds it: the answer carries the token and the URLs, once.
    let body = json!({"mac": "00:15:65:AA:BB:01", "brand": "yealink", "model": "T54W",
                      "extension": "1001", "label": HOSTILE, "line_keys": ["1002"]});
    let (_, Json(made)) = crate::api::device_create(
        State(state.clone()),
        who.clone(),
        axum::http::HeaderMap::new(),
        crate::api::JsonBody(serde_json::from_value(body).unwrap()),
    )
    .await
    .unwrap();
    let token = made.token.clone();
    assert_eq!(token.len(), 43);
    assert!(made.urls.with_token.contains(&token));
    let stored = node
        .reader()
        .get::<storage::provisioning::Device>("001565aabb01")
        .unwrap()
        .unwrap();
    seed(
        &node,
        storage::Command::RecordDeviceFetch {
            mac: stored.mac.clone(),
            kind: FetchKind::Config,
            fetch: Fetch {
                file: "001565aabb01.cfg".into(),
                at: 1_764_324_000_000,
                from: "192.0.2.44".into(),
            },
        },
    )
    .await;
    seed(
        &node,
        storage::Command::PutProvisioningSettings(storage::provisioning::ProvisioningSettings {
            transport: storage::provisioning::SipTransport::Tls,
            ntp_server: Some("ntp.example.com".into()),
            allowed_networks: vec!["192.0.2.0/24".into(), "198.51.100.0/24".into()],
            updated_at: 1,
        }),
    )
    .await;
    let image = audio_file(9, storage::audio::AudioKind::Firmware, "", "yealink T54W");
    seed(&node, storage::Command::PutAudioFile(image.clone())).await;
    seed(
        &node,
        storage::Command::PutFirmware(storage::provisioning::Firmware {
            brand: storage::provisioning::Brand::Yealink,
            model: "t54w".into(),
            file_name: "T54W-96.86.0.70.rom".into(),
            audio_id: image.id.clone(),
            size: 3 * 1024 * 1024,
            sha256: "ab".repeat(32),
            uploaded_at: 1_764_324_000_000,
        }),
    )
    .await;

    let loaded = super::devices::load(&state, &who, None).await.unwrap();
    let html = layout::page(
        &who,
        Nav::Devices,
        "Devices",
        super::devices::render(&loaded, true),
    )
    .into_string();
    // Never the token, its hash or the SIP secret the phone is given.
    assert!(!html.contains(&token), "the token is in the page");
    assert!(!html.contains(&stored.token_sha256) && !html.contains(&stored.sip_secret));
    assert!(!html.contains(HOSTILE), "raw script in the page");
    let row = row_of(&html, "<tr id=\"device-001565aabb01\"");
    for needle in [
        "<td class=\"mono\">00:15:65:aa:bb:01</td>",
        "yealink T54W",
        "<td><span class=\"mono\">1001</span><br>&lt;script&gt;alert(1)&lt;/script&gt;</td>",
        "<td class=\"mono\">1002</td>",
        "<span class=\"muted\">configuration: </span><time datetime=\"2025-11-28T10:00:00Z\"",
        "<span class=\"mono\">001565aabb01.cfg</span> from <span class=\"mono\">192.0.2.44</span>",
        "<span class=\"muted\">firmware: </span><span class=\"muted\">never</span>",
        ">current</span>",
        "data-api=\"POST /api/v1/devices/001565aabb01/reprovision\"",
        "data-then=\"show-provisioned\"",
        "data-api=\"DELETE /api/v1/devices/001565aabb01\"",
    ] {
        assert!(row.contains(needle), "the row lacks {needle}: {row}");
    }
    for needle in [
        "id=\"device-create\" data-api=\"POST /api/v1/devices\" data-then=\"show-provisioned\"",
        "<option value=\"polycom\">polycom</option>",
        "id=\"devices-import\" data-import=\"/api/v1/devices/import\"",
        "data-api=\"PUT /api/v1/provisioning/settings\"",
        "<option value=\"tls\" selected>TLS (and SRTP)</option>",
        "value=\"ntp.example.com\"",
        "data-type=\"list\" placeholder=\"192.0.2.0/24\">192.0.2.0/24\n198.51.100.0/24</textarea>",
        "data-firmware=\"yealink/t54w\"",
        "<span class=\"mono\">T54W-96.86.0.70.rom</span>",
        "<td class=\"num\">3.0 MiB</td>",
        "data-api=\"DELETE /api/v1/firmware/yealink/t54w\"",
        "data-put-file=\"/api/v1/firmware/{brand}/{model}\"",
        "class=\"nav-link active\" id=\"nav-devices\" href=\"/devices\"",
        // The shown-once panel the token goes to.
        "id=\"shown-once\" hidden",
    ] {
        assert!(html.contains(needle), "/devices lacks {needle}");
    }
    assert!(!html.contains("style=") && !html.contains(" onclick"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the portal's script"
    );

    // The extension's secret was set by hand since: the device says so.
    let mut ext = extension("1001", "Alice");
    ext.credentials.ha1_md5 = "0".repeat(32);
    seed(&node, storage::Command::UpdateExtension(ext)).await;
    let loaded = super::devices::load(&state, &who, None).await.unwrap();
    let html = super::devices::render(&loaded, true).into_string();
    assert!(
        html.contains(">changed since: reprovision</span>"),
        "{html}"
    );

    // A user, or a role with every grant but not the admin role, gets the 403 page.
    for other in [
        principal("user", Grants::USER),
        principal("superuser", Grants::ADMIN),
    ] {
        refused(
            super::devices::page(
                State(state.clone()),
                super::Ctx { who: other },
                super::Params(Default::default()),
            )
            .await,
        );
    }
    node.shutdown().await.unwrap();
}

#[test]
fn macs_show_in_pairs() {
    assert_eq!(
        super::devices::mac_text("001565aabb01"),
        "00:15:65:aa:bb:01"
    );
    assert_eq!(super::devices::mac_text("short"), "short");
}

const PASSPHRASE: &str = "Backup-Passphrase-Never-Shown-91";
const PRIVATE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAnotreal\n-----END OPENSSH PRIVATE KEY-----";

fn backup_record(
    id: &str,
    node_id: u64,
    status: storage::backup::BackupStatus,
) -> storage::backup::BackupRecord {
    storage::backup::BackupRecord {
        id: id.into(),
        node_id,
        trigger: "manual".into(),
        status,
        started_at: 1_764_324_000_000,
        finished_at: Some(1_764_324_002_000),
        log_index: 42,
        size: 5 * 1024 * 1024,
        sha256: "cd".repeat(32),
        audio_files: 3,
        error: None,
        remote: None,
        remote_error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backups_page_lists_backups_and_never_shows_the_passphrase_or_key() {
    use axum::extract::State;
    use storage::backup::{BackupSchedule, BackupSettings, BackupStatus, SftpTarget};

    let dir = tempfile::tempdir().unwrap();
    let node = one_node(dir.path()).await;
    let state = app_state(&node, dir.path());
    let who = admin();

    // No settings and no backups yet.
    let page = super::backups::page(State(state.clone()), super::Ctx { who: who.clone() })
        .await
        .unwrap()
        .into_string();
    assert!(page.contains("id=\"backup-no-passphrase\""), "{page}");
    assert!(page.contains("No backups yet."));
    assert!(page.contains("id=\"backup-sftp-none\""));
    assert!(
        page.contains(
            "name=\"passphrase\" maxlength=\"1024\" autocomplete=\"new-password\" required"
        )
    );
    assert!(page.contains(
        "id=\"backup-scheduled\" type=\"checkbox\" data-skip data-null-unless=\"schedule\">"
    ));

    seed(
        &node,
        storage::Command::PutBackupSettings(BackupSettings {
            passphrase: PASSPHRASE.into(),
            keep: 9,
            schedule: Some(BackupSchedule {
                weekday: Some(2),
                hour: 3,
                minute: 30,
            }),
            sftp: Some(SftpTarget {
                host: "backup.example.com".into(),
                port: 2222,
                user: "pbx".into(),
                path: "/srv/pbx".into(),
                private_key: PRIVATE_KEY.into(),
                host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIhost".into(),
            }),
            updated_at: 1,
        }),
    )
    .await;
    let ok = backup_record("20251128T100000Z-1", 1, BackupStatus::Ok);
    let mut failed = backup_record("20251128T110000Z-2", 2, BackupStatus::Failed);
    failed.started_at += 3_600_000;
    failed.error = Some(HOSTILE.into());
    failed.size = 0;
    let mut remote = backup_record("scheduled-1764300000000", 1, BackupStatus::Ok);
    remote.trigger = "scheduled".into();
    remote.started_at -= 3_600_000;
    remote.remote_error = Some("connection refused".into());
    for r in [&ok, &failed, &remote] {
        seed(
            &node,
            storage::Command::PutBackup {
                record: Box::new(r.clone()),
                create: true,
            },
        )
        .await;
    }

    let html = super::backups::page(State(state.clone()), super::Ctx { who: who.clone() })
        .await
        .unwrap()
        .into_string();
    assert!(!html.contains(PASSPHRASE) && !html.contains("Backup-Passphrase"));
    assert!(!html.contains("PRIVATE KEY-----\n") && !html.contains("notreal"));
    assert!(!html.contains(HOSTILE), "raw script in the page");
    // The secret inputs are never filled in.
    for input in ["name=\"passphrase\"", "name=\"repeat_passphrase\""] {
        let tag = &html[html.find(input).unwrap()..];
        let tag = &tag[..tag.find('>').unwrap()];
        assert!(!tag.contains("value="), "{tag}");
    }
    assert!(html.contains("name=\"sftp.private_key\" required autocomplete=\"off\" spellcheck=\"false\" placeholder=\"-----BEGIN OPENSSH PRIVATE KEY-----\"></textarea>"));
    // Newest first.
    let rows: Vec<&str> = html
        .split("<tr id=\"backup-")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .collect();
    assert_eq!(rows, [&failed.id, &ok.id, &remote.id]);
    let row = row_of(&html, &format!("<tr id=\"backup-{}\"", ok.id));
    for needle in [
        "manual · node 1 (this one)",
        ">ok</span>",
        "<td class=\"num\">5.0 MiB</td>",
        "<td class=\"num\">42</td>",
        "<td class=\"num\">3</td>",
        "datetime=\"2025-11-28T10:00:02Z\"",
        "href=\"/api/v1/backups/20251128T100000Z-1/download\" download",
        "data-api=\"DELETE /api/v1/backups/20251128T100000Z-1\"",
    ] {
        assert!(row.contains(needle), "the row lacks {needle}: {row}");
    }
    let row = row_of(&html, &format!("<tr id=\"backup-{}\"", failed.id));
    assert!(
        row.contains(">failed</span>") && row.contains("&lt;script&gt;"),
        "{row}"
    );
    assert!(
        row.contains("manual · node 2<") && !row.contains("/download"),
        "{row}"
    );
    let row = row_of(&html, &format!("<tr id=\"backup-{}\"", remote.id));
    assert!(
        row.contains("connection refused") && row.contains("scheduled"),
        "{row}"
    );
    for needle in [
        "id=\"backup-create\" type=\"button\" data-api=\"POST /api/v1/backups\"",
        ">set</span>",
        "New passphrase (empty: unchanged)",
        "name=\"keep\" data-type=\"number\" min=\"1\" max=\"100\" value=\"9\"",
        "data-null-unless=\"schedule\" checked>",
        "name=\"schedule.time\" value=\"03:30\"",
        "<option value=\"wednesday\" selected>every wednesday</option>",
        "pbx@backup.example.com:2222",
        "value=\"backup.example.com\"",
        "name=\"sftp.port\" data-type=\"number\" min=\"1\" max=\"65535\" required value=\"2222\"",
        "value=\"/srv/pbx\"",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIhost",
        "data-body=\"{&quot;sftp&quot;:null}\"",
        "class=\"nav-link active\" id=\"nav-backups\" href=\"/backups\"",
    ] {
        assert!(html.contains(needle), "/backups lacks {needle}");
    }
    assert!(!html.contains("id=\"backup-no-passphrase\""));
    // The settings form never carries the remote destination (left out: kept).
    let form = &html[html.find("id=\"backup-settings\"").unwrap()..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(!form.contains("sftp"), "{form}");
    assert!(!html.contains("style=") && !html.contains(" onclick"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the portal's script"
    );

    for other in [
        principal("user", Grants::USER),
        principal("operator", Grants::OPERATOR),
    ] {
        refused(super::backups::page(State(state.clone()), super::Ctx { who: other }).await);
    }
    node.shutdown().await.unwrap();
}

#[test]
fn the_name_greeting_is_shown_set_by_upload_removed_alone_and_never_wiped() {
    use crate::api::{MailboxView, MessageList};
    use serde_json::json;

    let name_id = "d".repeat(32);
    let busy_id = "e".repeat(32);
    let view: MailboxView = serde_json::from_value(json!({
        "extension": "1001", "enabled": true, "has_pin": true, "email": null,
        "ring_secs": 20, "greeting_unavailable": null, "greeting_busy": busy_id,
        "greeting_name": name_id, "max_message_secs": 180, "max_messages": 100,
        "messages_total": 0, "messages_new": 0, "created_at": 1, "updated_at": 2
    }))
    .unwrap();
    let list: MessageList =
        serde_json::from_value(json!({"messages": [], "total": 0, "new": 0})).unwrap();
    let html = super::voicemail::mine_card("1001", &Ok(Some((view, list)))).into_string();
    let at = html
        .find("<dd class=\"voicemail-greeting_name\" id=\"voicemail-greeting_name\"")
        .unwrap_or_else(|| panic!("no name greeting: {html}"));
    let dd = &html[at..at + html[at..].find("</dd>").unwrap()];
    assert!(
        dd.contains(&format!("src=\"/api/v1/audio/{name_id}/content\"")),
        "{dd}"
    );
    // Its button removes the name alone: the other greetings as they are.
    assert!(dd.contains("&quot;greeting_name&quot;:null"), "{dd}");
    assert!(dd.contains(&format!("&quot;greeting_busy&quot;:&quot;{busy_id}&quot;")));
    assert!(html.contains(
        "<option value=\"greeting_name\">as your name, in the default greeting</option>"
    ));
    // Every other PUT the card sends leaves it out, which keeps it.
    let without_name = html.replace("&quot;greeting_name&quot;:null", "");
    assert!(!without_name.contains("greeting_name&quot;"), "{html}");
    assert!(
        !html.contains("name=\"greeting_name\""),
        "a form carries the name"
    );
    assert!(!html.contains(&format!("value=\"{name_id}\"")));

    // The admin's form: the same, for the extension's mailbox, without ids.
    let mailbox = storage::voicemail::Mailbox::new("1001", 1);
    let html = super::voicemail::admin_form("1001", Some(&mailbox), Some(&name_id)).into_string();
    assert!(
        html.contains(&format!("src=\"/api/v1/audio/{name_id}/content\"")),
        "{html}"
    );
    assert!(html.contains("&quot;greeting_name&quot;:null"));
    assert!(html.contains(
        "<option value=\"greeting_name\">as the user's name, in the default greeting</option>"
    ));
    assert!(html.contains("data-upload=\"/api/v1/audio?owner=1001\" data-then=\"greeting\""));
    assert!(
        !html.contains(" id="),
        "ids would repeat on every row: {html}"
    );
    let without_name = html.replace("&quot;greeting_name&quot;:null", "");
    assert!(!without_name.contains("greeting_name&quot;"), "{html}");
    // Without one: the number is said.
    let html = super::voicemail::admin_form("1001", Some(&mailbox), None).into_string();
    assert!(html.contains("the default greeting says the extension's number"));
    assert!(!html.contains("&quot;greeting_name&quot;:null"));
}
