//! The call plan against the cluster: the replicated extensions, call handling, ring groups and
//! bindings as this node's replica has them, and outside forwards routed as their forwarder's calls.

use storage::StateReader;
use storage::features::{CallHandling, RingGroup};
use storage::model::{Binding, Extension, UnixMillis};

use super::Calls;
use super::admission::{self, Refusal};
use super::core::Reached;
use super::outbound::{Refused, Routed};
use super::plan::{self, Directory, Next, Ring, Stage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Internal {
    Extension,
    RingGroup,
    /// An auto attendant's or a conference room's.
    App,
    No,
}

/// A stage's phones as the call core takes them, or the outside number it goes to and the
/// extension it goes out as.
fn split(ring: Ring) -> Result<Reached, (String, String)> {
    match ring {
        Ring::Devices {
            devices,
            ring_for,
            then,
        } => Ok(Reached::Devices {
            devices,
            ring_for,
            then,
        }),
        Ring::Outside { number, forwarder } => Err((number, forwarder)),
    }
}

/// The directory as of now, for a call whose offer does (`srtp`) or does not carry SRTP keys.
pub(super) struct ReplicaDirectory<'a> {
    calls: &'a Calls,
    reader: &'a StateReader,
    now: UnixMillis,
    srtp: bool,
    /// The calling phone's address (not a trunk's): a conference PIN guessed wrong counts
    /// against it.
    pub(super) source: Option<std::net::IpAddr>,
}

fn read_failed(e: storage::StorageError) -> Refusal {
    tracing::warn!(error = %e, "reading the call plan failed");
    Refusal::internal()
}

impl<'a> ReplicaDirectory<'a> {
    pub(super) fn new(calls: &'a Calls, now: UnixMillis, srtp: bool) -> Self {
        Self {
            calls,
            reader: calls.cluster.reader(),
            now,
            srtp,
            source: None,
        }
    }
}

impl Directory for ReplicaDirectory<'_> {
    fn extension(&self, number: &str) -> Result<Option<Extension>, Refusal> {
        self.reader.get::<Extension>(number).map_err(read_failed)
    }
    fn handling(&self, number: &str) -> Result<Option<CallHandling>, Refusal> {
        self.reader.get::<CallHandling>(number).map_err(read_failed)
    }
    fn ring_group(&self, number: &str) -> Result<Option<RingGroup>, Refusal> {
        self.reader.get::<RingGroup>(number).map_err(read_failed)
    }
    fn devices(&self, number: &str) -> Result<Vec<Binding>, Refusal> {
        let all = self
            .reader
            .scan_prefix::<Binding>(&Binding::aor_prefix(number))
            .map_err(read_failed)?;
        Ok(admission::usable(all, self.now, self.srtp))
    }
    fn at_limit(&self, number: &str) -> bool {
        self.calls.limits().count(number) >= self.calls.config.max_per_extension
    }
    fn application(&self, number: &str) -> Result<Option<Binding>, Refusal> {
        use crate::apps::Service;
        let ivr = self
            .reader
            .get::<storage::ivr::Ivr>(number)
            .map_err(read_failed)?;
        let service = if ivr.is_some() {
            Service::Ivr
        } else if self
            .reader
            .get::<storage::conference::ConferenceRoom>(number)
            .map_err(read_failed)?
            .is_some()
        {
            Service::Conference(self.source)
        } else {
            return Ok(None);
        };
        Ok(Some(self.calls.apps.binding(&service, number, self.now)))
    }
    fn mailbox(&self, number: &str) -> Result<Option<storage::voicemail::Mailbox>, Refusal> {
        self.reader.get(number).map_err(read_failed)
    }
    fn voicemail(&self, number: &str, because: storage::voicemail::LeftBecause) -> Option<Binding> {
        let service = crate::apps::Service::Voicemail(because);
        Some(self.calls.apps.binding(&service, number, self.now))
    }
}

