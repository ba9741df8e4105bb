//! Auto-provisioning on a three-node cluster: devices of all five brands created, each file
//! fetched as the phone would (its User-Agent, the token in the path or HTTP Basic) from another
//! node, the SIP secret in it registering the extension; wrong and missing credentials, unknown
//! MACs and other devices' files all the same `404`; a MAC-guessing loop banned; the device list
//! showing each download; reprovisioning; bulk import with per-row errors; two baresip phones
//! configured only from their Yealink files registering and calling each other.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::api::{
    call, calls_reach, create, expect_error, lab_without_pings, wait_first_cdr, wait_registered,
};
use pbx_tests::baresip::{Baresip, loud_samples};
use pbx_tests::phone::Phone;
use pbx_tests::{Lab, LabClient, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";

/// The devices: MAC, brand, model, extension, the phone's User-Agent.
const DEVICES: [(&str, &str, &str, &str, &str); 5] = [
    (
        "00:15:65:AA:BB:01",
        "yealink",
        "T54W",
        "1001",
        "Yealink SIP-T54W 96.86.0.70 00:15:65:aa:bb:01",
    ),
    (
        "000b.82aa.bb02",
        "grandstream",
        "GXP2170",
        "1002",
        "Grandstream Model HW GXP2170 SW 1.0.11.6 DevId 000b82aabb02",
    ),
    (
        "00-04-13-AA-BB-03",
        "snom",
        "D785",
        "1003",
        "Mozilla/4.0 (compatible; snomD785-SIP 10.1.73.16)",
    ),
    (
        "0c383eaabb04",
        "fanvil",
        "X4U",
        "1004",
        "Fanvil X4U 2.12.1 0c383eaabb04",
    ),
    (
        "00:04:F2:AA:BB:05",
        "polycom",
        "VVX450",
        "1005",
        "FileTransport PolycomVVX-VVX_450-UA/6.4.3.5018",
    ),
];

/// A client whose connections come from `addr` (another loopback address plays another host).
fn from(lab: &Lab, addr: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(lab.ca_path()).unwrap()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .local_address(addr.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Status, `Content-Type` and body.
async fn fetch(req: reqwest::RequestBuilder) -> (StatusCode, String, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

/// What sits between `before` and `after` in `doc`, the first time.
fn between<'a>(doc: &'a str, before: &str, after: &str) -> &'a str {
    let start = doc
        .find(before)
        .unwrap_or_else(|| panic!("{before:?} not in {doc}"))
        + before.len();
    let len = doc[start..].find(after).unwrap();
    &doc[start..start + len]
}

/// The SIP server, port and secret a brand's file gives the phone.
fn account(brand: &str, doc: &str) -> (String, u16, String) {
    let line = |key: &str| -> String {
        doc.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} not in {doc}"))
            .trim()
            .to_owned()
    };
    match brand {
        "yealink" => (
            line("account.1.sip_server.1.address = "),
            line("account.1.sip_server.1.port = ").parse().unwrap(),
            line("account.1.password = "),
        ),
        "grandstream" => {
            let server = between(doc, "<P47>", "</P47>");
            let (host, port) = server.rsplit_once(':').unwrap();
            (
                host.to_owned(),
                port.parse().unwrap(),
                between(doc, "<P34>", "</P34>").to_owned(),
            )
        }
        "snom" => {
            let host = between(doc, "<user_host idx=\"1\" perm=\"R\">", "</user_host>");
            let (hostport, _) = host.split_once(';').unwrap();
            let (h, p) = hostport.rsplit_once(':').unwrap();
            (
                h.to_owned(),
                p.parse().unwrap(),
                between(doc, "<user_pass idx=\"1\" perm=\"R\">", "</user_pass>").to_owned(),
            )
        }
        "fanvil" => {
            let value = |key: &str| line(key).trim_start_matches([' ', ':']).to_owned();
            (
                value("SIP1 Register Addr"),
                value("SIP1 Register Port").parse().unwrap(),
                value("SIP1 Register Pswd"),
            )
        }
        "polycom" => (
            between(doc, "reg.1.server.1.address=\"", "\"").to_owned(),
            between(doc, "reg.1.server.1.port=\"", "\"")
                .parse()
                .unwrap(),
            between(doc, "reg.1.auth.password=\"", "\"").to_owned(),
        ),
        other => panic!("brand {other}"),
    }
}

/// Registers `number` with `secret` at `server`: the SIP status, 401 when the answer to the
/// challenge was challenged again (a wrong secret).
async fn register(server: SocketAddr, number: &str, secret: &str) -> u16 {
    let mut phone = Phone::new(server, number, secret).await.unwrap();
    match phone.register(60).await {
        Ok(status) => status,
        Err(e) if e.to_string().contains("challenged twice") => 401,
        Err(e) => panic!("REGISTER {number}: {e}"),
    }
}

async fn wait_banned(client: &LabClient, addr: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let bans = client.get_json(0, "/api/v1/bans").await.unwrap();
        if bans["bans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["ip"] == addr && b["active"] == true)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} not banned: {bans}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn phones_of_five_brands_provision_themselves_and_guessing_gets_banned() {
    let numbers = ["1001", "1002", "1003", "1004", "1005", "1006", "1007"];
    let (lab, client) = lab_without_pings(3, &numbers, SECRET).await;
    create(
        &client,
        "/api/v1/extensions/1002/contacts",
        json!({"name": "Mum", "numbers": [{"kind": "home", "number": "+44 7700 900123"}]}),
    )
    .await;

    // One device per brand; the Yealink has busy lamps for 1002 and 1003.
    let mut made = Vec::new();
    for (mac, brand, model, ext, _) in DEVICES {
        let mut body = json!({"mac": mac, "brand": brand, "model": model, "extension": ext,
                              "label": format!("{brand} desk")});
        if brand == "yealink" {
            body["line_keys"] = json!(["1002", "1003"]);
        }
        let d = create(&client, "/api/v1/devices", body).await;
        let token = d["token"].as_str().unwrap().to_owned();
        assert!(token.len() >= 22, "at least 128 bits: {token}");
        assert!(
            d.get("sip_secret").is_none() && d.get("token_sha256").is_none(),
            "{d}"
        );
        assert_eq!(d["secret_current"], json!(true), "{d}");
        let url = d["urls"]["with_token"].as_str().unwrap();
        assert!(url.contains(&format!("/provision/{token}/")), "{url}");
        made.push((d, token));
    }
    client.sync(1).await.unwrap();
    client.sync(2).await.unwrap();
    // The extensions' secrets were replaced: the old one no longer registers.
    let node1_sip = SocketAddr::from(([127, 0, 0, 1], lab.nodes[1].sip_port));
    assert_ne!(register(node1_sip, "1001", SECRET).await, 200);

    // Each phone fetches its file from node 1, token in the path, with its own User-Agent.
    let phone_net = from(&lab, "127.0.0.1");
    let api1 = lab.nodes[1].api_url();
    let mut secrets = Vec::new();
    for ((_, brand, _, ext, agent), (d, token)) in DEVICES.iter().zip(&made) {
        let mac = d["mac"].as_str().unwrap();
        let mut file = d["files"][0].as_str().unwrap().to_owned();
        let (status, ct, mut doc) = fetch(
            phone_net
                .get(format!("{api1}/provision/{token}/{file}"))
                .header("user-agent", *agent),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{brand}: {doc}");
        assert!(ct.starts_with("text/"), "{ct}");
        assert!(file.contains(mac), "{brand}: {file} names the phone");
        if *brand == "polycom" {
            // The master configuration names the settings file, fetched the same way.
            let settings = between(&doc, "CONFIG_FILES=\"", "\"").to_owned();
            assert_eq!(settings, format!("{mac}-pbx.cfg"));
            let (status, _, body) = fetch(
                phone_net
                    .get(format!("{api1}/provision/{token}/{settings}"))
                    .header("user-agent", *agent),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            doc = body;
            file = settings;
        }
        let (server, port, secret) = account(brand, &doc);
        assert_eq!(server, "127.0.0.1", "{brand}: the SIP server");
        assert_eq!(port, lab.nodes[1].sip_port, "{brand}: node 1's SIP port");
        assert!(secret.len() >= 20, "{brand}: a generated secret");
        assert_ne!(secret, SECRET);
        assert!(doc.contains(ext), "{brand}: the extension");
        assert!(
            doc.contains(&format!("/phonebook/{brand}.xml")),
            "{brand}: the phonebook"
        );
        // The same file with HTTP Basic (user the MAC, in any notation; password the token).
        let (status, _, basic) = fetch(
            phone_net
                .get(format!("{api1}/provision/{file}"))
                .header("user-agent", *agent)
                .basic_auth(mac.to_uppercase(), Some(token)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{brand} with Basic: {basic}");
        assert!(basic.contains(&secret));
        // Configured from the file alone, the phone registers.
        let sip = SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(register(sip, ext, &secret).await, 200, "{brand}");
        secrets.push(secret);
    }
    // The Yealink's busy lamps and phonebook credentials.
    let (_, _, yealink) = fetch(phone_net.get(format!(
        "{api1}/provision/{}/{}",
        made[0].1,
        made[0].0["files"][0].as_str().unwrap()
    )))
    .await;
    assert!(yealink.contains("linekey.2.value = 1002\nlinekey.2.label = Ext 1002"));
    assert!(yealink.contains("linekey.3.value = 1003"));
    // The phonebook URL in the file works as the phone would use it.
    let book = between(&yealink, "remote_phonebook.data.1.url = https://", "\n");
    let (cred, rest) = book.split_once('@').unwrap();
    let (user, pass) = cred.split_once(':').unwrap();
    let (status, _, _) = fetch(
        phone_net
            .get(format!("https://{rest}"))
            .basic_auth(user, Some(pass)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the phonebook with the file's credentials"
    );

    // The device list shows every download, read on another node.
    client.sync(2).await.unwrap();
    let list = client.get_json(2, "/api/v1/devices").await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for d in items {
        let last = &d["last_config"];
        assert_eq!(last["from"], json!("127.0.0.1"), "{d}");
        assert!(last["at"].as_u64().unwrap() > 0);
        assert!(
            d["files"].as_array().unwrap().contains(&last["file"]),
            "{d}"
        );
    }
    let page = client.get_json(0, "/api/v1/devices?limit=2").await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let rest = client
        .get_json(0, &format!("/api/v1/devices?limit=10&after={next}"))
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);

    // Wrong and missing credentials, unknown MACs, another device's file: one and the same 404.
    let (yl, yl_token) = (&made[0].0, &made[0].1);
    let gs_token = &made[1].1;
    let yl_mac = yl["mac"].as_str().unwrap();
    let yl_file = yl["files"][0].as_str().unwrap();
    let wrong = "A".repeat(43);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "wrong token",
            from(&lab, "127.0.0.31").get(format!("{api1}/provision/{wrong}/{yl_file}")),
        ),
        (
            "unknown MAC",
            from(&lab, "127.0.0.31").get(format!("{api1}/provision/{yl_token}/001565ffff99.cfg")),
        ),
        (
            "another device's token",
            from(&lab, "127.0.0.31").get(format!("{api1}/provision/{gs_token}/{yl_file}")),
        ),
        (
            "no MAC in the name",
            from(&lab, "127.0.0.31").get(format!("{api1}/provision/{yl_token}/config.cfg")),
        ),
        (
            "Basic, wrong token",
            from(&lab, "127.0.0.32")
                .get(format!("{api1}/provision/{yl_file}"))
                .basic_auth(yl_mac, Some(&wrong)),
        ),
        (
            "Basic, not a MAC",
            from(&lab, "127.0.0.32")
                .get(format!("{api1}/provision/{yl_file}"))
                .basic_auth("admin", Some(yl_token)),
        ),
        (
            "Basic, malformed header",
            from(&lab, "127.0.0.32")
                .get(format!("{api1}/provision/{yl_file}"))
                .header("authorization", "Basic !!!"),
        ),
        (
            "another brand's file",
            from(&lab, "127.0.0.33").get(format!("{api1}/provision/{yl_token}/cfg{yl_mac}.xml")),
        ),
        (
            "a brand's common file",
            from(&lab, "127.0.0.33").get(format!("{api1}/provision/{yl_token}/y000000000044.cfg")),
        ),
    ];
    let mut answers = Vec::new();
    for (what, req) in cases {
        let (status, ct, body) = fetch(req).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
        assert!(!body.contains(&secrets[0]), "{what}");
        answers.push((what, ct, body));
    }
    for (what, ct, body) in &answers[1..] {
        assert_eq!(
            (ct, body),
            (&answers[0].1, &answers[0].2),
            "{what} answers like {}",
            answers[0].0
        );
    }
    // No credentials at all on the Basic URL: a challenge, the same for every file.
    let resp = from(&lab, "127.0.0.34")
        .get(format!("{api1}/provision/{yl_file}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    // Four strikes from .31 and three from .32 (of five before a ban); .33 made none: an
    // authenticated phone asking for a file the PBX does not write is no guess.
    let (status, _, _) =
        fetch(from(&lab, "127.0.0.33").get(format!("{api1}/provision/{yl_token}/{yl_file}"))).await;
    assert_eq!(status, StatusCode::OK);

    // A MAC-guessing loop from one address ends banned, cluster-wide; phones elsewhere go on.
    let guesser = from(&lab, "127.0.0.40");
    let mut refused_at = None;
    for i in 0..20u32 {
        let url = format!("{api1}/provision/{wrong}/001565{i:06x}.cfg");
        match guesser.get(url).send().await {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => {}
            _ => {
                refused_at = Some(i);
                break;
            }
        }
    }
    let refused_at = refused_at.expect("the guesser is cut off");
    assert!(refused_at <= 6, "cut off after {refused_at} guesses");
    wait_banned(&client, "127.0.0.40", Duration::from_secs(5)).await;
    let (status, _, _) =
        fetch(from(&lab, "127.0.0.41").get(format!("{api1}/provision/{yl_token}/{yl_file}"))).await;
    assert_eq!(status, StatusCode::OK, "another source is served");

    // Reprovisioning: a new token (the old one is refused) and a new secret for the extension.
    let again = call(
        &client,
        Method::POST,
        &format!("/api/v1/devices/{yl_mac}/reprovision"),
        None,
    )
    .await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    let new_token = again.1["token"].as_str().unwrap();
    assert_ne!(new_token, yl_token);
    client.sync(1).await.unwrap();
    let (status, _, _) =
        fetch(phone_net.get(format!("{api1}/provision/{yl_token}/{yl_file}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, doc) =
        fetch(phone_net.get(format!("{api1}/provision/{new_token}/{yl_file}"))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, port, secret) = account("yealink", &doc);
    assert_ne!(secret, secrets[0]);
    let sip = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(register(sip, "1001", &secret).await, 200);
    assert_ne!(register(sip, "1001", &secrets[0]).await, 200);

    // The audit log names the changes, never the secret or the token.
    let audit = client
        .get_json(0, "/api/v1/audit?limit=1000")
        .await
        .unwrap();
    let text = audit.to_string();
    assert!(text.contains("POST /api/v1/devices"), "{text}");
    assert!(text.contains("sip_secret (secret)"), "{text}");
    assert!(!text.contains(new_token) && !text.contains(&secret));
    assert!(!secrets.iter().any(|s| text.contains(s.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_devices_are_refused_by_field_and_an_import_reports_rows() {
    let (lab, client) = lab_without_pings(1, &["1001", "1002", "1003"], SECRET).await;
    create(
        &client,
        "/api/v1/devices",
        json!({"mac": "00:15:65:00:00:01", "brand": "yealink", "model": "T46U", "extension": "1001"}),
    )
    .await;
    let base =
        json!({"mac": "00:15:65:00:00:02", "brand": "snom", "model": "D785", "extension": "1002"});
    let with = |field: &str, value: Value| {
        let mut b = base.clone();
        b[field] = value;
        b
    };
    for (body, status, field) in [
        (
            with("mac", json!("00:15:65:00:00")),
            StatusCode::BAD_REQUEST,
            "mac",
        ),
        (
            with("mac", json!("01:00:5e:00:00:01")),
            StatusCode::BAD_REQUEST,
            "mac",
        ),
        (
            with("mac", json!("0015.6500.0001")),
            StatusCode::CONFLICT,
            "mac",
        ),
        (
            with("brand", json!("cisco")),
            StatusCode::BAD_REQUEST,
            "brand",
        ),
        (
            with("model", json!("D785\nx=1")),
            StatusCode::BAD_REQUEST,
            "model",
        ),
        (
            with("extension", json!("1999")),
            StatusCode::BAD_REQUEST,
            "extension",
        ),
        (
            with("label", json!("a\nb")),
            StatusCode::BAD_REQUEST,
            "label",
        ),
        (
            with("label", json!("x".repeat(65))),
            StatusCode::BAD_REQUEST,
            "label",
        ),
        (
            with("line_keys", json!(["1003", "1003"])),
            StatusCode::BAD_REQUEST,
            "line_keys[1]",
        ),
        (
            with("line_keys", json!(["1998"])),
            StatusCode::BAD_REQUEST,
            "line_keys[0]",
        ),
        (
            with(
                "line_keys",
                json!((0..33).map(|i| format!("2{i:03}")).collect::<Vec<_>>()),
            ),
            StatusCode::BAD_REQUEST,
            "line_keys",
        ),
        (with("extra", json!(1)), StatusCode::BAD_REQUEST, "extra"),
    ] {
        let got = call(&client, Method::POST, "/api/v1/devices", Some(body.clone())).await;
        expect_error(&got, status, &[field]);
    }
    let list = client.get_json(0, "/api/v1/devices").await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Update: a new label and keys; moving to another extension gives it the device's secret.
    let (s, d) = call(
        &client,
        Method::PATCH,
        "/api/v1/devices/001565000001",
        Some(json!({"label": "Lobby", "line_keys": ["1002"], "extension": "1003"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        (d["label"].as_str(), d["extension"].as_str()),
        (Some("Lobby"), Some("1003"))
    );
    assert_eq!(d["secret_current"], json!(true));
    // An admin who sets the extension's secret by hand leaves the device's file stale: shown.
    let (s, _) = call(
        &client,
        Method::PATCH,
        "/api/v1/extensions/1003",
        Some(json!({"regenerate_secret": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let d = client
        .get_json(0, "/api/v1/devices/00-15-65-00-00-01")
        .await
        .unwrap();
    assert_eq!(d["secret_current"], json!(false), "{d}");

    // Import: good rows created with their tokens, bad ones reported by row and field.
    let csv = "mac,brand,model,extension,label\n\
               00:15:65:00:00:10,grandstream,GRP2614,1002,Desk 1\n\
               00:15:65:00:00:11,cisco,7960,1002,\n\
               00:15:65:00:00:01,snom,D785,1002,\n\
               00:15:65:00:00:12,fanvil,X4U,1999,\n\
               00:15:65:00:00:13,polycom,VVX450,1001,\"two\nlines\"\n\
               00:15:65:00:00:14,polycom,VVX450,1001,\n";
    let resp = client
        .req(0, Method::POST, "/api/v1/devices/import")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["created"], json!(2), "{report}");
    let rows: Vec<(u64, Value)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["field"].clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (3, json!("brand")),
            (4, json!("mac")),
            (5, json!("extension")),
            (6, json!("label")),
        ],
        "{report}"
    );
    let tokens: Vec<&str> = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 2);
    let (status, _, doc) = fetch(from(&lab, "127.0.0.1").get(format!(
        "{}/provision/{}/cfg001565000010.xml",
        lab.nodes[0].api_url(),
        tokens[0]
    )))
    .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(doc.contains("<P35>1002</P35>"));

    // Provisioning settings: TLS (with SRTP) in every file from now on; bad values name the field.
    let (s, body) = call(
        &client,
        Method::PUT,
        "/api/v1/provisioning/settings",
        Some(json!({"transport": "tls", "ntp_server": "ntp.example.org", "allowed_networks": ["127.0.0.0/8"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, _, doc) = fetch(from(&lab, "127.0.0.1").get(format!(
        "{}/provision/{}/cfg001565000010.xml",
        lab.nodes[0].api_url(),
        tokens[0]
    )))
    .await;
    assert!(
        doc.contains(&format!(
            "<P47>127.0.0.1:{}</P47>",
            lab.nodes[0].sip_tls_port
        )),
        "{doc}"
    );
    assert!(doc.contains("<P130>2</P130>") && doc.contains("<P30>ntp.example.org</P30>"));
    for (body, field) in [
        (json!({"transport": "sctp"}), "transport"),
        (
            json!({"allowed_networks": ["10.0.0.0/33"]}),
            "allowed_networks[0]",
        ),
        (json!({"ntp_server": "a b"}), "ntp_server"),
    ] {
        let got = call(
            &client,
            Method::PUT,
            "/api/v1/provisioning/settings",
            Some(body),
        )
        .await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }
    // Firmware for the Grandstream's model: named in its file, served to it with its token.
    let image: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let api0 = lab.nodes[0].api_url();
    let upload = |name: &str| {
        client
            .req(
                0,
                Method::PUT,
                &format!("/api/v1/firmware/grandstream/GRP2614?name={name}"),
            )
            .body(image.clone())
    };
    let resp = upload("grp2614fw.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let fw: Value = resp.json().await.unwrap();
    assert_eq!(fw["size"], json!(image.len()));
    let (_, _, doc) = fetch(from(&lab, "127.0.0.1").get(format!(
        "{api0}/provision/{}/cfg001565000010.xml",
        tokens[0]
    )))
    .await;
    let fw_dir = format!(
        "127.0.0.1:{}/provision/{}/firmware/001565000010",
        lab.nodes[0].api_port, tokens[0]
    );
    assert!(doc.contains(&format!("<P192>{fw_dir}</P192>")), "{doc}");
    let got = from(&lab, "127.0.0.1")
        .get(format!("https://{fw_dir}/grp2614fw.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), image.as_slice());
    // With Basic too; another name, another device's token: the same 404.
    let basic = from(&lab, "127.0.0.1")
        .get(format!(
            "{api0}/provision/firmware/001565000010/grp2614fw.bin"
        ))
        .basic_auth("001565000010", Some(tokens[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    for url in [
        format!("https://{fw_dir}/other.bin"),
        format!(
            "{api0}/provision/{}/firmware/001565000010/grp2614fw.bin",
            tokens[1]
        ),
    ] {
        let r = from(&lab, "127.0.0.1").get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let d = client
        .get_json(0, "/api/v1/devices/001565000010")
        .await
        .unwrap();
    assert_eq!(d["last_firmware"]["file"], json!("grp2614fw.bin"), "{d}");
    // Uploading again replaces the image; deleting it takes it out of the files.
    let resp = upload("grp2614fw-2.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let list = client.get_json(0, "/api/v1/firmware").await.unwrap();
    assert_eq!(list["firmware"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["firmware"][0]["file_name"], json!("grp2614fw-2.bin"));
    let bad = call(
        &client,
        Method::PUT,
        "/api/v1/firmware/cisco/7960?name=x.bin",
        None,
    )
    .await;
    expect_error(&bad, StatusCode::BAD_REQUEST, &["brand"]);
    let (s, _) = call(
        &client,
        Method::DELETE,
        "/api/v1/firmware/grandstream/GRP2614",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, doc) = fetch(from(&lab, "127.0.0.1").get(format!(
        "{api0}/provision/{}/cfg001565000010.xml",
        tokens[0]
    )))
    .await;
    assert!(!doc.contains("<P192>"), "{doc}");

    // Deleting the extension deletes its devices.
    let (s, _) = call(&client, Method::DELETE, "/api/v1/extensions/1002", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let got = call(&client, Method::GET, "/api/v1/devices/001565000010", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["does not exist"]);
    let (s, _) = call(
        &client,
        Method::DELETE,
        "/api/v1/devices/001565000001",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// How many provisioning files per second a node serves (each download recorded through Raft),
/// as 1,000 phones booting at once would ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_phones_booting_at_once_are_each_served_their_file() {
    const PHONES: usize = 1000;
    let numbers: Vec<String> = (0..PHONES).map(|i| format!("{}", 20_000 + i)).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let (lab, client) = lab_without_pings(3, &refs[..1], SECRET).await;
    // Extensions by import (one entry per 500), then devices by import.
    let mut ext_csv = String::from("number,display_name\n");
    for n in &numbers[1..] {
        ext_csv.push_str(&format!("{n},Phone {n}\n"));
    }
    let client = client.with_timeout(Duration::from_secs(300));
    let resp = client
        .req(0, Method::POST, "/api/v1/extensions/import")
        .header("content-type", "text/csv")
        .body(ext_csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut csv = String::from("mac,brand,model,extension\n");
    for (i, n) in numbers.iter().enumerate() {
        csv.push_str(&format!(
            "00:15:65:01:{:02x}:{:02x},yealink,T54W,{n}\n",
            i / 256,
            i % 256
        ));
    }
    let resp = client
        .req(0, Method::POST, "/api/v1/devices/import")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["created"], json!(PHONES), "{}", report["errors"]);
    let urls: Vec<String> = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["urls"]["with_token"].as_str().unwrap().to_owned())
        .collect();
    client.sync(1).await.unwrap();
    let api0 = lab.nodes[0].api_url();
    let api1 = lab.nodes[1].api_url();
    let http = from(&lab, "127.0.0.1");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for (i, url) in urls.into_iter().enumerate() {
        // Spread over two nodes, as phones behind the VIP and any node would be.
        let url = if i % 2 == 0 {
            url
        } else {
            url.replace(&api0, &api1)
        };
        let (http, sem) = (http.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let r = http
                .get(url)
                .header("user-agent", "Yealink SIP-T54W 96.86.0.70")
                .send()
                .await
                .unwrap();
            let ok = r.status() == StatusCode::OK;
            let body = r.text().await.unwrap();
            ok && body.contains("account.1.password = ")
        });
    }
    let mut served = 0;
    while let Some(ok) = tasks.join_next().await {
        served += usize::from(ok.unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(served, PHONES);
    println!(
        "BENCH provisioning: {PHONES} phones' files served (64 at once, two nodes, each download recorded through Raft) in {} ms: {:.0} requests/s",
        elapsed.as_millis(),
        PHONES as f64 / elapsed.as_secs_f64()
    );
}

/// A Yealink file's `key = value` lines (the version header and comments left out), each key once.
fn yealink_keys(doc: &str) -> BTreeMap<&str, &str> {
    let mut keys = BTreeMap::new();
    for line in doc.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("not a key line: {line:?}"));
        assert!(keys.insert(key, value).is_none(), "{key} twice");
    }
    keys
}

/// The baresip account line for a Yealink file's first account, from the file's values alone: user
/// name, auth name, password, SIP server, port and transport.
fn baresip_account(keys: &BTreeMap<&str, &str>) -> String {
    let key = |k: &str| *keys.get(k).unwrap_or_else(|| panic!("{k} not in {keys:?}"));
    assert_eq!(key("account.1.enable"), "1");
    // Yealink's codes: 0 UDP, 1 TCP, 2 TLS (3 DNS-NAPTR is never written).
    let transport = match key("account.1.sip_server.1.transport_type") {
        "0" => "udp",
        "1" => "tcp",
        "2" => "tls",
        other => panic!("transport type {other}"),
    };
    // SDES-SRTP comes with TLS only; the lab's policy is UDP, so these phones need no srtp module.
    assert_eq!(key("account.1.srtp_encryption"), "0");
    format!(
        "<sip:{}@{}:{};transport={transport}>;auth_user={};auth_pass={}",
        key("account.1.user_name"),
        key("account.1.sip_server.1.address"),
        key("account.1.sip_server.1.port"),
        key("account.1.auth_name"),
        key("account.1.password"),
    )
}

/// A baresip on a free port of `ip` with the one account line `account`.
fn baresip_at(ip: &str, account: &str, hz: u32, quit_after: u32, commands: &[&str]) -> Baresip {
    let listen = format!("{ip}:{}", free_sip_port());
    Baresip::start(&listen, "", account, hz, quit_after, commands)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baresip_phone_set_up_from_its_provisioning_file_registers_and_calls() {
    let (lab, client) = lab_without_pings(1, &["2001", "2002"], SECRET).await;
    let phone_net = from(&lab, "127.0.0.1");

    // Two Yealinks; each fetches its file as it would at boot: its token URL, its User-Agent. The
    // devices gave their extensions new generated secrets, which only the files carry.
    let mut files = Vec::new();
    for (mac, ext) in [("001565ccdd01", "2001"), ("001565ccdd02", "2002")] {
        let body = json!({"mac": mac, "brand": "yealink", "model": "T54W", "extension": ext});
        let d = create(&client, "/api/v1/devices", body).await;
        let url = d["urls"]["with_token"].as_str().unwrap();
        assert!(url.ends_with(&format!("/{mac}.cfg")), "{url}");
        let (status, _, doc) = fetch(
            phone_net
                .get(url)
                .header("user-agent", format!("Yealink SIP-T54W 96.86.0.70 {mac}")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert!(doc.starts_with("#!version:1.0.0.1\n"), "{doc}");
        assert!(!doc.contains(SECRET), "the extension's old secret: {doc}");
        files.push(doc);
    }
    let keys: Vec<_> = files.iter().map(|f| yealink_keys(f)).collect();
    let accounts: Vec<String> = keys.iter().map(baresip_account).collect();
    assert_eq!(keys[0]["account.1.user_name"], "2001");
    assert_eq!(keys[1]["account.1.user_name"], "2002");

    // The control: 2001's line with its password changed in one character does not register. It
    // runs from another address: baresip answers each fresh challenge again, and the failed
    // digests soon get its source banned.
    let mut wrong = keys[0].clone();
    let mut pass = wrong["account.1.password"].to_owned();
    let last = pass.pop().unwrap();
    pass.push(if last == 'x' { 'y' } else { 'x' });
    wrong.insert("account.1.password", &pass);
    let mut impostor = baresip_at("127.0.0.3", &baresip_account(&wrong), 440, 20, &[]);
    // Refused after answering the challenge: a second 401, never a 200.
    let deadline = Instant::now() + Duration::from_secs(10);
    while impostor.log().matches("SIP/2.0 401 Unauthorized").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "not refused:\n{}",
            impostor.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !impostor.log().contains("SIP/2.0 200 OK"),
        "{}",
        impostor.log()
    );
    let regs = client
        .get_json(0, "/api/v1/extensions/2001/registrations")
        .await
        .unwrap();
    assert_eq!(regs["registrations"], json!([]), "{regs}");
    impostor.stop();

    // 2002 answers by itself (a local setting, as a user picking up); 2001 dials 2002 at start
    // and hangs up as it quits after 8 s.
    let mut callee = baresip_at(
        "127.0.0.1",
        &format!("{};answermode=auto", accounts[1]),
        440,
        30,
        &[],
    );
    wait_registered(&client, "2002").await;
    let mut caller = baresip_at("127.0.0.1", &accounts[0], 880, 8, &["/dial 2002"]);
    wait_registered(&client, "2001").await;
    for ext in ["2001", "2002"] {
        let regs = client
            .get_json(0, &format!("/api/v1/extensions/{ext}/registrations"))
            .await
            .unwrap();
        let reg = &regs["registrations"][0];
        assert!(
            reg["user_agent"].as_str().unwrap().contains("baresip"),
            "{regs}"
        );
        assert_eq!(reg["transport"], json!("udp"), "{regs}");
    }

    // The call comes up and audio flows.
    assert!(
        calls_reach(&client, 1, Duration::from_secs(15)).await,
        "no call came up:\n{}\n{}\n{}",
        caller.log(),
        callee.log(),
        lab.log_tail(0)
    );
    assert!(
        caller.quits_within(Duration::from_secs(15)).await,
        "the caller did not quit"
    );
    let cdr = wait_first_cdr(&client, 0).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(
        (&cdr["caller"], &cdr["callee"]),
        (&json!("2001"), &json!("2002")),
        "{cdr}"
    );
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    callee.stop();
    let heard = |b: &Baresip| -> usize { b.recordings().iter().map(|p| loud_samples(p)).sum() };
    let (by_caller, by_callee) = (heard(&caller), heard(&callee));
    assert!(
        by_caller > 8000,
        "the caller heard {by_caller} loud samples"
    );
    assert!(
        by_callee > 8000,
        "the callee heard {by_callee} loud samples"
    );
}
