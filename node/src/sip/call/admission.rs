//! Who may call whom, and with what: the checks an authenticated INVITE passes before anything is
//! allocated for it. Pure: the driver reads the callee's extension and bindings, this decides.

use pbx_sip::sdp::Sdp;
use pbx_sip::transaction::{Peer, Transport};
use storage::model::{Binding, Disposition, HangupSide, UnixMillis};

use super::dialog::{self, body_of, is_sdp};
use super::plan::Stage;
use super::privacy::wants_privacy;
use super::record::Outcome;
use super::session::carries_keys;

/// The longest an extension number may be.
pub(crate) const MAX_NUMBER_LEN: usize = 32;

/// Why a call is refused, and what the caller hears.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    /// Extra headers of the answer (`Retry-After`, `Unsupported`).
    pub(crate) headers: Vec<(String, String)>,
    /// `None`: not a call attempt worth a CDR (malformed).
    pub(crate) outcome: Option<Outcome>,
}

impl Refusal {
    pub(crate) fn new(code: u16, reason: &'static str, disposition: Option<Disposition>) -> Self {
        Self {
            code,
            reason,
            headers: Vec::new(),
            outcome: disposition.map(|d| Outcome::new(d, HangupSide::Pbx, code.to_string(), code)),
        }
    }

    /// The cluster could not be read.
    pub(crate) fn internal() -> Self {
        Self::new(500, "Server Internal Error", None)
    }

    /// No media ports are free: the caller may retry shortly.
    pub(crate) fn no_ports() -> Self {
        let mut r = Self::new(503, "No Media Ports Available", Some(Disposition::Failed));
        r.headers.push(("Retry-After".into(), "5".into()));
        r
    }

    /// An extension of the call is at its limit of simultaneous calls.
    pub(crate) fn over_limit(caller_at_limit: bool) -> Self {
        if caller_at_limit {
            Self::new(403, "Too Many Calls", Some(Disposition::Failed))
        } else {
            Self::new(486, "Busy Here", Some(Disposition::Busy))
        }
    }
}

/// A call that passed every check.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The caller's offer; `None` for a delayed offer (the callee offers in its 2xx, the caller
    /// answers in its ACK).
    pub(crate) offer: Option<Sdp>,
    /// The callee's live, reachable bindings able to take this call.
    pub(crate) bindings: Vec<Binding>,
    /// Max-Forwards for the callee's leg (the caller's, less one).
    pub(crate) max_forwards: u32,
    /// The caller asked to stay anonymous.
    pub(crate) anonymous: bool,
    /// The servers of the trunks an outbound call is tried on, in order (no bindings then).
    pub(crate) trunk: Option<OutboundTrunk>,
    /// How long the bindings ring before the next stage (`None`: the call's ring timeout).
    pub(crate) ring_for: Option<std::time::Duration>,
    /// What rings next when nobody answers, or everyone is busy (forwards, a group's next member).
    pub(crate) then: Vec<Stage>,
}

impl Admitted {
    pub(crate) fn ringing(
        o: Offered,
        bindings: Vec<Binding>,
        ring_for: Option<std::time::Duration>,
        then: Vec<Stage>,
    ) -> Self {
        Self {
            offer: o.offer,
            bindings,
            max_forwards: o.max_forwards,
            anonymous: o.anonymous,
            trunk: None,
            ring_for,
            then,
        }
    }
}

/// Credentials a trunk answers its provider's challenges with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrunkCredentials {
    pub(crate) username: String,
    pub(crate) password: String,
    /// The realm they are for; any when empty.
    pub(crate) realm: String,
}

/// One server of a trunk to try, with the addressing of the INVITE sent to it.
#[derive(Debug, Clone)]
pub(crate) struct TrunkTarget {
    pub(crate) trunk: String,
    pub(crate) peer: Peer,
    pub(crate) request_uri: String,
    /// From and To (name-addr, without tag).
    pub(crate) from: String,
    pub(crate) to: String,
    /// The user part of the PBX's Contact.
    pub(crate) contact_user: String,
    /// Headers only this trunk gets (P-Asserted-Identity, Privacy).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) credentials: Option<TrunkCredentials>,
}

/// An outbound call's servers, tried one after the other (RFC 3263 §4.3: the next on a timeout or a
/// `503`), and how long each may stay silent.
#[derive(Debug, Clone)]
pub(crate) struct OutboundTrunk {
    pub(crate) targets: Vec<TrunkTarget>,
    pub(crate) silence: std::time::Duration,
}

/// The number dialled: digits, with a leading `+` for an E.164 number (which only an outbound route
/// can take: extension numbers are digits), bounded.
pub(crate) fn dialled_number(req: &rsip::Request) -> Option<String> {
    let user = req.uri.auth.as_ref().map(|a| a.user.as_str())?;
    let digits = user.strip_prefix('+').unwrap_or(user);
    let valid = !digits.is_empty()
        && user.len() <= MAX_NUMBER_LEN
        && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| user.to_owned())
}

/// Options of `Require` the PBX does not support (RFC 3261 §8.2.2.3): reliable provisional responses
/// are not relayed, so a caller that insists on them is told so, instead of waiting forever.
fn unsupported_required(headers: &rsip::Headers) -> Option<&'static str> {
    pbx_sip::codec::header_values(headers, "Require")
        .flat_map(|v| v.split(','))
        .any(|o| o.trim().eq_ignore_ascii_case("100rel"))
        .then_some("100rel")
}

