//! What a dialled number rings, stage by stage: an extension's phones (or where its do-not-disturb
//! and forwarding rules send the call), a ring group's members all at once or one after the other,
//! and what follows when nobody answers or everyone is busy.
//!
//! Pure: the cluster's configuration comes through [`Directory`]. A stage is resolved only when the
//! call reaches it, so a forward on no answer rings the phones registered *then*, and an outside
//! forward is routed and counted against toll limits only if it is used.

use std::time::Duration;

use storage::features::{CallHandling, RingGroup, RingStrategy};
use storage::model::{Binding, Disposition, Extension};
use storage::voicemail::{LeftBecause, Mailbox};

use super::admission::Refusal;

/// Forwards followed for one call at most: `A` forwarding to `B` forwarding to `A` ends here.
pub(crate) const MAX_HOPS: u8 = 5;
/// Stages one call goes through at most (a hunt group of 32, its fallbacks, forwards).
pub(crate) const MAX_STAGES: usize = 48;

/// What the plan reads from the cluster's configuration.
pub(crate) trait Directory {
    fn extension(&self, number: &str) -> Result<Option<Extension>, Refusal>;
    fn handling(&self, number: &str) -> Result<Option<CallHandling>, Refusal>;
    fn ring_group(&self, number: &str) -> Result<Option<RingGroup>, Refusal>;
    /// The extension's phones that can take this call now (registered, reachable, with the call's
    /// transport needs).
    fn devices(&self, number: &str) -> Result<Vec<Binding>, Refusal>;
    /// The extension is in as many calls as it may be.
    fn at_limit(&self, number: &str) -> bool;
    /// The application a number belongs to (an auto attendant's), as the one device it rings.
    fn application(&self, number: &str) -> Result<Option<Binding>, Refusal> {
        let _ = number;
        Ok(None)
    }
    /// The extension's mailbox, when it has one that takes calls.
    fn mailbox(&self, number: &str) -> Result<Option<Mailbox>, Refusal> {
        let _ = number;
        Ok(None)
    }
    /// The voicemail application, as the one device a call to `number`'s mailbox rings.
    fn voicemail(&self, number: &str, because: LeftBecause) -> Option<Binding> {
        let _ = (number, because);
        None
    }
}

/// How a stage ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Its ring time ran out.
    NoAnswer,
    /// Every phone said busy or declined.
    Busy,
    /// No phone could take the call (unreachable, unavailable, timed out).
    Unavailable,
}

/// Which endings of the stage before lead to a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    NoAnswer,
    Busy,
    Any,
}

impl After {
    pub(crate) fn follows(self, ended: Ended) -> bool {
        match self {
            Self::Any => true,
            Self::Busy => ended == Ended::Busy,
            // A phone that is off the network by the time the rule applies did not answer either.
            Self::NoAnswer => matches!(ended, Ended::NoAnswer | Ended::Unavailable),
        }
    }
}

/// A stage not reached yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stage {
    pub(crate) next: Next,
    pub(crate) after: After,
    /// Forwards followed to get here.
    pub(crate) hops: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// A number as dialled (its own rules apply); `forwarder` is the extension whose rule sent the
    /// call there, which an outside number is dialled as.
    Number {
        number: String,
        forwarder: Option<String>,
    },
    /// A ring group's member, rung directly (its own forwards do not take over a group's call).
    Member {
        extension: String,
        ring_for: Duration,
    },
    /// The extension's mailbox, for this reason.
    Voicemail {
        extension: String,
        because: LeftBecause,
    },
}

/// What a stage rings.
#[derive(Debug)]
pub(crate) enum Ring {
    Devices {
        /// Each binding's `aor` is its extension.
        devices: Vec<Binding>,
        /// `None`: until the call's ring timeout.
        ring_for: Option<Duration>,
        then: Vec<Stage>,
    },
    /// Out through the outbound routes, as `forwarder` would dial it: its permissions and toll
    /// limits apply.
    Outside { number: String, forwarder: String },
}

fn busy() -> Refusal {
    Refusal::new(486, "Busy Here", Some(Disposition::Busy))
}

