//! Contacts: a 10,000-row CSV with a few bad rows imported into the company phonebook on a
//! three-node cluster (exact per-row errors, search, paging, export and re-import), the phones'
//! remote phonebooks fetched with SIP credentials, who may read and change which book, and an
//! inbound call from a listed number showing the contact's name on the ringing phone.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::LabClient;
use pbx_tests::api::{
    PASSWORD, as_user, call, calls_reach, create, expect_error, inbound_to_extension,
    lab_without_pings, peer_trunk,
};
use pbx_tests::phone::{Answer, Phone};

const SECRET: &str = "Tr7!kq-Vw9zP";
const ROWS: usize = 10_000;
const HEADER: &str = "name,company,work,mobile,home,other,email";

/// Data row `i` (0-based) of the generated file: its name, company and normalised work number.
fn good(i: usize) -> (String, String, String) {
    (
        format!("Contact {i:05}"),
        format!("Company {}", i % 100),
        format!("+4930{i:07}"),
    )
}

/// The file: [`ROWS`] data rows, four of them bad (with the row a spreadsheet shows them at).
fn csv() -> (String, Vec<Value>) {
    let mut text = format!("{HEADER}\n");
    for i in 0..ROWS {
        let (name, company, _) = good(i);
        let line = match i {
            10 => format!(",{company},+49 30 {i:07},,,,"),
            500 => format!("{name},{company},12ab,,,,"),
            5000 => format!("{name},{company},+49 30 {i:07},,,,x@y.example,surplus"),
            9999 => format!("{},{company},+49 30 {i:07},,,,", "N".repeat(101)),
            // Every third contact has a mobile number and an e-mail address too.
            _ if i % 3 == 0 => {
                format!("{name},{company},+49 30 {i:07},0170 {i:07},,,c{i}@acme.example")
            }
            _ => format!("{name},{company},+49 30 {i:07},,,,"),
        };
        text.push_str(&line);
        text.push('\n');
    }
    let errors = vec![
        json!({"row": 12, "field": "name", "message": "required"}),
        json!({"row": 502, "field": "work",
               "message": "digits with an optional leading +, at most 32 characters"}),
        json!({"row": 5002, "field": null, "message": "8 columns, the header has 7"}),
        json!({"row": 10001, "field": "name", "message": "at most 100 characters"}),
    ];
    (text, errors)
}

const BAD: [usize; 4] = [10, 500, 5000, 9999];

