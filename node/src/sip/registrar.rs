//! RFC 3261 §10.3 registrar decisions: given a REGISTER that passed authentication and the extension's
//! current bindings, which changes to commit and what the `200 OK` lists. Pure: no I/O, `now` passed in.

use storage::BindingOp;
use storage::NodeId;
use storage::model::{Binding, UnixMillis};

use super::contact::{ContactList, ContactSpec};

/// Registrar limits.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Shortest registration accepted (`423 Interval Too Brief` below it), seconds.
    pub min_expires: u32,
    /// Longest registration granted; longer requests are shortened to it, seconds.
    pub max_expires: u32,
    /// Granted when the phone asks for no particular time, seconds.
    pub default_expires: u32,
    /// Most simultaneous contacts per extension.
    pub max_contacts: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// What the REGISTER asked for, already parsed.
#[derive(Debug, Clone)]
pub(crate) struct RegisterInfo {
    pub aor: String,
    pub contacts: ContactList,
    pub expires_header: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    pub source: String,
    pub transport: String,
    pub user_agent: String,
    pub node_id: NodeId,
    pub now: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Commit `ops` (possibly none), then answer `200 OK` listing `bindings`.
    Accept {
        ops: Vec<BindingOp>,
        bindings: Vec<Binding>,
    },
    /// `423 Interval Too Brief` with `Min-Expires`.
    IntervalTooBrief {
        min_expires: u32,
    },
    Reject {
        code: u16,
        reason: &'static str,
    },
}

