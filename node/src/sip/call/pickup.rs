//! Pickup codes: `*8` answers the call that has rung longest among those ringing an extension that
//! shares a pickup group with the dialling phone's; `**` and an extension answers that extension's
//! ringing call, under the same rule. The ringing call does the rest ([`super::core`]'s pickup).
//!
//! Every call rings on the VIP owner, so the calls ringing are this node's; which extensions may be
//! picked up for is the replicated configuration.

use pbx_sip::transaction::{Peer, ServerTxId};
use storage::features::{PickupCodes, PickupGroup, share_pickup_group};

use super::core::{Input, Picker};
use super::{Calls, dialog};

/// What a dialled pickup code asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pickup {
    /// Any call ringing the dialler's pickup groups.
    Group,
    /// The call ringing this extension.
    Directed(String),
}

/// The pickup `dialled` asks for, if it is a pickup code.
pub(crate) fn parse(codes: &PickupCodes, dialled: &str) -> Option<Pickup> {
    if dialled == codes.group {
        return Some(Pickup::Group);
    }
    let number = dialled.strip_prefix(codes.directed.as_str())?;
    let number = number.strip_suffix('#').unwrap_or(number);
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Pickup::Directed(number.to_owned()))
}

impl Calls {
    /// Extension `caller` dialled `dialled`: when it is a pickup code, the INVITE goes to the call
    /// it picks up, or is refused, and `true` is returned.
    pub(super) async fn pickup(
        &self,
        tx: ServerTxId,
        req: &rsip::Request,
        peer: Peer,
        caller: &str,
        dialled: &str,
    ) -> bool {
        let reader = self.cluster.reader();
        let codes = match reader.get::<PickupCodes>(PickupCodes::KEY) {
            Ok(codes) => codes.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the pickup codes failed");
                PickupCodes::default()
            }
        };
        let Some(pickup) = parse(&codes, dialled) else {
            return false;
        };
        let groups = match reader.list::<PickupGroup>() {
            Ok(groups) => groups,
            Err(e) => {
                tracing::warn!(error = %e, "reading the pickup groups failed");
                self.refuse_pickup(tx, req, 500, "Server Internal Error")
                    .await;
                return true;
            }
        };
        let wanted = |ext: &str| {
            ext != caller
                && share_pickup_group(&groups, caller, ext)
                && match &pickup {
                    Pickup::Group => true,
                    Pickup::Directed(number) => number == ext,
                }
        };
        let Some(call) = self.ringing_call(wanted) else {
            tracing::info!(extension = %caller, ?pickup, "nothing to pick up");
            metrics::counter!("pbx_call_pickups_total", "result" => "nothing").increment(1);
            self.refuse_pickup(tx, req, 480, "No Call To Pick Up").await;
            return true;
        };
        // The INVITE's transaction belongs to the ringing call from here on (it routes it again
        // once it takes the pickup).
        self.forget(Some(tx), &[]);
        let picker = Picker {
            tx,
            invite: req.clone(),
            peer,
            extension: caller.to_owned(),
        };
        if call.send(Input::PickUp(Box::new(picker))).is_err() {
            self.refuse_pickup(tx, req, 480, "No Call To Pick Up").await;
        }
        true
    }

    async fn refuse_pickup(&self, tx: ServerTxId, req: &rsip::Request, code: u16, reason: &str) {
        let resp = dialog::response(
            req,
            code,
            Some(reason),
            &dialog::token()[..16],
            None,
            &[],
            None,
        );
        self.endpoint.respond(tx, resp).await;
        self.forget(Some(tx), &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickup_codes_are_read_as_dialled() {
        let codes = PickupCodes::default();
        assert_eq!(parse(&codes, "*8"), Some(Pickup::Group));
        assert_eq!(
            parse(&codes, "**1002"),
            Some(Pickup::Directed("1002".into()))
        );
        assert_eq!(
            parse(&codes, "**1002#"),
            Some(Pickup::Directed("1002".into()))
        );
        assert_eq!(parse(&codes, "**"), None);
        assert_eq!(parse(&codes, "**10*2"), None);
        assert_eq!(parse(&codes, "*78"), None);
    }
}