async fn import(client: &LabClient, node: usize, path: &str, body: String) -> (StatusCode, Value) {
    let resp = client
        .req(node, Method::POST, path)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn text(req: reqwest::RequestBuilder) -> (StatusCode, String, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

/// Checks that `doc` is one well-formed element tree (every tag closed in order, attributes
/// quoted, no stray `<` or `&`) under `root`; the names of the elements, in document order.
fn elements(doc: &str, root: &str) -> Vec<String> {
    let body = doc
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("an XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        assert!(!text.contains('>'), "stray > in {text:?}");
        for amp in text.match_indices('&') {
            let entity = &text[amp.0..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & in {text:?}"
            );
        }
        let close = rest[open..].find('>').expect("a tag is closed") + open;
        let tag = &rest[open + 1..close];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "closing {name}");
        } else {
            let name = tag.split(' ').next().unwrap().to_owned();
            assert_eq!(tag[name.len()..].matches('"').count() % 2, 0, "{tag}");
            if stack.is_empty() {
                assert_eq!(name, root, "the root element");
                assert!(names.is_empty(), "one root element");
            }
            stack.push(name.clone());
            names.push(name);
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(rest.trim(), "", "text after the root");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_contacts_import_with_exact_row_errors_and_reach_the_phones() {
    let (lab, client) = lab_without_pings(3, &["1001", "1002"], SECRET).await;
    let client = client.with_timeout(Duration::from_secs(120));
    let (file, expected_errors) = csv();
    let bytes = file.len();

    // Import: the good rows are created, each bad row reported by its spreadsheet row.
    let started = Instant::now();
    let (status, report) = import(&client, 0, "/api/v1/contacts/import", file).await;
    let import_time = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], json!(ROWS - BAD.len()));
    assert_eq!(report["errors"], json!(expected_errors));
    println!(
        "BENCH contacts import: {ROWS} rows ({} KiB), {} created, {} refused, in {} ms on a 3-node lab",
        bytes / 1024,
        ROWS - BAD.len(),
        BAD.len(),
        import_time.as_millis()
    );

    // Paging by name, read through another node: offset 200 is the 201st good row.
    let good_rows: Vec<usize> = (0..ROWS).filter(|i| !BAD.contains(i)).collect();
    let page = client
        .get_json(2, "/api/v1/contacts?limit=100&offset=200")
        .await
        .unwrap();
    assert_eq!(page["total"], json!(ROWS - BAD.len()));
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = good_rows[200..300].iter().map(|&i| good(i).0).collect();
    assert_eq!(names, expected);
    let last = client
        .get_json(1, "/api/v1/contacts?limit=1000&offset=9000")
        .await
        .unwrap();
    assert_eq!(
        last["items"].as_array().unwrap().len(),
        ROWS - BAD.len() - 9000
    );

    // Search: by name, by number as people write it, by company.
    let found = client
        .get_json(0, "/api/v1/contacts?q=contact%2000042")
        .await
        .unwrap();
    assert_eq!(found["total"], json!(1));
    let ann = &found["items"][0];
    assert_eq!(ann["name"], json!("Contact 00042"));
    assert_eq!(
        ann["numbers"],
        json!([{"kind": "work", "number": "+49300000042"},
               {"kind": "mobile", "number": "01700000042"}])
    );
    assert_eq!(ann["email"], json!("c42@acme.example"));
    let by_number = client
        .get_json(0, "/api/v1/contacts?q=%2B49%2030%20000%201234")
        .await
        .unwrap();
    assert_eq!(by_number["total"], json!(1), "{by_number}");
    assert_eq!(by_number["items"][0]["name"], json!("Contact 01234"));
    let company = client
        .get_json(0, "/api/v1/contacts?q=Company%207&limit=5")
        .await
        .unwrap();
    // "Company 7" and "Company 70".."Company 79": 11 of every 100 rows (no bad row among them).
    assert_eq!(company["total"], json!(1100));
    assert_eq!(company["items"].as_array().unwrap().len(), 5);
    let bad_limit = call(&client, Method::GET, "/api/v1/contacts?limit=5000", None).await;
    expect_error(&bad_limit, StatusCode::BAD_REQUEST, &["limit"]);

    // A personal contact for 1001, listed first on its phone.
    let mum = create(
        &client,
        "/api/v1/extensions/1001/contacts",
        json!({"name": "Mum & Dad <home>", "numbers": [{"kind": "home", "number": "+44 7700 900123"}]}),
    )
    .await;
    assert_eq!(mum["numbers"][0]["number"], json!("+447700900123"));
    client.sync(1).await.unwrap();

    // The Yealink phonebook, fetched by the phone with its SIP credentials from another node.
    let yealink = || {
        lab.anon(1, Method::GET, "/phonebook/yealink.xml")
            .basic_auth("1001", Some(SECRET))
    };
    let (status, ct, doc) = text(yealink()).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(ct, "text/xml; charset=utf-8");
    let names = elements(&doc, "YealinkIPPhoneDirectory");
    assert_eq!(
        names.iter().filter(|n| *n == "DirectoryEntry").count(),
        5000,
        "at most 5,000 contacts"
    );
    assert!(doc.contains(
        "<YealinkIPPhoneDirectory>\n<DirectoryEntry><Name>Mum &amp; Dad &lt;home&gt;</Name>\
         <Telephone label=\"Home\">+447700900123</Telephone></DirectoryEntry>\n\
         <DirectoryEntry><Name>Contact 00000</Name><Telephone label=\"Work\">+49300000000</Telephone>\
         <Telephone label=\"Mobile\">01700000000</Telephone></DirectoryEntry>\n\
         <DirectoryEntry><Name>Contact 00001</Name><Telephone label=\"Work\">+49300000001</Telephone></DirectoryEntry>\n"
    ));
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _, _) = text(yealink()).await;
        assert_eq!(status, StatusCode::OK);
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "BENCH phonebook: yealink.xml with 5000 contacts ({} KiB), median {} ms of 5 fetches",
        doc.len() / 1024,
        times[2].as_millis()
    );

    // Snom: one entry per number.
    let (status, _, snom) = text(
        lab.anon(0, Method::GET, "/phonebook/snom.xml")
            .basic_auth("1001", Some(SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let names = elements(&snom, "SnomIPPhoneDirectory");
    // Mum, then the first 4,999 good rows, every third of them with a mobile number too.
    let listed: Vec<usize> = good_rows[..4999].to_vec();
    let numbers = 1 + listed.len() + listed.iter().filter(|i| *i % 3 == 0).count();
    assert_eq!(
        names.iter().filter(|n| *n == "DirectoryEntry").count(),
        numbers
    );
    assert!(snom.contains(
        "<DirectoryEntry><Name>Contact 00003 (work)</Name><Telephone>+49300000003</Telephone></DirectoryEntry>\n\
         <DirectoryEntry><Name>Contact 00003 (mobile)</Name><Telephone>01700000003</Telephone></DirectoryEntry>\n"
    ));
    // 1002 gets the company book without 1001's own contacts.
    let (_, _, other) = text(
        lab.anon(0, Method::GET, "/phonebook/grandstream.xml")
            .basic_auth("1002", Some(SECRET)),
    )
    .await;
    elements(&other, "AddressBook");
    assert!(!other.contains("Mum"));
    assert!(other.contains("<Contact><FirstName>Contact 00000</FirstName>"));

    // Wrong, unknown or missing credentials: the same 401, with a Basic challenge.
    for (user, password) in [
        ("1001", Some("wrong")),
        ("1999", Some(SECRET)),
        ("1001", None),
    ] {
        let mut req = lab.anon(0, Method::GET, "/phonebook/yealink.xml");
        if let Some(p) = password {
            req = req.basic_auth(user, Some(p));
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{user} {password:?}"
        );
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        assert!(!resp.text().await.unwrap().contains("Contact"));
    }
    let (status, _, _) = text(
        lab.anon(0, Method::GET, "/phonebook/cisco.xml")
            .basic_auth("1001", Some(SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Export, then import the export again: every contact comes back exactly as it was.
    let (status, ct, export) = text(client.req(0, Method::GET, "/api/v1/contacts/export")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/csv; charset=utf-8");
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 1 + ROWS - BAD.len());
    assert_eq!(lines[0], HEADER);
    assert_eq!(
        lines[1],
        "Contact 00000,Company 0,+49300000000,01700000000,,,c0@acme.example"
    );
    assert_eq!(lines[2], "Contact 00001,Company 1,+49300000001,,,,");
    let (status, again) = import(&client, 0, "/api/v1/contacts/import", export.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, json!({"created": ROWS - BAD.len(), "errors": []}));
    let (status, _, twice) = text(client.req(0, Method::GET, "/api/v1/contacts/export")).await;
    assert_eq!(status, StatusCode::OK, "{twice}");
    let mut doubled: Vec<&str> = lines[1..].iter().flat_map(|l| [*l, *l]).collect();
    doubled.sort_unstable();
    let mut got: Vec<&str> = twice.lines().skip(1).collect();
    got.sort_unstable();
    assert_eq!(got.len(), doubled.len(), "contacts after the re-import");
    if let Some((g, d)) = got.iter().zip(&doubled).find(|(g, d)| g != d) {
        panic!("the re-imported export differs: {g:?} where {d:?} was exported");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_read_the_company_book_and_keep_their_own() {
    let (lab, client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
    create(
        &client,
        "/api/v1/accounts",
        json!({"username": "una", "role": "user", "extension": "1001",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
    let ann = create(
        &client,
        "/api/v1/contacts",
        json!({"name": "Ann", "company": "Acme", "numbers": [{"kind": "work", "number": "030 1234"}]}),
    )
    .await;
    let id = ann["id"].as_str().unwrap().to_owned();

    // A user reads the company book but may not change it.
    let (s, list) = as_user(&lab, "una", Method::GET, "/api/v1/contacts", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], json!("Ann"));
    let body = json!({"name": "Eve", "numbers": [{"kind": "work", "number": "1"}]});
    let refused = as_user(
        &lab,
        "una",
        Method::POST,
        "/api/v1/contacts",
        Some(body.clone()),
    )
    .await;
    expect_error(&refused, StatusCode::FORBIDDEN, &[]);
    let path = format!("/api/v1/contacts/{id}");
    let refused = as_user(&lab, "una", Method::DELETE, &path, None).await;
    expect_error(&refused, StatusCode::FORBIDDEN, &[]);

    // The portal's pages: the admin's with its forms, the user's without.
    let (status, _, page) = text(client.req(0, Method::GET, "/contacts")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<strong>Ann</strong>") && page.contains("0301234 (work)"));
    assert!(page.contains("id=\"contacts-import\""));
    let as_una = |path: &str| {
        lab.anon(0, Method::GET, path)
            .basic_auth("una", Some(PASSWORD))
    };
    let (status, _, page) = text(as_una("/contacts?q=acme")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<strong>Ann</strong>") && !page.contains("id=\"contacts-import\""));

    // Their own book: add, change, delete; another extension's book is not theirs.
    let (s, mine) = as_user(
        &lab,
        "una",
        Method::POST,
        "/api/v1/extensions/1001/contacts",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{mine}");
    let mine_path = format!(
        "/api/v1/extensions/1001/contacts/{}",
        mine["id"].as_str().unwrap()
    );
    let changed = json!({"name": "Eve Smith", "email": "eve@example.org",
                         "numbers": [{"kind": "mobile", "number": "+1 (555) 010-0999"}]});
    let (s, after) = as_user(&lab, "una", Method::PUT, &mine_path, Some(changed)).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(
        after["numbers"],
        json!([{"kind": "mobile", "number": "+15550100999"}])
    );
    assert_eq!(after["created_at"], mine["created_at"]);
    let (status, _, me) = text(as_una("/me")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        me.contains("id=\"me-contacts\"") && me.contains("Eve Smith"),
        "{me}"
    );
    let (status, _, mine_page) = text(as_una("/me/contacts")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(mine_page.contains("data-api=\"POST /api/v1/extensions/1001/contacts\""));
    let theirs = as_user(
        &lab,
        "una",
        Method::GET,
        "/api/v1/extensions/1002/contacts",
        None,
    )
    .await;
    expect_error(&theirs, StatusCode::FORBIDDEN, &[]);
    let (s, _) = as_user(&lab, "una", Method::DELETE, &mine_path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let gone = as_user(&lab, "una", Method::DELETE, &mine_path, None).await;
    expect_error(&gone, StatusCode::NOT_FOUND, &["does not exist"]);

    // Bad input is a 400 naming the field; a file too large is a 413.
    for (body, field) in [
        (
            json!({"name": "", "numbers": [{"kind": "work", "number": "1"}]}),
            "name",
        ),
        (json!({"name": "A", "numbers": []}), "numbers"),
        (
            json!({"name": "A", "numbers": [{"kind": "work", "number": "1x"}]}),
            "numbers.0",
        ),
        (
            json!({"name": "A", "numbers": [{"kind": "work", "number": "1"}], "email": "no"}),
            "email",
        ),
    ] {
        let got = call(&client, Method::POST, "/api/v1/contacts", Some(body)).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }
    let huge = format!("{HEADER}\n{}", "A,,1,,,,\n".repeat(700_000));
    let (status, body) = import(&client, 0, "/api/v1/contacts/import", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = import(
        &client,
        0,
        "/api/v1/contacts/import",
        "name,fax\nA,1\n".into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("fax"), "{body}");

    // Deleting the extension deletes its personal book with it.
    create(
        &client,
        "/api/v1/extensions/1002/contacts",
        json!({"name": "Gran", "numbers": [{"kind": "home", "number": "7"}]}),
    )
    .await;
    let (s, _) = call(&client, Method::DELETE, "/api/v1/extensions/1002", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    create(
        &client,
        "/api/v1/extensions",
        json!({"number": "1002", "display_name": "New 1002", "secret": SECRET}),
    )
    .await;
    let list = client
        .get_json(0, "/api/v1/extensions/1002/contacts")
        .await
        .unwrap();
    assert_eq!(list["total"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_call_from_a_listed_number_shows_the_contacts_name() {
    let (lab, client) = lab_without_pings(1, &["1002"], SECRET).await;
    let pbx = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    let provider_ip = Ipv4Addr::new(127, 0, 0, 2);
    // The provider calls from +15550142 (in the book as written by people) and from 5550199 (not
    // in it); the scripted phone sends its number as the display name, as many carriers do.
    let mut listed = Phone::bound(IpAddr::V4(provider_ip), pbx, "+15550142", "unused")
        .await
        .unwrap();
    let mut unlisted = Phone::bound(IpAddr::V4(provider_ip), pbx, "5550199", "unused")
        .await
        .unwrap();
    for (name, phone) in [("carrier", &listed), ("carrier2", &unlisted)] {
        let trunk = peer_trunk(name, &provider_ip.to_string(), phone.sip_addr.port());
        create(&client, "/api/v1/trunks", trunk).await;
    }
    create(
        &client,
        "/api/v1/routes/inbound",
        inbound_to_extension("main", "15550100", "1002"),
    )
    .await;
    create(
        &client,
        "/api/v1/contacts",
        json!({"name": "Acme Supplies", "company": "Acme",
               "numbers": [{"kind": "work", "number": "+1 555 0142"}]}),
    )
    .await;
    client.sync(0).await.unwrap();
    let configured = Instant::now();
    let mut bob = Phone::new(pbx, "1002", SECRET).await.unwrap();
    assert_eq!(bob.register(300).await.unwrap(), 200);
    // Trunks are known by source address within a second or two of a change.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(configured.elapsed())).await;

    for (caller, shown) in [
        (&mut listed, "\"Acme Supplies\" <sip:+15550142@"),
        (&mut unlisted, "\"5550199\" <sip:5550199@"),
    ] {
        // Each call waits for the one before to have released its media.
        assert!(calls_reach(&client, 0, Duration::from_secs(10)).await);
        let wait = Duration::from_secs(5);
        let place = async {
            let out = caller.dial("15550100", None).await?;
            caller.outcome(&out, wait).await
        };
        let (rung, outcome) = tokio::join!(bob.answer(Answer::Busy, wait), place);
        let (invite, _) = rung.unwrap_or_else(|e| {
            panic!(
                "{shown}: 1002 did not ring: {e}; {outcome:?}\n{}",
                lab.log_tail(0)
            )
        });
        assert_eq!(outcome.unwrap().expect_err("busy"), 486);
        let from = invite.header("From").unwrap();
        assert!(from.starts_with(shown), "the phone shows {from:?}");
    }
}