fn unavailable() -> Refusal {
    Refusal::new(
        480,
        "Temporarily Unavailable",
        Some(Disposition::Unavailable),
    )
}

fn not_found() -> Refusal {
    Refusal::new(404, "Not Found", Some(Disposition::NotFound))
}

/// Resolves a stage the call reached.
pub(crate) fn resolve(dir: &dyn Directory, stage: &Stage) -> Result<Ring, Refusal> {
    match &stage.next {
        Next::Number { number, forwarder } => {
            number_plan(dir, number, forwarder.as_deref(), stage.hops)
        }
        Next::Member {
            extension,
            ring_for,
        } => {
            let devices = member_devices(dir, extension)?;
            if devices.is_empty() {
                return Err(unavailable());
            }
            Ok(Ring::Devices {
                devices,
                ring_for: Some(*ring_for),
                then: Vec::new(),
            })
        }
        Next::Voicemail { extension, because } => voicemail(dir, extension, *because),
    }
}

/// The mailbox's application as the one device rung.
fn voicemail(dir: &dyn Directory, number: &str, because: LeftBecause) -> Result<Ring, Refusal> {
    let Some(app) = dir.voicemail(number, because) else {
        return Err(unavailable());
    };
    tracing::info!(
        extension = number,
        because = because.as_str(),
        "to voicemail"
    );
    Ok(Ring::Devices {
        devices: vec![app],
        ring_for: None,
        then: Vec::new(),
    })
}

/// What dialling `number` rings. `forwarder`: the extension whose forward led here (`None` for the
/// number the caller dialled).
pub(crate) fn number_plan(
    dir: &dyn Directory,
    number: &str,
    forwarder: Option<&str>,
    hops: u8,
) -> Result<Ring, Refusal> {
    if hops > MAX_HOPS {
        return Err(Refusal::new(
            482,
            "Forwarding Loop",
            Some(Disposition::Failed),
        ));
    }
    if let Some(ext) = dir.extension(number)? {
        if !ext.enabled {
            return Err(not_found());
        }
        return extension_plan(dir, &ext.number, hops);
    }
    if let Some(group) = dir.ring_group(number)? {
        return group_plan(dir, &group, hops);
    }
    if let Some(app) = dir.application(number)? {
        return Ok(Ring::Devices {
            devices: vec![app],
            ring_for: None,
            then: Vec::new(),
        });
    }
    match forwarder {
        Some(f) => Ok(Ring::Outside {
            number: number.to_owned(),
            forwarder: f.to_owned(),
        }),
        None => Err(not_found()),
    }
}

fn forward(to: &str, from: &str, after: After, hops: u8) -> Stage {
    Stage {
        next: Next::Number {
            number: to.to_owned(),
            forwarder: Some(from.to_owned()),
        },
        after,
        hops: hops + 1,
    }
}

/// The stage that takes the call to `number`'s mailbox after `after`.
fn to_mailbox(number: &str, because: LeftBecause, after: After, hops: u8) -> Stage {
    Stage {
        next: Next::Voicemail {
            extension: number.to_owned(),
            because,
        },
        after,
        hops,
    }
}

