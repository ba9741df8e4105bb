//! RFC 3263 / RFC 2782 decisions, with the random picker injected so orders are exact.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use SipTransport::{Tcp, Tls, Udp};

fn dest(host: &str, port: Option<u16>, transport: Option<SipTransport>) -> Destination {
    Destination {
        host: host.into(),
        port,
        transport,
        secure: false,
    }
}

fn sips(host: &str, port: Option<u16>, transport: Option<SipTransport>) -> Destination {
    Destination {
        secure: true,
        ..dest(host, port, transport)
    }
}

fn naptr(order: u16, preference: u16, flags: &str, services: &str, to: &str) -> Naptr {
    Naptr {
        order,
        preference,
        flags: flags.into(),
        services: services.into(),
        replacement: to.into(),
    }
}

fn srv(priority: u16, weight: u16, target: &str) -> Srv {
    Srv {
        priority,
        weight,
        port: 5060,
        target: target.into(),
    }
}

fn names(list: &[(&str, SipTransport)]) -> Vec<(String, SipTransport)> {
    list.iter().map(|&(n, t)| (n.to_owned(), t)).collect()
}

fn targets(ordered: &[Srv]) -> Vec<&str> {
    ordered.iter().map(|r| r.target.as_str()).collect()
}

/// A picker that returns the given draws in turn and records every total it was asked for.
struct Picks {
    draws: Vec<u32>,
    totals: Vec<u32>,
}

impl Picks {
    fn new(draws: &[u32]) -> Self {
        Self {
            draws: draws.iter().rev().copied().collect(),
            totals: Vec::new(),
        }
    }

    fn pick(&mut self, total: u32) -> u32 {
        self.totals.push(total);
        self.draws.pop().unwrap_or(0)
    }
}

#[test]
fn transports_and_default_ports() {
    assert_eq!(default_port(Udp), 5060);
    assert_eq!(default_port(Tcp), 5060);
    assert_eq!(default_port(Tls), 5061);
    assert_eq!(SipTransport::from_param("tcp"), Some(Tcp));
    assert_eq!(SipTransport::from_param("TLS"), Some(Tls));
    assert_eq!(SipTransport::from_param("Udp"), Some(Udp));
    assert_eq!(SipTransport::from_param("sctp"), None);
    assert_eq!(SipTransport::from_param("ws"), None);
    assert_eq!(Tls.to_string(), "TLS");
}

#[test]
fn an_ip_literal_needs_no_dns() {
    let cases = [
        (
            dest("192.0.2.1", None, None),
            Ipv4Addr::new(192, 0, 2, 1).into(),
            5060,
            Udp,
        ),
        (
            dest("192.0.2.1", Some(5080), Some(Tcp)),
            Ipv4Addr::new(192, 0, 2, 1).into(),
            5080,
            Tcp,
        ),
        (
            sips("192.0.2.1", None, None),
            Ipv4Addr::new(192, 0, 2, 1).into(),
            5061,
            Tls,
        ),
        (
            dest("[2001:db8::1]", None, Some(Tls)),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            5061,
            Tls,
        ),
        (
            dest("2001:db8::1", Some(5062), None),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            5062,
            Udp,
        ),
    ];
    for (d, addr, port, transport) in cases {
        let expected = Plan::Ip {
            addr,
            port,
            transport,
        };
        assert_eq!(plan(&d), Ok(expected.clone()), "{d:?}");
        assert_eq!(fallback(&d), Ok(expected), "{d:?}");
    }
}

#[test]
fn an_explicit_port_means_address_records_only() {
    assert_eq!(
        plan(&dest("pbx.example.com", Some(5070), None)),
        Ok(Plan::HostPort {
            host: "pbx.example.com".into(),
            port: 5070,
            transport: Udp
        })
    );
    assert_eq!(
        plan(&dest("pbx.example.com", Some(5070), Some(Tcp))),
        Ok(Plan::HostPort {
            host: "pbx.example.com".into(),
            port: 5070,
            transport: Tcp
        })
    );
    assert_eq!(
        plan(&sips("pbx.example.com", Some(5071), None)),
        Ok(Plan::HostPort {
            host: "pbx.example.com".into(),
            port: 5071,
            transport: Tls
        })
    );
}

