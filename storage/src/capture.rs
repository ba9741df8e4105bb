//! SIP capture targets: the extensions and trunks whose SIP messages nodes capture for
//! troubleshooting. Off by default (no record, no capture); every target runs out at its
//! `expires_at`, so a forgotten capture turns itself off.
//!
//! Keyed `ext/{number}` or `trunk/{name}`. Replicated like the rest of the configuration so that
//! whichever node serves SIP (the VIP owner, before and after a failover) captures the same ones.

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::{Response, Txn, put, table_name};
use crate::model::UnixMillis;
use crate::tables::{Record, Table};

/// Longest capture a target may be enabled for.
pub const MAX_CAPTURE_MILLIS: u64 = 24 * 3600 * 1000;
/// Longest extension number or trunk name of a target.
pub const MAX_NAME_LEN: usize = 64;

/// What a capture target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureKind {
    /// An extension, by number: messages whose From, To or Request-URI user is the number.
    Extension,
    /// A trunk, by name: messages exchanged with the trunk's host.
    Trunk,
}

impl CaptureKind {
    /// The key prefix (and the name used in the API's paths).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Extension => "ext",
            Self::Trunk => "trunk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Extension, Self::Trunk]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Capture enabled for one extension or trunk until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureTarget {
    pub kind: CaptureKind,
    pub name: String,
    pub enabled_at: UnixMillis,
    pub expires_at: UnixMillis,
    /// Who enabled it.
    pub by: String,
}

impl CaptureTarget {
    pub fn key_of(kind: CaptureKind, name: &str) -> String {
        format!("{}/{name}", kind.as_str())
    }

    /// Whether it captures at `now`.
    pub fn active_at(&self, now: UnixMillis) -> bool {
        now < self.expires_at
    }

    /// Why it cannot be stored, as `field: reason`.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(format!("name: 1 to {MAX_NAME_LEN} characters"));
        }
        if self.name.contains('/') || self.name.chars().any(char::is_control) {
            return Err("name: no '/' or control characters".to_owned());
        }
        if self.expires_at <= self.enabled_at
            || self.expires_at - self.enabled_at > MAX_CAPTURE_MILLIS
        {
            return Err("expires_at: after enabled_at, by at most 24 hours".to_owned());
        }
        Ok(())
    }
}

impl Record for CaptureTarget {
    const TABLE: Table = Table::CaptureTargets;
    fn key(&self) -> String {
        Self::key_of(self.kind, &self.name)
    }
}

/// Enables (or extends) a capture: `Invalid` when malformed, `NotFound` without the extension or
/// trunk.
pub(crate) fn put_capture_target(
    txn: &mut dyn Txn,
    target: &CaptureTarget,
) -> Result<Response, CodecError> {
    if let Err(reason) = target.check() {
        return Ok(Response::Invalid {
            table: table_name(Table::CaptureTargets),
            key: target.key(),
            reason,
        });
    }
    let table = match target.kind {
        CaptureKind::Extension => Table::Extensions,
        CaptureKind::Trunk => Table::Trunks,
    };
    if txn.get(table, &target.name).is_none() {
        return Ok(Response::NotFound {
            table: table_name(table),
            key: target.name.clone(),
        });
    }
    put(txn, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::command::tests::MemTxn;

    fn target(name: &str, minutes: u64) -> CaptureTarget {
        CaptureTarget {
            kind: CaptureKind::Extension,
            name: name.to_owned(),
            enabled_at: 1_000,
            expires_at: 1_000 + minutes * 60_000,
            by: "admin".to_owned(),
        }
    }

    #[test]
    fn a_target_is_checked() {
        assert!(target("1001", 60).check().is_ok());
        assert!(target("", 60).check().is_err());
        assert!(target("a/b", 60).check().is_err());
        assert!(target("1001", 0).check().is_err());
        assert!(target("1001", 24 * 60 + 1).check().is_err());
        assert!(target("1001", 60).active_at(1_000));
        assert!(!target("1001", 60).active_at(1_000 + 3_600_000));
    }

    #[test]
    fn a_target_needs_its_extension() {
        let mut txn = MemTxn::default();
        let put = Command::PutCaptureTarget(target("1001", 60));
        assert!(matches!(
            put.apply(&mut txn).unwrap(),
            Response::NotFound { .. }
        ));
        txn.put(Table::Extensions, "1001", vec![1]);
        assert_eq!(put.apply(&mut txn).unwrap(), Response::Ok);
        assert!(txn.get(Table::CaptureTargets, "ext/1001").is_some());
        let delete = Command::DeleteCaptureTarget {
            key: "ext/1001".to_owned(),
        };
        assert_eq!(delete.apply(&mut txn).unwrap(), Response::Ok);
        assert!(txn.get(Table::CaptureTargets, "ext/1001").is_none());
    }
}