impl Calls {
    /// What `number` is inside the PBX: an extension's, a ring group's, or neither.
    pub(super) fn internal(&self, number: &str) -> Result<Internal, Refusal> {
        let reader = self.cluster.reader();
        if reader
            .get::<Extension>(number)
            .map_err(read_failed)?
            .is_some()
        {
            return Ok(Internal::Extension);
        }
        if reader
            .get::<RingGroup>(number)
            .map_err(read_failed)?
            .is_some()
        {
            return Ok(Internal::RingGroup);
        }
        let ivr = reader
            .get::<storage::ivr::Ivr>(number)
            .map_err(read_failed)?;
        let room = reader
            .get::<storage::conference::ConferenceRoom>(number)
            .map_err(read_failed)?;
        Ok(if ivr.is_some() || room.is_some() {
            Internal::App
        } else {
            Internal::No
        })
    }

    /// An outside forward: routed and counted as `forwarder` dialling `number` (its permission
    /// group, its toll limits), for call `call_id`.
    pub(super) async fn route_forward(
        &self,
        call_id: &str,
        forwarder: &str,
        number: &str,
        anonymous: bool,
        started_at: UnixMillis,
    ) -> Result<Routed, Refused> {
        let ext = self
            .cluster
            .reader()
            .get::<Extension>(forwarder)
            .map_err(|e| (read_failed(e), None))?
            .ok_or_else(|| (Refusal::internal(), None))?;
        let cdr_key = storage::model::CallDetail::key_for(started_at, call_id);
        tracing::info!(call = %call_id, extension = %forwarder, to = %number, "forwarding outside");
        self.route_outbound(call_id, &ext, number, anonymous, started_at, cdr_key)
            .await
    }

    /// What a later stage of call `call_id` rings now.
    pub(super) async fn reach(
        &self,
        call_id: &str,
        stage: &Stage,
        srtp: bool,
        anonymous: bool,
        started_at: UnixMillis,
    ) -> Result<Reached, Refusal> {
        let ring = {
            let dir = ReplicaDirectory::new(self, crate::time::now_millis(), srtp);
            plan::resolve(&dir, stage)?
        };
        match split(ring) {
            Ok(phones) => Ok(phones),
            Err((number, forwarder)) => {
                if srtp {
                    return Err(Refusal::new(488, "SRTP Keys Need SIP over TLS", None));
                }
                // A refused forward's routing is in the log and the event; the CDR has its cause.
                let routed = self
                    .route_forward(call_id, &forwarder, &number, anonymous, started_at)
                    .await
                    .map_err(|(refusal, _)| refusal)?;
                Ok(Reached::Trunk(routed.trunk))
            }
        }
    }

    /// What a transfer's target rings: extensions, ring groups and menus only. An outside number
    /// its referrer may not dial is refused as a dialled call would be (`403`); one it may dial is
    /// not transferred to yet (`501`), for a transfer does not ring trunks. An auto attendant
    /// hands calls on to its own numbers only, never outside.
    pub(super) fn reach_transfer(&self, stage: &Stage, srtp: bool) -> Result<Reached, Refusal> {
        let Next::Number {
            forwarder: Some(referrer),
            ..
        } = &stage.next
        else {
            return Err(Refusal::internal());
        };
        let reader = self.cluster.reader();
        let ext = reader.get::<Extension>(referrer).map_err(read_failed)?;
        let app = ext.is_none()
            && reader
                .get::<storage::ivr::Ivr>(referrer)
                .map_err(read_failed)?
                .is_some();
        let Some(ext) = ext else {
            if !app {
                return Err(Refusal::new(403, "Only Extensions Transfer", None));
            }
            let ring = {
                let dir = ReplicaDirectory::new(self, crate::time::now_millis(), srtp);
                plan::resolve(&dir, stage)?
            };
            return split(ring).map_err(|_| Refusal::new(403, "Menus Do Not Dial Outside", None));
        };
        let ring = {
            let dir = ReplicaDirectory::new(self, crate::time::now_millis(), srtp);
            plan::resolve(&dir, stage)?
        };
        match split(ring) {
            Ok(phones) => Ok(phones),
            Err((number, _)) => {
                self.may_dial_outside(&ext, &number)?;
                Err(Refusal::new(501, "Transfer Outside Not Supported", None))
            }
        }
    }
}