#[test]
fn a_transport_parameter_without_port_queries_that_srv_name() {
    let cases = [
        (
            dest("example.com", None, Some(Udp)),
            "_sip._udp.example.com",
            Udp,
        ),
        (
            dest("example.com", None, Some(Tcp)),
            "_sip._tcp.example.com",
            Tcp,
        ),
        (
            dest("example.com", None, Some(Tls)),
            "_sips._tcp.example.com",
            Tls,
        ),
        // sips: is always TLS, whatever the parameter says.
        (
            sips("example.com", None, Some(Tcp)),
            "_sips._tcp.example.com",
            Tls,
        ),
        (
            sips("example.com", None, Some(Udp)),
            "_sips._tcp.example.com",
            Tls,
        ),
    ];
    for (d, name, transport) in cases {
        assert_eq!(
            plan(&d),
            Ok(Plan::Srv {
                names: names(&[(name, transport)])
            }),
            "{d:?}"
        );
    }
}

#[test]
fn neither_transport_nor_port_queries_naptr() {
    for d in [
        dest("example.com", None, None),
        sips("example.com", None, None),
    ] {
        assert_eq!(
            plan(&d),
            Ok(Plan::Naptr {
                domain: "example.com".into()
            })
        );
    }
}

#[test]
fn the_fallback_is_address_records_at_the_default_port() {
    let cases = [
        (dest("example.com", None, None), 5060, Udp),
        (sips("example.com", None, None), 5061, Tls),
        (dest("example.com", None, Some(Tcp)), 5060, Tcp),
        (dest("example.com", Some(5080), Some(Tcp)), 5080, Tcp),
    ];
    for (d, port, transport) in cases {
        assert_eq!(
            fallback(&d),
            Ok(Plan::HostPort {
                host: "example.com".into(),
                port,
                transport
            }),
            "{d:?}"
        );
    }
}

#[test]
fn bad_targets_are_refused() {
    assert_eq!(plan(&dest("", None, None)), Err(TargetError::EmptyHost));
    assert_eq!(
        plan(&dest("exa mple.com", None, None)),
        Err(TargetError::BadHost { position: 4 })
    );
    assert_eq!(
        plan(&dest("example.com\r\n", None, None)),
        Err(TargetError::BadHost { position: 12 })
    );
    assert_eq!(
        plan(&dest("example.com", Some(0), None)),
        Err(TargetError::PortZero)
    );
    assert_eq!(
        fallback(&dest("192.0.2.1", Some(0), None)),
        Err(TargetError::PortZero)
    );
    let longest = format!("{}.com", "a".repeat(MAX_NAME_LEN - 4));
    assert!(matches!(
        plan(&dest(&longest, None, None)),
        Ok(Plan::Naptr { .. })
    ));
    let too_long = format!("a{longest}");
    assert_eq!(
        plan(&dest(&too_long, None, None)),
        Err(TargetError::NameTooLong)
    );
    // The host fits but the SRV name made from it would not.
    assert_eq!(
        plan(&dest(&longest, None, Some(Udp))),
        Err(TargetError::NameTooLong)
    );
}

#[test]
fn naptr_records_sort_by_order_then_preference() {
    let records = [
        naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.com"),
        naptr(10, 20, "s", "SIP+D2T", "_sip._tcp.example.com"),
        naptr(10, 10, "S", "SIPS+D2T", "_sips._tcp.example.com"),
    ];
    assert_eq!(
        srv_names_from_naptr(&records, false, &SipTransport::ALL),
        names(&[
            ("_sips._tcp.example.com", Tls),
            ("_sip._tcp.example.com", Tcp),
            ("_sip._udp.example.com", Udp),
        ])
    );
}

#[test]
fn naptr_ties_keep_the_order_given_and_duplicates_go() {
    let records = [
        naptr(10, 10, "s", "SIP+D2U", "b.example.com"),
        naptr(10, 10, "s", "SIP+D2U", "a.example.com"),
        naptr(10, 20, "s", "SIP+D2U", "b.example.com"),
        naptr(10, 20, "s", "SIP+D2T", "b.example.com"),
    ];
    assert_eq!(
        srv_names_from_naptr(&records, false, &SipTransport::ALL),
        names(&[
            ("b.example.com", Udp),
            ("a.example.com", Udp),
            ("b.example.com", Tcp),
        ])
    );
}

#[test]
fn unusable_naptr_records_are_ignored() {
    let records = [
        naptr(1, 1, "u", "SIP+D2U", "_sip._udp.example.com"),
        naptr(1, 1, "a", "SIP+D2U", "host.example.com"),
        naptr(1, 1, "", "SIP+D2U", "_sip._udp.example.com"),
        naptr(1, 1, "s", "SIP+D2S", "_sip._sctp.example.com"),
        naptr(1, 1, "s", "SIPS+D2S", "_sips._sctp.example.com"),
        naptr(1, 1, "s", "E2U+sip", "_sip._udp.example.com"),
        naptr(1, 1, "s", "SIP+D2U", "."),
        naptr(1, 1, "s", "SIP+D2U", ""),
        naptr(1, 1, "s", "SIP+D2U", "bad name.example.com"),
        naptr(2, 1, "s", "sip+d2u", "_sip._udp.example.com"),
    ];
    assert_eq!(
        srv_names_from_naptr(&records, false, &SipTransport::ALL),
        names(&[("_sip._udp.example.com", Udp)])
    );
}

