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
        ["nav-cdrs", "nav-me"],
        "a user sees their own calls and account"
    );
    assert_eq!(
        ids(&principal("operator", Grants::OPERATOR)),
        [
            "nav-dashboard",
            "nav-extensions",
            "nav-cdrs",
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
        ["nav-trunks", "nav-routes", "nav-me"]
    );
    let extensions_only = Grants {
        extensions: true,
        routing: false,
        ..routing_only
    };
    assert_eq!(
        ids(&principal("helpdesk", extensions_only)),
        ["nav-extensions", "nav-ring-groups", "nav-me"]
    );
    // A custom role called "admin"-like but not admin gets no admin pages.
    let everything_but_admin = principal("superuser", Grants::ADMIN);
    let seen = ids(&everything_but_admin);
    assert!(!seen.contains(&"nav-accounts") && !seen.contains(&"nav-policy"));
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