pub(crate) fn decide(cfg: &RegistrarConfig, existing: Vec<Binding>, req: RegisterInfo) -> Decision {
    // Bindings past their time are gone for the phone even if the sweep has not removed them yet.
    let mut current: Vec<Binding> = existing
        .into_iter()
        .filter(|b| b.expires_at > req.now)
        .collect();
    let specs = match req.contacts.clone() {
        ContactList::Star => {
            if req.expires_header != Some(0) {
                return Decision::Reject {
                    code: 400,
                    reason: "Contact * requires Expires: 0",
                };
            }
            if current
                .iter()
                .any(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
            {
                return Decision::Reject {
                    code: 400,
                    reason: "CSeq out of order",
                };
            }
            return Decision::Accept {
                ops: vec![BindingOp::RemoveAll { aor: req.aor }],
                bindings: Vec::new(),
            };
        }
        ContactList::Contacts(specs) => specs,
    };
    let mut ops = Vec::new();
    for spec in specs {
        let requested = spec
            .expires
            .or(req.expires_header)
            .unwrap_or(cfg.default_expires);
        if requested != 0 && requested < cfg.min_expires {
            return Decision::IntervalTooBrief {
                min_expires: cfg.min_expires,
            };
        }
        let granted = requested.min(cfg.max_expires);
        let existing = current
            .iter()
            .position(|b| same_contact(&b.contact, &spec.uri));
        if let Some(i) = existing {
            let b = &current[i];
            if b.call_id == req.call_id && req.cseq <= b.cseq {
                return Decision::Reject {
                    code: 400,
                    reason: "CSeq out of order",
                };
            }
        }
        if granted == 0 {
            if let Some(i) = existing {
                let b = current.remove(i);
                ops.push(BindingOp::Remove {
                    aor: b.aor,
                    contact: b.contact,
                });
            }
            continue;
        }
        let binding = new_binding(&req, &spec, granted, existing.map(|i| &current[i]));
        match existing {
            Some(i) => current[i] = binding.clone(),
            None => current.push(binding.clone()),
        }
        ops.push(BindingOp::Put(binding));
    }
    if current.len() > cfg.max_contacts {
        return Decision::Reject {
            code: 403,
            reason: "Too many registered contacts",
        };
    }
    Decision::Accept {
        ops,
        bindings: current,
    }
}

fn new_binding(
    req: &RegisterInfo,
    spec: &ContactSpec,
    granted: u32,
    previous: Option<&Binding>,
) -> Binding {
    // A refresh from the same place keeps what the qualifier learnt; a move starts over.
    let same_place = previous.filter(|p| p.source == req.source && p.transport == req.transport);
    Binding {
        aor: req.aor.clone(),
        contact: spec.uri.clone(),
        expires_at: req.now + u64::from(granted) * 1000,
        q: spec.q,
        call_id: req.call_id.clone(),
        cseq: req.cseq,
        source: req.source.clone(),
        transport: req.transport.clone(),
        user_agent: req.user_agent.clone(),
        node_id: req.node_id,
        registered_at: previous.map_or(req.now, |p| p.registered_at),
        instance: spec.instance.clone(),
        reachable: same_place.and_then(|p| p.reachable),
    }
}

/// RFC 3261 §19.1.4 compares URIs field by field; phones re-register with the exact text they used, so
/// comparing case-insensitively as text is enough to recognise a refresh.
fn same_contact(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Seconds a binding has left at `now`, for the `expires` parameter of the `200 OK`.
pub(crate) fn remaining_secs(b: &Binding, now: UnixMillis) -> u64 {
    b.expires_at.saturating_sub(now).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::contact::parse_contacts;

    fn req(
        contact: &str,
        expires: Option<u32>,
        call_id: &str,
        cseq: u32,
        now: u64,
    ) -> RegisterInfo {
        RegisterInfo {
            aor: "1001".into(),
            contacts: parse_contacts([contact]).unwrap(),
            expires_header: expires,
            call_id: call_id.into(),
            cseq,
            source: "198.18.0.20:5062".into(),
            transport: "udp".into(),
            user_agent: "test".into(),
            node_id: 1,
            now,
        }
    }

    fn accepted(d: Decision) -> (Vec<BindingOp>, Vec<Binding>) {
        match d {
            Decision::Accept { ops, bindings } => (ops, bindings),
            other => panic!("expected accept, got {other:?}"),
        }
    }

    #[test]
    fn new_binding_is_granted_capped_and_refreshed() {
        let cfg = RegistrarConfig::default();
        let (ops, b) = accepted(decide(
            &cfg,
            vec![],
            req("<sip:1001@198.18.0.20:5062>", Some(7200), "c1", 1, 1000),
        ));
        assert_eq!(ops.len(), 1);
        assert_eq!(b[0].expires_at, 1000 + 3600 * 1000, "capped at max_expires");
        // A refresh with a higher CSeq keeps the first registration time and extends the expiry.
        let (ops, b2) = accepted(decide(
            &cfg,
            b,
            req(
                "<sip:1001@198.18.0.20:5062>;expires=600",
                None,
                "c1",
                2,
                5000,
            ),
        ));
        assert_eq!(ops.len(), 1);
        assert_eq!(b2.len(), 1);
        assert_eq!(b2[0].expires_at, 5000 + 600_000);
        assert_eq!(b2[0].registered_at, 1000);
    }

    #[test]
    fn too_brief_out_of_order_and_too_many() {
        let cfg = RegistrarConfig {
            max_contacts: 2,
            ..RegistrarConfig::default()
        };
        assert_eq!(
            decide(&cfg, vec![], req("<sip:a@x>", Some(30), "c", 1, 0)),
            Decision::IntervalTooBrief { min_expires: 60 }
        );
        let (_, b) = accepted(decide(&cfg, vec![], req("<sip:a@x>", None, "c", 5, 0)));
        assert!(matches!(
            decide(&cfg, b.clone(), req("<sip:a@x>", None, "c", 5, 1)),
            Decision::Reject { code: 400, .. }
        ));
        let (_, b) = accepted(decide(&cfg, b, req("<sip:b@x>", None, "d", 1, 1)));
        assert_eq!(b.len(), 2);
        assert!(matches!(
            decide(&cfg, b, req("<sip:c@x>", None, "e", 1, 2)),
            Decision::Reject { code: 403, .. }
        ));
    }

    #[test]
    fn unregister_one_and_all() {
        let cfg = RegistrarConfig::default();
        let (_, b) = accepted(decide(
            &cfg,
            vec![],
            req("<sip:a@x>, <sip:b@x>", None, "c", 1, 0),
        ));
        assert_eq!(b.len(), 2);
        let (ops, left) = accepted(decide(
            &cfg,
            b.clone(),
            req("<sip:a@x>;expires=0", None, "c", 2, 0),
        ));
        assert_eq!(
            ops,
            vec![BindingOp::Remove {
                aor: "1001".into(),
                contact: "sip:a@x".into()
            }]
        );
        assert_eq!(left.len(), 1);
        assert!(matches!(
            decide(&cfg, b.clone(), req("*", None, "c", 3, 0)),
            Decision::Reject { code: 400, .. }
        ));
        let (ops, left) = accepted(decide(&cfg, b, req("*", Some(0), "c", 3, 0)));
        assert_eq!(ops, vec![BindingOp::RemoveAll { aor: "1001".into() }]);
        assert!(left.is_empty());
    }

    #[test]
    fn expired_bindings_do_not_count_or_show() {
        let cfg = RegistrarConfig {
            max_contacts: 1,
            ..RegistrarConfig::default()
        };
        let (_, b) = accepted(decide(
            &cfg,
            vec![],
            req("<sip:a@x>;expires=60", None, "c", 1, 0),
        ));
        // 61 s later the old binding has lapsed: a new contact fits, and the 200 lists only it.
        let (_, b2) = accepted(decide(&cfg, b, req("<sip:b@x>", None, "d", 1, 61_000)));
        assert_eq!(b2.len(), 1);
        assert_eq!(b2[0].contact, "sip:b@x");
        assert_eq!(remaining_secs(&b2[0], 61_000), 3600);
    }
}