#[test]
fn naptr_keeps_only_supported_transports() {
    let records = [
        naptr(1, 1, "s", "SIPS+D2T", "_sips._tcp.example.com"),
        naptr(2, 1, "s", "SIP+D2T", "_sip._tcp.example.com"),
        naptr(3, 1, "s", "SIP+D2U", "_sip._udp.example.com"),
    ];
    assert_eq!(
        srv_names_from_naptr(&records, false, &[Udp]),
        names(&[("_sip._udp.example.com", Udp)])
    );
    assert_eq!(
        srv_names_from_naptr(&records, false, &[Udp, Tcp]),
        names(&[
            ("_sip._tcp.example.com", Tcp),
            ("_sip._udp.example.com", Udp)
        ])
    );
    assert!(srv_names_from_naptr(&records, false, &[]).is_empty());
}

#[test]
fn sips_keeps_only_sips_over_tcp() {
    let records = [
        naptr(1, 1, "s", "SIP+D2U", "_sip._udp.example.com"),
        naptr(2, 1, "s", "SIP+D2T", "_sip._tcp.example.com"),
        naptr(3, 1, "s", "SIPS+D2T", "_sips._tcp.example.com"),
    ];
    assert_eq!(
        srv_names_from_naptr(&records, true, &SipTransport::ALL),
        names(&[("_sips._tcp.example.com", Tls)])
    );
    assert!(srv_names_from_naptr(&records, true, &[Udp, Tcp]).is_empty());
}

#[test]
fn only_the_first_naptr_records_are_considered() {
    let mut records = vec![naptr(9, 9, "u", "SIP+D2U", "x.example.com"); MAX_NAPTR];
    records.push(naptr(1, 1, "s", "SIP+D2U", "_sip._udp.example.com"));
    assert!(srv_names_from_naptr(&records, false, &SipTransport::ALL).is_empty());
    records.remove(0);
    assert_eq!(
        srv_names_from_naptr(&records, false, &SipTransport::ALL).len(),
        1
    );
}

#[test]
fn default_srv_names_prefer_tls_then_tcp_then_udp() {
    assert_eq!(
        default_srv_names("example.com", false),
        names(&[
            ("_sips._tcp.example.com", Tls),
            ("_sip._tcp.example.com", Tcp),
            ("_sip._udp.example.com", Udp),
        ])
    );
    assert_eq!(
        default_srv_names("example.com", true),
        names(&[("_sips._tcp.example.com", Tls)])
    );
    assert!(default_srv_names("", false).is_empty());
    assert!(default_srv_names("a b", false).is_empty());
    // `_sip._udp.` is one character shorter than `_sips._tcp.`: only the names that fit remain.
    let domain = "a".repeat(MAX_NAME_LEN - "_sip._udp.".len());
    assert_eq!(
        default_srv_names(&domain, false),
        vec![
            (format!("_sip._tcp.{domain}"), Tcp),
            (format!("_sip._udp.{domain}"), Udp)
        ]
    );
}

#[test]
fn srv_records_go_by_priority_first() {
    let records = [
        srv(20, 0, "c.example.com"),
        srv(10, 0, "a.example.com"),
        srv(30, 0, "d.example.com"),
        srv(10, 0, "b.example.com"),
    ];
    let mut p = Picks::new(&[]);
    let ordered = order_srv(&records, &mut |t| p.pick(t));
    assert_eq!(
        targets(&ordered),
        [
            "a.example.com",
            "b.example.com",
            "c.example.com",
            "d.example.com"
        ]
    );
    // Every weight is 0: each draw is over a total of 0.
    assert_eq!(p.totals, [0, 0, 0, 0]);
    assert_eq!(ordered[0], srv(10, 0, "a.example.com"));
}

