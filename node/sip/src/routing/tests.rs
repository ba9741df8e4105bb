//! The rules of the module documentation, one test per rule, asserting on what `select` returns.

use super::*;

fn route(name: &str, patterns: &[&str], class: RouteClass) -> OutboundSpec {
    OutboundSpec {
        name: name.into(),
        patterns: patterns.iter().map(|p| (*p).into()).collect(),
        strip: 0,
        prepend: String::new(),
        class,
        trunks: vec![format!("{name}-trunk")],
        caller_id: None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).into()).collect()
}

fn allow(routes: &[&str], countries: &[&str]) -> Permission {
    Permission {
        routes: strings(routes),
        international_prefixes: strings(countries),
    }
}

fn table(routes: &[OutboundSpec]) -> OutboundTable {
    OutboundTable::build(routes, &strings(&["112", "911"])).unwrap()
}

/// The route name and sent number of a `Route` selection, for short assertions.
fn chosen<'a>(s: &'a Selection<'_>) -> Option<(&'a str, &'a str)> {
    match s {
        Selection::Route { name, sent, .. } => Some((name, sent)),
        _ => None,
    }
}

/// A typical table: local, long distance, international with a 00 access code stripped.
fn uk_table() -> OutboundTable {
    let mut intl = route("intl", &["00Z."], RouteClass::International);
    intl.strip = 2;
    intl.prepend = "+".into();
    let mut national = route("national", &["0[1-9]XXXXXXXXX"], RouteClass::LongDistance);
    national.strip = 1;
    national.prepend = "+44".into();
    national.caller_id = Some("+442071234567".into());
    table(&[
        route("local", &["NXXXXXX"], RouteClass::Local),
        national,
        intl,
        route("catchall", &["X."], RouteClass::Local),
    ])
}

#[test]
fn route_class_names_round_trip() {
    for class in RouteClass::ALL {
        assert_eq!(RouteClass::parse(class.as_str()), Some(class));
        assert_eq!(class.to_string(), class.as_str());
    }
    assert_eq!(
        RouteClass::parse("long_distance"),
        Some(RouteClass::LongDistance)
    );
    assert_eq!(RouteClass::parse("Local"), None);
    assert_eq!(RouteClass::parse(""), None);
}

#[test]
fn routes_are_tried_in_list_order_and_the_first_allowed_match_wins() {
    let t = table(&[
        route("first", &["9XXX"], RouteClass::Local),
        route("second", &["9.", "8."], RouteClass::Local),
    ]);
    let everyone = allow(&["first", "second"], &[]);
    assert_eq!(
        chosen(&t.select("9123", &everyone)),
        Some(("first", "9123"))
    );
    // Any one pattern of a route is enough.
    assert_eq!(
        chosen(&t.select("91234", &everyone)),
        Some(("second", "91234"))
    );
    assert_eq!(chosen(&t.select("8", &everyone)), None);
    assert_eq!(chosen(&t.select("81", &everyone)), Some(("second", "81")));
    assert_eq!(t.select("7123", &everyone), Selection::NoRoute);
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
}

#[test]
fn a_selection_carries_trunks_class_and_caller_id() {
    let t = uk_table();
    let p = allow(&["national"], &[]);
    assert_eq!(
        t.select("02079460000", &p),
        Selection::Route {
            name: "national",
            sent: "+442079460000".into(),
            trunks: &["national-trunk".to_owned()],
            class: RouteClass::LongDistance,
            emergency: false,
            caller_id: Some("+442071234567"),
        }
    );
}

#[test]
fn strip_and_prepend_make_the_sent_number() {
    let t = uk_table();
    let p = allow(&["local", "national", "intl"], &["49"]);
    assert_eq!(chosen(&t.select("5551234", &p)), Some(("local", "5551234")));
    assert_eq!(
        chosen(&t.select("004930123456", &p)),
        Some(("intl", "+4930123456"))
    );
}

#[test]
fn a_route_that_would_send_nothing_is_passed_over() {
    let mut strip_all = route("strip-all", &["9X"], RouteClass::Local);
    strip_all.strip = 2;
    let t = table(&[strip_all, route("next", &["9X"], RouteClass::Local)]);
    let p = allow(&["strip-all", "next"], &[]);
    assert_eq!(chosen(&t.select("91", &p)), Some(("next", "91")));
}