/// An extension's own rules: forwards first; where the extension has none for a case, its
/// mailbox (when it takes calls); else busy or unavailable.
fn extension_plan(dir: &dyn Directory, number: &str, hops: u8) -> Result<Ring, Refusal> {
    let h = dir
        .handling(number)?
        .unwrap_or_else(|| CallHandling::none(number));
    if let Some(to) = &h.forward_always {
        tracing::debug!(extension = number, to = %to, "forwarding every call");
        return number_plan(dir, to, Some(number), hops + 1);
    }
    let mailbox = dir.mailbox(number)?.filter(|m| m.enabled);
    if h.dnd || dir.at_limit(number) {
        return match (&h.forward_busy, &mailbox) {
            (Some(to), _) => number_plan(dir, to, Some(number), hops + 1),
            (None, Some(_)) => voicemail(dir, number, LeftBecause::Busy),
            (None, None) => Err(busy()),
        };
    }
    let devices = dir.devices(number)?;
    if devices.is_empty() {
        return match (&h.forward_unregistered, &mailbox) {
            (Some(to), _) => number_plan(dir, to, Some(number), hops + 1),
            (None, Some(_)) => voicemail(dir, number, LeftBecause::Unavailable),
            (None, None) => Err(unavailable()),
        };
    }
    let mut then = Vec::new();
    let mut ring_for = None;
    if let Some(to) = &h.forward_no_answer {
        then.push(forward(to, number, After::NoAnswer, hops));
        ring_for = Some(Duration::from_secs(u64::from(h.no_answer_secs)));
    } else if let Some(m) = &mailbox {
        then.push(to_mailbox(
            number,
            LeftBecause::NoAnswer,
            After::NoAnswer,
            hops,
        ));
        ring_for = Some(Duration::from_secs(u64::from(m.ring_secs)));
    }
    if let Some(to) = &h.forward_busy {
        then.push(forward(to, number, After::Busy, hops));
    } else if mailbox.is_some() {
        then.push(to_mailbox(number, LeftBecause::Busy, After::Busy, hops));
    }
    Ok(Ring::Devices {
        devices,
        ring_for,
        then,
    })
}

/// A member's phones, unless it is disabled, on do-not-disturb or at its call limit.
fn member_devices(dir: &dyn Directory, number: &str) -> Result<Vec<Binding>, Refusal> {
    let Some(ext) = dir.extension(number)? else {
        return Ok(Vec::new());
    };
    let dnd = dir.handling(number)?.is_some_and(|h| h.dnd);
    if !ext.enabled || dnd || dir.at_limit(number) {
        return Ok(Vec::new());
    }
    dir.devices(number)
}

fn group_plan(dir: &dyn Directory, g: &RingGroup, hops: u8) -> Result<Ring, Refusal> {
    let ring_for = Duration::from_secs(u64::from(g.ring_secs));
    let fallback = g.no_answer.as_ref().map(|to| Stage {
        next: Next::Number {
            number: to.clone(),
            forwarder: None,
        },
        after: After::Any,
        hops: hops + 1,
    });
    let (devices, mut then) = match g.strategy {
        RingStrategy::All => {
            let mut devices = Vec::new();
            for m in &g.members {
                devices.extend(member_devices(dir, m)?);
            }
            (devices, Vec::new())
        }
        RingStrategy::Hunt => {
            // The first member that can ring now; the others are looked at when reached.
            let mut devices = Vec::new();
            let mut rest = g.members.iter();
            for m in rest.by_ref() {
                devices = member_devices(dir, m)?;
                if !devices.is_empty() {
                    break;
                }
            }
            let then = rest
                .map(|m| Stage {
                    next: Next::Member {
                        extension: m.clone(),
                        ring_for,
                    },
                    after: After::Any,
                    hops,
                })
                .collect();
            (devices, then)
        }
    };
    then.extend(fallback);
    if devices.is_empty() {
        // Nobody to ring now: straight to what comes next.
        let Some(first) = then.first().cloned() else {
            return Err(unavailable());
        };
        let mut ring = resolve(dir, &first);
        let rest: Vec<Stage> = then.into_iter().skip(1).collect();
        // A hunt member that cannot ring either: on to the one after, in order.
        let mut rest = rest.into_iter();
        while ring.as_ref().is_err_and(|r| r.code == 480)
            && let Some(next) = rest.next()
        {
            ring = resolve(dir, &next);
        }
        let rest: Vec<Stage> = rest.collect();
        return ring.map(|r| with_then(r, rest));
    }
    Ok(Ring::Devices {
        devices,
        ring_for: Some(ring_for),
        then,
    })
}

/// `ring` followed by `more` stages once its own are done.
fn with_then(ring: Ring, more: Vec<Stage>) -> Ring {
    match ring {
        Ring::Devices {
            devices,
            ring_for,
            mut then,
        } => {
            then.extend(more);
            Ring::Devices {
                devices,
                ring_for,
                then,
            }
        }
        outside @ Ring::Outside { .. } => outside,
    }
}

#[cfg(test)]
mod tests;