#[test]
fn weighted_selection_follows_the_draws() {
    let records = [
        srv(10, 60, "a.example.com"),
        srv(10, 30, "b.example.com"),
        srv(10, 10, "c.example.com"),
    ];
    // Draws of the full total take the last record each time.
    let mut p = Picks::new(&[100, 90, 60]);
    let ordered = order_srv(&records, &mut |t| p.pick(t));
    assert_eq!(
        targets(&ordered),
        ["c.example.com", "b.example.com", "a.example.com"]
    );
    assert_eq!(p.totals, [100, 90, 60]);

    // Draws of 0 (or of exactly a running sum) take the first record that reaches them.
    let mut p = Picks::new(&[0, 0, 0]);
    let ordered = order_srv(&records, &mut |t| p.pick(t));
    assert_eq!(
        targets(&ordered),
        ["a.example.com", "b.example.com", "c.example.com"]
    );
    let mut p = Picks::new(&[61, 30, 0]);
    let ordered = order_srv(&records, &mut |t| p.pick(t));
    assert_eq!(
        targets(&ordered),
        ["b.example.com", "a.example.com", "c.example.com"]
    );
    assert_eq!(p.totals, [100, 70, 10]);
}

#[test]
fn a_picker_answer_over_the_total_counts_as_the_total() {
    let records = [srv(1, 1, "a.example.com"), srv(1, 1, "b.example.com")];
    let ordered = order_srv(&records, &mut |_| u32::MAX);
    assert_eq!(targets(&ordered), ["b.example.com", "a.example.com"]);
}

#[test]
fn weight_zero_records_come_first_and_win_only_a_zero_draw() {
    let records = [
        srv(10, 5, "heavy.example.com"),
        srv(10, 0, "zero.example.com"),
    ];
    let mut p = Picks::new(&[1]);
    let ordered = order_srv(&records, &mut |t| p.pick(t));
    assert_eq!(targets(&ordered), ["heavy.example.com", "zero.example.com"]);
    assert_eq!(p.totals, [5, 0]);

    let mut p = Picks::new(&[0]);
    let ordered = order_srv(&records, &mut |t| p.pick(t));
    assert_eq!(targets(&ordered), ["zero.example.com", "heavy.example.com"]);
}

#[test]
fn weights_are_drawn_per_priority() {
    let records = [
        srv(2, 50, "backup-a.example.com"),
        srv(1, 10, "main-a.example.com"),
        srv(2, 50, "backup-b.example.com"),
        srv(1, 90, "main-b.example.com"),
    ];
    let mut p = Picks::new(&[100, 10, 100, 50]);
    let ordered = order_srv(&records, &mut |t| p.pick(t));
    assert_eq!(
        targets(&ordered),
        [
            "main-b.example.com",
            "main-a.example.com",
            "backup-b.example.com",
            "backup-a.example.com"
        ]
    );
    assert_eq!(p.totals, [100, 10, 100, 50]);
}

#[test]
fn a_lone_root_target_means_no_service() {
    let mut never = |_: u32| -> u32 { panic!("nothing to pick from") };
    assert!(order_srv(&[srv(0, 0, ".")], &mut never).is_empty());
    assert!(order_srv(&[], &mut never).is_empty());
}

#[test]
fn unusable_srv_records_are_dropped() {
    let mut zero_port = srv(1, 0, "noport.example.com");
    zero_port.port = 0;
    let records = [
        srv(1, 0, "."),
        zero_port,
        srv(1, 0, ""),
        srv(1, 0, "bad\0name"),
        srv(1, 0, &"a".repeat(MAX_NAME_LEN + 1)),
        srv(2, 0, "ok.example.com"),
    ];
    let ordered = order_srv(&records, &mut |_| 0);
    assert_eq!(targets(&ordered), ["ok.example.com"]);
}

#[test]
fn only_the_first_srv_records_are_considered() {
    let mut records: Vec<Srv> = (0..MAX_SRV)
        .map(|i| srv(5, 1, &format!("s{i}.example.com")))
        .collect();
    records.push(srv(0, 1, "late.example.com"));
    let ordered = order_srv(&records, &mut |_| 0);
    assert_eq!(ordered.len(), MAX_SRV);
    assert!(ordered.iter().all(|r| r.target != "late.example.com"));
    // A full answer of maximum weights does not overflow the running sum.
    let heavy: Vec<Srv> = (0..MAX_SRV)
        .map(|i| srv(1, u16::MAX, &format!("h{i}.example.com")))
        .collect();
    let mut p = Picks::new(&[u32::MAX]);
    let ordered = order_srv(&heavy, &mut |t| p.pick(t));
    assert_eq!(ordered.len(), MAX_SRV);
    assert_eq!(p.totals[0], MAX_SRV as u32 * u32::from(u16::MAX));
    assert_eq!(ordered[0].target, format!("h{}.example.com", MAX_SRV - 1));
}