#[test]
fn a_route_without_trunks_is_passed_over() {
    let mut empty = route("empty", &["X."], RouteClass::Local);
    empty.trunks.clear();
    let t = table(&[empty, route("backup", &["X."], RouteClass::Local)]);
    let p = allow(&["empty", "backup"], &[]);
    assert_eq!(chosen(&t.select("123", &p)), Some(("backup", "123")));
    let only_empty = allow(&["empty"], &[]);
    assert_eq!(
        t.select("123", &only_empty),
        Selection::Denied(Denial::NotPermitted {
            route: "backup".into()
        })
    );
}

#[test]
fn a_route_not_permitted_is_skipped_for_a_later_one() {
    let t = uk_table();
    // "local" matches first but is not allowed; "catchall" is.
    let p = allow(&["catchall"], &[]);
    assert_eq!(
        chosen(&t.select("5551234", &p)),
        Some(("catchall", "5551234"))
    );
}

#[test]
fn when_nothing_is_allowed_the_first_denial_is_the_answer() {
    let t = uk_table();
    let nobody = Permission::default();
    let denied = t.select("5551234", &nobody);
    assert_eq!(
        denied,
        Selection::Denied(Denial::NotPermitted {
            route: "local".into()
        })
    );
    let Selection::Denied(denial) = denied else {
        unreachable!()
    };
    assert_eq!(denial.to_string(), "route 'local' not permitted");
    assert_eq!(denial.route(), "local");
    assert_eq!(denial.sip_status(), 403);
}

#[test]
fn international_numbers_need_an_allowed_country_code_after_strip() {
    let t = uk_table();
    let p = allow(&["intl"], &["44", "+1", ""]);
    assert_eq!(
        chosen(&t.select("0014155550100", &p)),
        Some(("intl", "+14155550100"))
    );
    assert_eq!(
        chosen(&t.select("00441234567", &p)),
        Some(("intl", "+441234567"))
    );
    // The empty prefix allows nothing.
    let Selection::Denied(denial) = t.select("00882123456", &p) else {
        panic!("expected a denial");
    };
    assert_eq!(
        denial,
        Denial::CountryNotAllowed {
            route: "intl".into(),
            number: "882123456".into()
        }
    );
    assert_eq!(denial.to_string(), "country code of 882... not allowed");
    assert_eq!(denial.route(), "intl");
}

#[test]
fn the_country_check_ignores_a_leading_plus_in_the_number() {
    let t = table(&[route("e164", &["+Z."], RouteClass::International)]);
    let p = allow(&["e164"], &["44"]);
    assert_eq!(chosen(&t.select("+4420", &p)), Some(("e164", "+4420")));
    assert!(matches!(
        t.select("+3312", &p),
        Selection::Denied(Denial::CountryNotAllowed { number, .. }) if number == "3312"
    ));
}

#[test]
fn a_short_international_number_is_shown_whole_in_the_reason() {
    let t = table(&[route("e164", &["+Z."], RouteClass::International)]);
    let Selection::Denied(denial) = t.select("+33", &allow(&["e164"], &["44"])) else {
        panic!("expected a denial");
    };
    assert_eq!(denial.to_string(), "country code of 33... not allowed");
}

#[test]
fn a_country_denial_is_skipped_for_a_later_allowed_route() {
    let mut intl = route("intl", &["00Z."], RouteClass::International);
    intl.strip = 2;
    let t = table(&[
        intl,
        route("premium", &["00."], RouteClass::International),
        route("any", &["X."], RouteClass::Local),
    ]);
    // Not "premium" (not permitted) but "any" (no country check for a local route).
    let p = allow(&["intl", "any"], &["44"]);
    assert_eq!(chosen(&t.select("0033123", &p)), Some(("any", "0033123")));
    // Without "any": the first denial seen is the country one, not premium's.
    let p = allow(&["intl"], &["44"]);
    assert_eq!(
        t.select("0033123", &p),
        Selection::Denied(Denial::CountryNotAllowed {
            route: "intl".into(),
            number: "33123".into()
        })
    );
    // The same country check applies to every international route with its own strip: premium
    // strips nothing, so its international number starts with 00.
    let p = allow(&["premium"], &["00"]);
    assert_eq!(
        chosen(&t.select("0033123", &p)),
        Some(("premium", "0033123"))
    );
}

#[test]
fn local_and_long_distance_routes_do_not_check_the_country() {
    let t = uk_table();
    let p = allow(&["local", "national"], &[]);
    assert!(chosen(&t.select("5551234", &p)).is_some());
    assert!(chosen(&t.select("02079460000", &p)).is_some());
}

