//! Call recording policy, per extension: whether the calls of an extension are recorded.
//!
//! Replicated like the rest of the configuration, so whichever node carries a call reads the same
//! policy. An extension without a policy is never recorded; deleting an extension deletes its
//! policy, so a new extension with the number starts unrecorded.

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::{Response, Txn, put, table_name};
use crate::model::UnixMillis;
use crate::tables::{Record, Table};

/// Whether an extension's calls are recorded. (New modes are appended: the encoding of every
/// earlier variant stays as it is.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingMode {
    /// No call is recorded (also what an extension without a policy gets).
    #[default]
    Never,
    /// Every answered call of the extension is recorded.
    Always,
    /// A call is recorded from when the extension's user presses the feature code (`*1`) in it,
    /// until they press it again.
    OnDemand,
}

impl RecordingMode {
    pub const ALL: [Self; 3] = [Self::Never, Self::Always, Self::OnDemand];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Always => "always",
            Self::OnDemand => "on_demand",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// The setting (`Settings` table) that says a call's on-demand recording is on: its value names the
/// extension that turned it on. Replicated, so that the node carrying the call on after a failover
/// goes on recording; ending or deleting the call deletes it.
pub fn on_demand_key(call_id: &str) -> String {
    format!("recording.on_demand.{call_id}")
}

/// An extension's recording policy, keyed by the extension's number. A missing record means
/// [`RecordingMode::Never`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingPolicy {
    pub extension: String,
    pub mode: RecordingMode,
    pub updated_at: UnixMillis,
}

impl RecordingPolicy {
    /// The policy of an extension that never set one.
    pub fn none(extension: &str) -> Self {
        Self {
            extension: extension.to_owned(),
            mode: RecordingMode::Never,
            updated_at: 0,
        }
    }
}

impl Record for RecordingPolicy {
    const TABLE: Table = Table::RecordingPolicies;
    fn key(&self) -> String {
        self.extension.clone()
    }
}

/// Sets an extension's policy; `NotFound` (in the extensions table) without the extension.
pub(crate) fn put_recording_policy(
    txn: &mut dyn Txn,
    policy: &RecordingPolicy,
) -> Result<Response, CodecError> {
    if txn.get(Table::Extensions, &policy.extension).is_none() {
        return Ok(Response::NotFound {
            table: table_name(Table::Extensions),
            key: policy.extension.clone(),
        });
    }
    put(txn, policy)
}

/// Extension `number` was deleted: its policy goes with it.
pub(crate) fn forget_extension(txn: &mut dyn Txn, number: &str) {
    txn.delete(Table::RecordingPolicies, number);
}

#[cfg(test)]
mod tests;
