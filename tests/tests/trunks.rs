//! SIP trunks end to end, with sipp as the provider, on loopback: the phones (sipp as extensions) are
//! on 127.0.0.1, the provider on 127.0.0.2, so the PBX tells them apart by source address.
//!
//! Outbound: extension 1001 dials 95550100; the route strips the 9 and the provider (a sipp UAS on a
//! peer trunk) must see an INVITE for 5550100, and answers. The extension's permission group allows
//! two calls a minute: the third is refused with 403, raises `toll_fraud_suspected` and leaves a
//! `denied` CDR. Inbound: the provider calls DID 15550100 without authentication and the inbound
//! route rings extension 1002 (a registered sipp UAS), which answers.
//!
//! The refusals (second test): a route the caller's group does not list, an international call to a
//! country outside the group's list, an anonymous caller on a trunk that refuses them, an INVITE to
//! a DID from an address that is no trunk's; and an emergency number, which goes out regardless.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use pbx_tests::api::{
    create, inbound_to_extension, lab_without_pings, peer_trunk, send, wait_item, wait_json,
    wait_registered,
};
use pbx_tests::process::KillOnDrop;
use pbx_tests::sipp::{self, Sipp, logs, subdir};
use pbx_tests::{Lab, LabClient, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// The provider's address; the phones use 127.0.0.1.
const PROVIDER_IP: &str = "127.0.0.2";

/// A one-node lab with extensions 1001 and 1002, sipp's credentials for 1001, and a free port for
/// the provider's sipp.
struct Site {
    lab: Lab,
    client: LabClient,
    /// The PBX's SIP address.
    target: String,
    carrier_port: u16,
    dir: TempDir,
    /// 1001's credentials, for sipp.
    uac_csv: String,
}

impl Site {
    async fn start() -> Self {
        // sipp phones expect only their calls, so the PBX's OPTIONS pings are off.
        let (lab, client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
        let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
        let dir = tempfile::tempdir().unwrap();
        let uac_csv = sipp::credentials(dir.path(), "uac.csv", "1001", SECRET);
        Self {
            lab,
            client,
            target,
            carrier_port: free_sip_port(),
            dir,
            uac_csv,
        }
    }

    /// The configuration, as an admin makes it: `trunk`, the outbound `routes`, permission group
    /// `group` for 1001, and the inbound route `main` from DID 15550100 to 1002. When it was done:
    /// the PBX re-reads the addresses trunk calls come from within a second of a routing change.
    async fn configure(&self, trunk: Value, routes: &[Value], group: Value) -> Instant {
        let client = &self.client;
        create(client, "/api/v1/trunks", trunk).await;
        for route in routes {
            create(client, "/api/v1/routes/outbound", route.clone()).await;
        }
        let name = group["name"].clone();
        create(client, "/api/v1/permission-groups", group).await;
        let patch = json!({"permission_group": name});
        let ext = send(
            client,
            Method::PATCH,
            "/api/v1/extensions/1001",
            patch,
            StatusCode::OK,
        )
        .await;
        assert_eq!(ext["permission_group"], name);
        let main = inbound_to_extension("main", "15550100", "1002");
        create(client, "/api/v1/routes/inbound", main).await;
        Instant::now()
    }

    /// The provider's sipp, in `dir`: scenario `name` for two calls, listening once this returns.
    async fn carrier(&self, dir: &Path, name: &str) -> KillOnDrop {
        let carrier = Sipp::new(name)
            .listen(PROVIDER_IP, self.carrier_port)
            .args(["-m", "2"])
            .spawn(dir);
        let addr: SocketAddr = format!("{PROVIDER_IP}:{}", self.carrier_port)
            .parse()
            .unwrap();
        sipp::wait_bound(addr).await;
        carrier
    }

    /// Asserts that the provider's sipp (logging in `dir`) ended its two calls cleanly; its logs.
    async fn carrier_done(&self, carrier: &mut KillOnDrop, dir: &Path) -> String {
        let status = carrier.exited(Duration::from_secs(10)).await;
        let carrier_logs = logs(dir);
        let status = status.unwrap_or_else(|| {
            panic!("the carrier sipp did not finish its two calls\n{carrier_logs}")
        });
        assert!(
            status.success(),
            "the carrier's calls failed\n{carrier_logs}\n{}",
            self.lab.log_tail(0)
        );
        carrier_logs
    }

    /// 1002 as a sipp UAS in `dir`, registered from 127.0.0.1, answering the call it is sent.
    async fn answering_1002(&self, dir: &Path) -> KillOnDrop {
        let uas_csv = sipp::credentials(self.dir.path(), "uas.csv", "1002", SECRET);
        let uas = Sipp::answering_phone(&self.target, &uas_csv, 60000).spawn(dir);
        wait_registered(&self.client, "1002").await;
        uas
    }

    /// 1001 dialling `number` with scenario `name`.
    fn phone_call(&self, number: &str, name: &str) -> Sipp {
        Sipp::phone_call(&self.target, &self.uac_csv, number, name)
    }

    /// The provider (or whoever is on `ip`) calling the DID with scenario `name`.
    fn provider_call(&self, ip: &str, name: &str) -> Sipp {
        Sipp::provider_call(&self.target, ip, "15550100", name)
    }

    /// Runs `sipp` in a fresh directory `name` and asserts it succeeded (its scenario got the
    /// answers it expects), with `what` went wrong otherwise; the SIP messages it exchanged.
    async fn sipp_ok(&self, name: &str, sipp: Sipp, what: &str) -> String {
        let dir = subdir(self.dir.path(), name);
        sipp.run_ok(&dir, &self.lab, what).await
    }

    /// 1001 dials `number`, which the PBX refuses with 403: the `denied` outbound CDR, and the
    /// `outbound_denied` event naming the number.
    async fn refused_outbound(&self, name: &str, number: &str, what: &str) -> (Value, Value) {
        let call = self.phone_call(number, "uac-call-refused.xml");
        let messages = self.sipp_ok(name, call, what).await;
        assert!(
            messages.contains("SIP/2.0 403 Route Not Permitted"),
            "{messages}"
        );
        let client = &self.client;
        let denied = wait_item(client, "/api/v1/cdrs", "cdrs", |c| c["dialled"] == number).await;
        assert_eq!(denied["disposition"], "denied", "{denied}");
        assert_eq!(denied["sip_status"], 403, "{denied}");
        assert_eq!(denied["direction"], "outbound", "{denied}");
        assert_eq!(denied["trunk"], "", "{denied}");
        let event = wait_item(
            client,
            "/api/v1/events?kind=outbound_denied",
            "events",
            |e| e["message"].as_str().is_some_and(|m| m.contains(number)),
        )
        .await;
        (denied, event)
    }

    /// 1001 dials `number`, which goes out on `route` to the carrier as `sent` and is answered.
    async fn answered_outbound(
        &self,
        name: &str,
        number: &str,
        route: &str,
        sent: &str,
        what: &str,
    ) {
        self.sipp_ok(name, self.phone_call(number, "uac-call.xml"), what)
            .await;
        let out = wait_item(&self.client, "/api/v1/cdrs", "cdrs", |c| {
            c["dialled"] == number
        })
        .await;
        assert_eq!(out["disposition"], "answered", "{out}");
        assert_eq!(out["direction"], "outbound", "{out}");
        assert_eq!(out["route"], route, "{out}");
        assert_eq!(out["trunk"], "carrier", "{out}");
        assert_eq!(out["sent"], sent, "{out}");
    }

    /// Waits until the PBX knows the provider's address: a second after the configuration.
    async fn wait_trunk_addresses(configured: Instant) {
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(configured.elapsed())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_provider_carries_outbound_and_inbound_calls_with_toll_limits() {
    let site = Site::start().await;
    let (lab, client, dir) = (&site.lab, &site.client, site.dir.path());
    let configured = site
        .configure(
            peer_trunk("carrier", PROVIDER_IP, site.carrier_port),
            &[json!({
                "name": "national",
                "patterns": ["9NXXXXXX"],
                "strip": 1,
                "class": "local",
                "trunks": ["carrier"]
            })],
            json!({"name": "staff", "routes": ["national"], "limits": {"per_minute": 2}}),
        )
        .await;

    // The provider: answers two calls, each of which must be for 5550100, then exits.
    let carrier_dir = subdir(dir, "carrier");
    let mut carrier = site.carrier(&carrier_dir, "trunk-carrier-uas.xml").await;

    // The limit counts calls per calendar minute: the three calls must fall in one.
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 30 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }

    for n in 1..=2 {
        let status = site.phone_call("95550100", "uac-call.xml").run(dir).await;
        assert!(
            status.success(),
            "outbound call {n} failed\n{}\n{}\n{}",
            logs(dir),
            logs(&carrier_dir),
            lab.log_tail(0)
        );
    }
    // The provider saw both calls, for the stripped number, and ended both cleanly.
    site.carrier_done(&mut carrier, &carrier_dir).await;

    // The third call this minute crosses the group's limit.
    site.phone_call("95550100", "uac-call-refused.xml")
        .run_ok(dir, lab, "the third call was not refused with 403")
        .await;
    let event = wait_item(
        client,
        "/api/v1/events?kind=toll_fraud_suspected",
        "events",
        |_| true,
    )
    .await;
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1001") && message.contains("per_minute"),
        "{event}"
    );
    let denied = wait_item(client, "/api/v1/cdrs", "cdrs", |c| {
        c["disposition"] == "denied"
    })
    .await;
    assert_eq!(denied["caller"], "1001", "{denied}");
    assert_eq!(denied["sip_status"], 403, "{denied}");
    let answered = |c: &Value| c["caller"] == "1001" && c["disposition"] == "answered";
    let cdrs = wait_json(client, "/api/v1/cdrs", |v| {
        v["cdrs"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|c| answered(c)).count() == 2)
    })
    .await;
    for cdr in cdrs["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| answered(c))
    {
        assert_eq!(cdr["callee"], "95550100", "{cdr}");
        assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    }

    // Inbound: 1002 registers from 127.0.0.1; the provider calls its DID from 127.0.0.2.
    let _uas = site.answering_1002(dir).await;
    Site::wait_trunk_addresses(configured).await;
    let provider_dir = subdir(dir, "provider");
    let status = site
        .provider_call(PROVIDER_IP, "trunk-provider-uac.xml")
        .run(&provider_dir)
        .await;
    assert!(
        status.success(),
        "the inbound trunk call failed\n{}\n{}\n{}",
        logs(&provider_dir),
        logs(dir),
        lab.log_tail(0)
    );
    let inbound = wait_item(client, "/api/v1/cdrs", "cdrs", |c| c["callee"] == "1002").await;
    assert_eq!(inbound["caller"], "15551234", "{inbound}");
    assert_eq!(inbound["disposition"], "answered", "{inbound}");
    wait_json(client, "/api/v1/calls", |v| v["count"] == 0).await;
}

/// The CDRs whose `field` is `value`, as of now.
async fn cdrs_where(client: &LabClient, field: &str, value: &str) -> Vec<Value> {
    let all = client.get_json(0, "/api/v1/cdrs").await.unwrap();
    all["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[field] == value)
        .cloned()
        .collect()
}

/// The refusals of the trunk feature, each as the caller sees it (the SIP answer), as the CDRs
/// record it and as the events report it: (a) a route the extension's group does not list → 403
/// `outbound_denied`; (b) an international route to a country outside the group's prefixes → 403,
/// and to one inside → out to the carrier; (c) an anonymous call from the provider → 433
/// `anonymous_call_refused` unless the trunk allows anonymous calls (and then refused again by
/// the site-wide `reject_anonymous_inbound`); (d) the same INVITE from an address that is no
/// trunk's → 407 like any stranger, no CDR; (e) an emergency number → out to the carrier through
/// a route the extension may not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_trunk_refusals_denied_routes_countries_anonymous_spoofed_and_emergency() {
    let site = Site::start().await;
    let (client, dir) = (&site.client, site.dir.path());
    let trunk = |allow_anonymous: bool| {
        let mut trunk = peer_trunk("carrier", PROVIDER_IP, site.carrier_port);
        trunk["allow_anonymous"] = json!(allow_anonymous);
        trunk
    };
    // 1001 may call abroad (the UK only), once a day; not nationally, not the emergency route.
    let configured = site
        .configure(
            trunk(false),
            &[
                json!({"name": "national", "patterns": ["9NXXXXXX"], "strip": 1, "class": "local",
                       "trunks": ["carrier"]}),
                json!({"name": "intl", "patterns": ["011."], "strip": 3, "class": "international",
                       "trunks": ["carrier"]}),
                json!({"name": "emergency", "patterns": ["911"], "class": "local",
                       "trunks": ["carrier"]}),
            ],
            json!({"name": "abroad", "routes": ["intl"], "international_prefixes": ["44"],
                   "limits": {"per_day": 1}}),
        )
        .await;

    // The provider answers two calls, whatever the number, and logs the numbers it was sent.
    let carrier_dir = subdir(dir, "carrier");
    let mut carrier = site
        .carrier(&carrier_dir, "trunk-carrier-uas-any.xml")
        .await;

    // (a) A route the group does not list: 403, a denied CDR naming the route, an event.
    let (denied, event) = site
        .refused_outbound(
            "denied-route",
            "95550100",
            "a call on a route 1001 may not use was not refused with 403",
        )
        .await;
    assert_eq!(denied["route"], "national", "{denied}");
    assert_eq!(denied["caller"], "1001", "{denied}");
    let message = event["message"].as_str().unwrap();
    assert!(
        message.contains("1001") && message.contains("'national' not permitted"),
        "{event}"
    );

    // (b) The international route, to France (33): not among the group's countries.
    let (denied, event) = site
        .refused_outbound(
            "denied-country",
            "011331234567",
            "a call to a country 1001 may not call was not refused with 403",
        )
        .await;
    assert_eq!(denied["route"], "intl", "{denied}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("country code of 331... not allowed"),
        "{event}"
    );

    // ... and to the UK (44): out to the carrier, the 011 stripped.
    site.answered_outbound(
        "allowed-country",
        "011442079460000",
        "intl",
        "442079460000",
        "a call to an allowed country did not go out",
    )
    .await;

    // That call used up 1001's day.
    let day = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400
    };
    let today = day();
    let counted = || async {
        let counters = client.get_json(0, "/api/v1/toll-fraud").await.unwrap();
        counters["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == "ext:1001")
            .unwrap_or_else(|| panic!("no counter for 1001: {counters}"))
            .clone()
    };
    let before = counted().await;
    // (e) An emergency number on a route 1001 may not use, with its daily limit used up: it goes
    // out all the same, and is not counted.
    site.answered_outbound(
        "emergency",
        "911",
        "emergency",
        "911",
        "the emergency call did not go out",
    )
    .await;
    let after = counted().await;
    // (Unless the UTC day turned in between, when the counts start again.)
    if day() == today {
        assert_eq!(before["day"], 1, "{before}");
        assert_eq!(after["day"], 1, "the emergency call was counted: {after}");
    }
    // The carrier got exactly these two calls, for the numbers as sent, and ended both cleanly.
    let carrier_logs = site.carrier_done(&mut carrier, &carrier_dir).await;
    let international = carrier_logs
        .find("trunk INVITE for 442079460000")
        .unwrap_or_else(|| panic!("{carrier_logs}"));
    let emergency = carrier_logs
        .find("trunk INVITE for 911")
        .unwrap_or_else(|| panic!("{carrier_logs}"));
    assert!(international < emergency, "{carrier_logs}");
    // Neither refused call reached the carrier, and no limit was counted for the emergency call.
    assert_eq!(
        carrier_logs.matches("trunk INVITE for").count(),
        2,
        "{carrier_logs}"
    );

    // Inbound: 1002 (a sipp UAS) answers what the DID's route sends it.
    let _uas = site.answering_1002(&subdir(dir, "uas")).await;
    // The PBX knows the provider's address within a second of the trunk's creation.
    Site::wait_trunk_addresses(configured).await;

    // (c) An anonymous call from the provider: the trunk does not allow them.
    let messages = site
        .sipp_ok(
            "anonymous-refused",
            site.provider_call(PROVIDER_IP, "trunk-provider-anonymous-refused.xml"),
            "the anonymous call was not refused with 433",
        )
        .await;
    assert!(
        messages.contains("SIP/2.0 433 Anonymity Disallowed"),
        "{messages}"
    );
    let refused = wait_item(client, "/api/v1/cdrs", "cdrs", |c| {
        c["direction"] == "inbound"
    })
    .await;
    assert_eq!(refused["sip_status"], 433, "{refused}");
    assert_eq!(refused["disposition"], "failed", "{refused}");
    assert_eq!(refused["caller"], "anonymous", "{refused}");
    assert_eq!(refused["trunk"], "carrier", "{refused}");
    assert_eq!(refused["dialled"], "15550100", "{refused}");
    assert_eq!(refused["route"], "", "{refused}");
    let event = wait_item(
        client,
        "/api/v1/events?kind=anonymous_call_refused",
        "events",
        |_| true,
    )
    .await;
    assert!(
        event["message"].as_str().unwrap().contains("carrier"),
        "{event}"
    );

    // (d) The same DID from an address that is no trunk's: challenged, never routed, no CDR.
    site.sipp_ok(
        "spoofed",
        site.provider_call("127.0.0.5", "trunk-spoofed-challenged.xml"),
        "an INVITE to a DID from outside the trunk was not challenged with 407",
    )
    .await;

    // The trunk now allows anonymous callers (a PUT without the password keeps it): the same call
    // rings 1002, which answers.
    let updated = send(
        client,
        Method::PUT,
        "/api/v1/trunks/carrier",
        trunk(true),
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["allow_anonymous"], true, "{updated}");
    wait_json(client, "/api/v1/trunks/carrier", |t| {
        t["allow_anonymous"] == true
    })
    .await;
    site.sipp_ok(
        "anonymous-allowed",
        site.provider_call(PROVIDER_IP, "trunk-provider-anonymous.xml"),
        "the anonymous call was not answered once the trunk allows it",
    )
    .await;
    let answered = wait_item(client, "/api/v1/cdrs", "cdrs", |c| {
        c["direction"] == "inbound" && c["disposition"] == "answered"
    })
    .await;
    assert_eq!(answered["caller"], "anonymous", "{answered}");
    assert_eq!(answered["callee"], "1002", "{answered}");
    assert_eq!(answered["trunk"], "carrier", "{answered}");
    assert_eq!(answered["did"], "15550100", "{answered}");
    assert_eq!(answered["route"], "main", "{answered}");

    // The site-wide setting refuses it again, whatever the trunk says.
    let settings = json!({"emergency_numbers": ["911", "112"], "reject_anonymous_inbound": true});
    send(
        client,
        Method::PUT,
        "/api/v1/routing/settings",
        settings,
        StatusCode::OK,
    )
    .await;
    site.sipp_ok(
        "anonymous-site-refused",
        site.provider_call(PROVIDER_IP, "trunk-provider-anonymous-refused.xml"),
        "reject_anonymous_inbound did not refuse the anonymous call with 433",
    )
    .await;
    wait_json(client, "/api/v1/cdrs", |v| {
        v["cdrs"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|c| c["sip_status"] == 433).count() == 2)
    })
    .await;

    // Of the inbound calls, only the three from the provider left CDRs: the spoofed one none.
    let inbound = cdrs_where(client, "direction", "inbound").await;
    assert_eq!(inbound.len(), 3, "{inbound:?}");
    assert!(
        cdrs_where(client, "caller", "15551234").await.is_empty(),
        "the spoofed INVITE left a CDR"
    );
    wait_json(client, "/api/v1/calls", |v| v["count"] == 0).await;
}