/// What every INVITE must pass, before its destination is looked at.
fn check_headers(headers: &rsip::Headers) -> Result<u32, Refusal> {
    let max_forwards = dialog::first(headers, "Max-Forwards")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(70);
    if max_forwards == 0 {
        return Err(Refusal::new(483, "Too Many Hops", None));
    }
    if let Some(option) = unsupported_required(headers) {
        let mut r = Refusal::new(420, "Bad Extension", None);
        r.headers.push(("Unsupported".into(), option.into()));
        return Err(r);
    }
    Ok(max_forwards)
}

/// The checks of [`admit_outbound`] that need no route: done before an outbound call is routed
/// and counted, so that a malformed INVITE costs no toll reservation.
pub(crate) fn precheck(req: &rsip::Request) -> Result<(), Refusal> {
    check_headers(&req.headers)?;
    offer_of(req).map(|_| ())
}

/// The offer and the caller's privacy: `(offer, anonymous, srtp)`.
fn check_offer(
    req: &rsip::Request,
    reject_anonymous: bool,
) -> Result<(Option<Sdp>, bool, bool), Refusal> {
    let offer = offer_of(req)?;
    let anonymous = wants_privacy(&req.headers);
    if reject_anonymous && anonymous {
        return Err(Refusal::new(
            433,
            "Anonymity Disallowed",
            Some(Disposition::Failed),
        ));
    }
    let srtp = offer.as_ref().is_some_and(carries_keys);
    Ok((offer, anonymous, srtp))
}

/// What an INVITE to a number inside the PBX offers, once its headers and offer passed.
#[derive(Debug)]
pub(crate) struct Offered {
    pub(crate) offer: Option<Sdp>,
    pub(crate) anonymous: bool,
    /// The offer carries SDES-SRTP keys: only phones on SIP over TLS may get it.
    pub(crate) srtp: bool,
    /// Max-Forwards for the callee's leg (the caller's, less one).
    pub(crate) max_forwards: u32,
}

/// The checks of an INVITE to an extension or ring group that do not depend on who it rings.
pub(crate) fn offered(
    req: &rsip::Request,
    transport: Transport,
    reject_anonymous: bool,
) -> Result<Offered, Refusal> {
    let max_forwards = check_headers(&req.headers)?;
    let (offer, anonymous, srtp) = check_offer(req, reject_anonymous)?;
    // SDES-SRTP keys travel in the SDP: only over SIP over TLS, in and out. (A delayed offer's keys
    // come from the callee, and are checked when it answers.)
    if srtp && transport != Transport::Tls {
        return Err(Refusal::new(488, "SRTP Keys Need SIP over TLS", None));
    }
    Ok(Offered {
        offer,
        anonymous,
        srtp,
        max_forwards: max_forwards - 1,
    })
}

/// The bindings that can take a call now: live, not known unreachable, on TLS for an SRTP offer.
pub(crate) fn usable(bindings: Vec<Binding>, now: UnixMillis, srtp: bool) -> Vec<Binding> {
    bindings
        .into_iter()
        .filter(|b| b.expires_at > now && b.reachable != Some(false))
        .filter(|b| !srtp || b.transport == "tls")
        .collect()
}

/// Decides an INVITE that leaves through a trunk, to the servers in `trunk` (already routed,
/// permitted and counted).
pub(crate) fn admit_outbound(
    req: &rsip::Request,
    transport: Transport,
    trunk: OutboundTrunk,
) -> Result<Admitted, Refusal> {
    let max_forwards = check_headers(&req.headers)?;
    let (offer, anonymous, srtp) = check_offer(req, false)?;
    let clear = trunk
        .targets
        .iter()
        .any(|t| t.peer.transport != Transport::Tls);
    if srtp && (transport != Transport::Tls || clear) {
        return Err(Refusal::new(488, "SRTP Keys Need SIP over TLS", None));
    }
    if trunk.targets.is_empty() {
        return Err(Refusal::new(
            503,
            "No Trunk Available",
            Some(Disposition::Failed),
        ));
    }
    Ok(Admitted {
        offer,
        bindings: Vec::new(),
        max_forwards: max_forwards - 1,
        anonymous,
        trunk: Some(trunk),
        ring_for: None,
        then: Vec::new(),
    })
}

/// The caller's session offer (`None`: no body, a delayed offer).
fn offer_of(req: &rsip::Request) -> Result<Option<Sdp>, Refusal> {
    let Some((ctype, body)) = body_of(&req.headers, &req.body) else {
        return Ok(None);
    };
    if !is_sdp(ctype) {
        return Err(Refusal::new(415, "Unsupported Media Type", None));
    }
    let offer = Sdp::parse(body).map_err(|e| {
        let reason = if e.sip_status() == 400 {
            "Malformed SDP"
        } else {
            "Not Acceptable Here"
        };
        Refusal::new(e.sip_status(), reason, None)
    })?;
    if offer.media().iter().all(|m| m.port == 0) {
        return Err(Refusal::new(488, "No Media Offered", None));
    }
    Ok(Some(offer))
}

#[cfg(test)]
mod tests;