#[test]
fn emergency_numbers_bypass_permission() {
    let t = table(&[
        route("intl", &["00Z."], RouteClass::International),
        route("emergency", &["112", "911"], RouteClass::Local),
        route("any", &["X."], RouteClass::Local),
    ]);
    let nobody = Permission::default();
    assert_eq!(
        t.select("112", &nobody),
        Selection::Route {
            name: "emergency",
            sent: "112".into(),
            trunks: &["emergency-trunk".to_owned()],
            class: RouteClass::Local,
            emergency: true,
            caller_id: None,
        }
    );
    // Not an emergency number: the permission applies again.
    assert_eq!(
        t.select("113", &nobody),
        Selection::Denied(Denial::NotPermitted {
            route: "any".into()
        })
    );
    // Emergency numbers match exactly, not as a prefix.
    assert!(matches!(
        t.select("1120", &allow(&["any"], &[])),
        Selection::Route {
            emergency: false,
            ..
        }
    ));
}

#[test]
fn emergency_skips_the_country_check_too() {
    let t = table(&[route("intl", &["9.", "X."], RouteClass::International)]);
    assert!(matches!(
        t.select("911", &Permission::default()),
        Selection::Route {
            name: "intl",
            emergency: true,
            ..
        }
    ));
}

#[test]
fn an_emergency_number_no_route_matches_has_no_route() {
    let t = table(&[route("local", &["NXXXXXX"], RouteClass::Local)]);
    assert_eq!(t.select("112", &allow(&["local"], &[])), Selection::NoRoute);
}

#[test]
fn oversized_and_undialable_numbers_have_no_route() {
    let t = table(&[route("any", &["X.", "+."], RouteClass::Local)]);
    let p = allow(&["any"], &[]);
    assert_eq!(
        t.select(&"1".repeat(MAX_NUMBER_LEN + 1), &p),
        Selection::NoRoute
    );
    assert!(chosen(&t.select(&"1".repeat(MAX_NUMBER_LEN), &p)).is_some());
    assert_eq!(t.select("", &p), Selection::NoRoute);
    assert_eq!(t.select("12a", &p), Selection::NoRoute);
    assert_eq!(t.select("1\r\n", &p), Selection::NoRoute);
}

#[test]
fn a_thousand_routes_select_the_last_one() {
    let routes: Vec<OutboundSpec> = (0..1_000)
        .map(|i| {
            route(
                &format!("r{i}"),
                &[&format!("9{i:03}XX")],
                RouteClass::Local,
            )
        })
        .collect();
    let t = OutboundTable::build(&routes, &[]).unwrap();
    let p = allow(&["r999"], &[]);
    assert_eq!(chosen(&t.select("999912", &p)), Some(("r999", "999912")));
    assert_eq!(
        t.select("999912", &Permission::default()),
        Selection::Denied(Denial::NotPermitted {
            route: "r999".into()
        })
    );
}

#[test]
fn outbound_build_errors_name_the_field() {
    let good = route("good", &["X."], RouteClass::Local);
    let build = |specs: &[OutboundSpec]| OutboundTable::build(specs, &[]).unwrap_err();

    let bad_pattern = route("bad", &["9X", "9N.X"], RouteClass::Local);
    let e = build(&[good.clone(), bad_pattern]);
    assert_eq!(
        e,
        RouteError::Pattern {
            route: 1,
            name: "bad".into(),
            pattern: 1,
            error: PatternError {
                position: 3,
                reason: "'.' may only end a pattern"
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "routes[1] ('bad').patterns[1]: '.' may only end a pattern at position 3"
    );

    assert_eq!(
        build(&[route("none", &[], RouteClass::Local)]),
        RouteError::NoPatterns {
            route: 0,
            name: "none".into()
        }
    );
    assert_eq!(
        build(&[good.clone(), good.clone()]),
        RouteError::DuplicateName {
            route: 1,
            name: "good".into(),
            first: 0
        }
    );
    for (name, reason) in [
        ("", "empty name"),
        ("a\r\nb", "control character in name"),
        (&*"n".repeat(MAX_NAME_LEN + 1), "name too long"),
    ] {
        assert_eq!(
            build(&[route(name, &["X"], RouteClass::Local)]),
            RouteError::Name { route: 0, reason },
            "{name:?}"
        );
    }

    let mut strip = good.clone();
    strip.strip = MAX_NUMBER_LEN;
    assert!(matches!(
        build(&[strip]),
        RouteError::Strip { route: 0, .. }
    ));

    let mut prepend = good.clone();
    prepend.prepend = "+1 ".into();
    let e = build(&[prepend]);
    assert!(matches!(
        &e,
        RouteError::Prepend { route: 0, error, .. } if error.position == 3
    ));
    let mut long_prepend = good.clone();
    long_prepend.prepend = "1".repeat(MAX_NUMBER_LEN + 1);
    assert!(matches!(
        build(&[long_prepend]),
        RouteError::Prepend { error, .. } if error.position == MAX_NUMBER_LEN + 1
    ));

    let mut caller_id = good;
    caller_id.caller_id = Some("44+1".into());
    assert!(matches!(
        build(&[caller_id]),
        RouteError::CallerIdNumber { error, .. }
            if error.position == 3 && error.reason == "'+' only at the start"
    ));
}

#[test]
fn emergency_numbers_are_checked() {
    let good = [route("good", &["X."], RouteClass::Local)];
    assert_eq!(
        OutboundTable::build(&good, &strings(&["112", "11a"])).unwrap_err(),
        RouteError::Emergency {
            index: 1,
            error: PatternError {
                position: 3,
                reason: "only digits, '*', '#' and '+'"
            }
        }
    );
    assert!(matches!(
        OutboundTable::build(&good, &strings(&[""])).unwrap_err(),
        RouteError::Emergency { index: 0, error } if error.position == 1
    ));
    assert!(OutboundTable::build(&[], &[]).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

fn inbound(name: &str, did: DidMatch, caller_id: Option<&str>) -> InboundSpec<String> {
    InboundSpec {
        name: name.into(),
        did,
        caller_id: caller_id.map(Into::into),
        destination: format!("to-{name}"),
    }
}

fn exact(did: &str) -> DidMatch {
    DidMatch::Exact(did.into())
}

fn prefix(did: &str) -> DidMatch {
    DidMatch::Prefix(did.into())
}

fn pattern(did: &str) -> DidMatch {
    DidMatch::Pattern(did.into())
}

/// The name of the route `select` picks.
fn pick<'a>(t: &'a InboundTable<String>, did: &str, caller: Option<&str>) -> Option<&'a str> {
    t.select(did, caller).map(|r| r.name.as_str())
}

#[test]
fn inbound_tiers_exact_then_longest_prefix_then_patterns() {
    let t = InboundTable::build(vec![
        inbound("pattern", pattern("4930XXXX"), None),
        inbound("short", prefix("49"), None),
        inbound("long", prefix("4930"), None),
        inbound("exact", exact("49301234"), None),
        inbound("plus", exact("+49301234"), None),
    ])
    .unwrap();
    assert_eq!(pick(&t, "49301234", None), Some("exact"));
    assert_eq!(pick(&t, "49305678", None), Some("long"));
    assert_eq!(pick(&t, "4940", None), Some("short"));
    assert_eq!(pick(&t, "4930", None), Some("long"));
    // No leading-plus normalisation: DIDs match as written.
    assert_eq!(pick(&t, "+49301234", None), Some("plus"));
    assert_eq!(pick(&t, "+49301235", None), None);
    assert_eq!(pick(&t, "3312", None), None);
    assert_eq!(
        t.select("49301234", None).map(|r| r.destination.as_str()),
        Some("to-exact")
    );
    assert_eq!(t.len(), 5);
}

#[test]
fn inbound_patterns_are_tried_in_list_order() {
    let t = InboundTable::build(vec![
        inbound("first", pattern("49X."), None),
        inbound("second", pattern("4930XXXX"), None),
    ])
    .unwrap();
    assert_eq!(pick(&t, "49301234", None), Some("first"));
    assert_eq!(pick(&t, "4", None), None);
}

#[test]
fn a_matching_caller_id_beats_no_condition_within_a_tier() {
    let t = InboundTable::build(vec![
        inbound("anyone", exact("100"), None),
        inbound("boss", exact("100"), Some("+4930555X")),
        inbound("any-pattern", pattern("2XX"), None),
        inbound("vip-pattern", pattern("2."), Some("0800X.")),
    ])
    .unwrap();
    // The conditional route wins even when listed after the open one.
    assert_eq!(pick(&t, "100", Some("+49305551")), Some("boss"));
    assert_eq!(pick(&t, "100", Some("+49305")), Some("anyone"));
    assert_eq!(pick(&t, "200", Some("080012")), Some("vip-pattern"));
    assert_eq!(pick(&t, "200", Some("09001")), Some("any-pattern"));
    assert_eq!(pick(&t, "20", Some("09001")), None);
}

#[test]
fn caller_id_preference_holds_in_pattern_and_prefix_tiers() {
    let t = InboundTable::build(vec![
        inbound("open", pattern("3XX"), None),
        inbound("vip", pattern("3XX"), Some("555X")),
        inbound("open-prefix", prefix("7"), None),
        inbound("vip-prefix", prefix("7"), Some("555X")),
    ])
    .unwrap();
    assert_eq!(pick(&t, "300", Some("5551")), Some("vip"));
    assert_eq!(pick(&t, "300", Some("6661")), Some("open"));
    assert_eq!(pick(&t, "71", Some("5551")), Some("vip-prefix"));
    assert_eq!(pick(&t, "71", Some("6661")), Some("open-prefix"));
}

#[test]
fn a_more_specific_did_beats_a_caller_id_match() {
    let t = InboundTable::build(vec![
        inbound("vip-short", prefix("49"), Some("555X")),
        inbound("long", prefix("4930"), None),
        inbound("vip-pattern", pattern("X."), Some("555X")),
        inbound("exact", exact("4931"), None),
    ])
    .unwrap();
    assert_eq!(pick(&t, "49301", Some("5551")), Some("long"));
    assert_eq!(pick(&t, "4931", Some("5551")), Some("exact"));
    assert_eq!(pick(&t, "4940", Some("5551")), Some("vip-short"));
}

#[test]
fn a_caller_id_condition_never_matches_an_anonymous_caller() {
    let t = InboundTable::build(vec![
        inbound("vip", exact("100"), Some("X.")),
        inbound("vip-prefix", prefix("10"), Some("X.")),
        inbound("fallback", pattern("1XX"), None),
    ])
    .unwrap();
    assert_eq!(pick(&t, "100", Some("123")), Some("vip"));
    // Anonymous, or a caller that is not a number: the tiers fall through to the pattern.
    assert_eq!(pick(&t, "100", None), Some("fallback"));
    assert_eq!(pick(&t, "100", Some("anonymous")), Some("fallback"));
    let only_vip = InboundTable::build(vec![inbound("vip", exact("100"), Some("X."))]).unwrap();
    assert_eq!(pick(&only_vip, "100", None), None);
}

#[test]
fn oversized_or_empty_dids_match_nothing() {
    let t = InboundTable::build(vec![
        inbound("any", prefix("1"), None),
        inbound("pattern", pattern("X."), None),
    ])
    .unwrap();
    assert_eq!(pick(&t, &"1".repeat(MAX_NUMBER_LEN + 1), None), None);
    assert_eq!(pick(&t, &"1".repeat(MAX_NUMBER_LEN), None), Some("any"));
    assert_eq!(pick(&t, "", None), None);
    assert!(InboundTable::<()>::build(Vec::new()).unwrap().is_empty());
}

#[test]
fn inbound_build_errors_say_where() {
    let build = |specs| InboundTable::build(specs).unwrap_err();
    let cases = [
        (exact("49a1"), 3, "only digits and '+'"),
        (exact(""), 1, "empty number"),
        (prefix("49+1"), 3, "'+' only at the start"),
        (prefix(&"1".repeat(33)), 33, "number too long"),
        (pattern("9N.X"), 3, "'.' may only end a pattern"),
    ];
    for (did, position, reason) in cases {
        let e = build(vec![
            inbound("ok", exact("1"), None),
            inbound("bad", did.clone(), None),
        ]);
        assert_eq!(
            e,
            RouteError::Did {
                route: 1,
                name: "bad".into(),
                error: PatternError { position, reason }
            },
            "{did:?}"
        );
    }
    let e = build(vec![inbound("cid", exact("1"), Some("5[5"))]);
    assert_eq!(
        e.to_string(),
        "routes[0] ('cid').caller_id: unclosed '[' at position 2"
    );
    assert!(matches!(e, RouteError::CallerIdPattern { route: 0, .. }));
    assert_eq!(
        build(vec![inbound("", exact("1"), None)]),
        RouteError::Name {
            route: 0,
            reason: "empty name"
        }
    );
}

#[test]
fn duplicate_did_conditions_are_refused() {
    let e = InboundTable::build(vec![
        inbound("a", exact("100"), Some("5X")),
        inbound("b", exact("100"), None),
        inbound("c", exact("100"), Some("5X")),
    ])
    .unwrap_err();
    assert_eq!(
        e,
        RouteError::DuplicateDid {
            route: 2,
            name: "c".into(),
            first: 0
        }
    );
    // The same text in different tiers is not a duplicate.
    assert!(
        InboundTable::build(vec![
            inbound("a", exact("100"), None),
            inbound("b", prefix("100"), None),
            inbound("c", pattern("100"), None),
        ])
        .is_ok()
    );
}
