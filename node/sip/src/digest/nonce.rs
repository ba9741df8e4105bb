//! Nonces any node can verify, and the bounded nonce-count memory that refuses replays.
//!
//! `nonce = base64url(issued_at_ms u64 BE ‖ rand[8] ‖ HMAC-SHA256(k_nonce, issued_at ‖ rand ‖ realm)[..16])`
//! where `k_nonce` is derived from the cluster secret (see [`NonceKey`]).

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Decoded nonce length: issued_at (8) + rand (8) + MAC (16).
pub(crate) const NONCE_BYTES: usize = 32;
/// base64url without padding of 32 bytes.
const NONCE_CHARS: usize = 43;

/// The keys derived from the cluster-wide secret kept in the replicated state. Every node holding
/// the same secret issues and accepts the same nonces and the same opaque values.
///
/// Three independent keys are derived (HMAC-SHA256 of the secret over a label) so a nonce MAC,
/// an opaque value and a decoy HA1 can never be confused with one another.
///
/// Each key is kept as an HMAC already keyed (its inner and outer pads hashed), so every MAC costs
/// only the hashing of its message.
#[derive(Clone)]
pub struct NonceKey {
    nonce: HmacSha256,
    opaque: HmacSha256,
    decoy: HmacSha256,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

/// An HMAC-SHA256 keyed with `key`.
fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; were it ever to, the
    // empty key still gives a working (if weak) MAC rather than a panic.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

/// `HMAC(keyed's key, parts…)`.
fn hmac(keyed: &HmacSha256, parts: &[&[u8]]) -> [u8; 32] {
    #[cfg(test)]
    super::count_hash();
    let mut mac = keyed.clone();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl NonceKey {
    /// Derives the keys from the cluster secret (use at least 32 random bytes).
    pub fn new(secret: &[u8]) -> Self {
        let master = keyed(secret);
        let derive = |label: &[u8]| keyed(&hmac(&master, &[label]));
        Self {
            nonce: derive(b"pbx digest nonce v1"),
            opaque: derive(b"pbx digest opaque v1"),
            decoy: derive(b"pbx digest decoy v1"),
        }
    }

    /// A new nonce for `realm`.
    pub(crate) fn issue(&self, issued_at_ms: u64, rand: [u8; 8], realm: &str) -> String {
        let issued = issued_at_ms.to_be_bytes();
        let mac = hmac(&self.nonce, &[&issued, &rand, realm.as_bytes()]);
        let mut raw = [0u8; NONCE_BYTES];
        raw[..8].copy_from_slice(&issued);
        raw[8..16].copy_from_slice(&rand);
        raw[16..].copy_from_slice(&mac[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce's MAC for `realm`: its raw bytes and issue time, or `None` if it is not one
    /// of ours (garbled, forged, or issued for another realm).
    pub(crate) fn check(&self, nonce: &str, realm: &str) -> Option<([u8; NONCE_BYTES], u64)> {
        use subtle::ConstantTimeEq as _;
        if nonce.len() != NONCE_CHARS {
            return None;
        }
        let decoded = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        let raw: [u8; NONCE_BYTES] = decoded.try_into().ok()?;
        let mac = hmac(&self.nonce, &[&raw[..8], &raw[8..16], realm.as_bytes()]);
        if !bool::from(mac[..16].ct_eq(&raw[16..])) {
            return None;
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        Some((raw, u64::from_be_bytes(issued)))
    }

    /// The opaque value for a realm: the same for every user and every node.
    pub(crate) fn opaque(&self, realm: &str) -> String {
        let mac = hmac(&self.opaque, &[realm.as_bytes()]);
        URL_SAFE_NO_PAD.encode(&mac[..16])
    }

    /// Key material for a decoy HA1 of an unknown user.
    pub(crate) fn decoy(&self, algorithm: &str, username: &str) -> [u8; 32] {
        hmac(
            &self.decoy,
            &[algorithm.as_bytes(), b":", username.as_bytes()],
        )
    }
}

/// What the nonce-count memory says about an `nc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NcCheck {
    /// Greater than any accepted for this nonce.
    Fresh,
    /// Not greater than one already accepted: a replay.
    Replay,
    /// The nonce's record was evicted under pressure: it must be treated as stale.
    Forgotten,
}

/// The highest accepted `nc` per nonce, bounded in size.
///
/// Entries whose nonce has expired are dropped first (an expired nonce is refused as stale
/// before this memory is asked). When it is still full the oldest-issued entry is evicted and its
/// issue time becomes a watermark: an unknown nonce issued at or before the watermark might have
/// been evicted, so it is reported [`NcCheck::Forgotten`] (the caller answers stale and the
/// client fetches a fresh nonce). Replays are therefore refused even under memory pressure.
#[derive(Debug)]
pub(crate) struct NonceCounter {
    /// Nonce → highest accepted nc.
    entries: HashMap<[u8; NONCE_BYTES], u32>,
    order: BTreeSet<(u64, [u8; NONCE_BYTES])>,
    capacity: usize,
    watermark: Option<u64>,
}

impl NonceCounter {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            capacity: capacity.max(1),
            watermark: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn check(&self, nonce: &[u8; NONCE_BYTES], issued_at_ms: u64, nc: u32) -> NcCheck {
        match self.entries.get(nonce) {
            Some(&highest) if nc <= highest => NcCheck::Replay,
            Some(_) => NcCheck::Fresh,
            None if self.watermark.is_some_and(|w| issued_at_ms <= w) => NcCheck::Forgotten,
            None => NcCheck::Fresh,
        }
    }

    /// Records an accepted `nc` (after [`Self::check`] said `Fresh`).
    pub(crate) fn record(
        &mut self,
        nonce: [u8; NONCE_BYTES],
        issued_at_ms: u64,
        nc: u32,
        expired_before_ms: u64,
    ) {
        if let Some(highest) = self.entries.get_mut(&nonce) {
            *highest = (*highest).max(nc);
            return;
        }
        // Drop expired entries from the old end.
        while let Some(&(issued, key)) = self.order.first() {
            if issued >= expired_before_ms {
                break;
            }
            self.order.pop_first();
            self.entries.remove(&key);
        }
        while self.entries.len() >= self.capacity {
            let Some((issued, key)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&key);
            self.watermark = Some(self.watermark.map_or(issued, |w| w.max(issued)));
        }
        self.entries.insert(nonce, nc);
        self.order.insert((issued_at_ms, nonce));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_round_trip_and_tamper() {
        let key = NonceKey::new(b"secret");
        let nonce = key.issue(1_700_000_000_000, [7; 8], "pbx");
        assert_eq!(nonce.len(), NONCE_CHARS);
        let (_, issued) = key.check(&nonce, "pbx").unwrap();
        assert_eq!(issued, 1_700_000_000_000);
        assert!(key.check(&nonce, "other").is_none());
        assert!(NonceKey::new(b"other").check(&nonce, "pbx").is_none());
        let mut bytes = nonce.into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        assert!(
            key.check(std::str::from_utf8(&bytes).unwrap(), "pbx")
                .is_none()
        );
        assert!(key.check("", "pbx").is_none());
        assert!(key.check(&"!".repeat(NONCE_CHARS), "pbx").is_none());
    }

    #[test]
    fn counter_refuses_replays_and_forgets_safely() {
        let mut counter = NonceCounter::new(2);
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        assert_eq!(counter.check(&a, 10, 1), NcCheck::Fresh);
        counter.record(a, 10, 1, 0);
        assert_eq!(counter.check(&a, 10, 1), NcCheck::Replay);
        assert_eq!(counter.check(&a, 10, 2), NcCheck::Fresh);
        counter.record(a, 10, 2, 0);
        counter.record(b, 20, 1, 0);
        counter.record(c, 30, 1, 0);
        assert_eq!(counter.len(), 2);
        // `a` was evicted: it, and any other unknown nonce as old, is forgotten, not fresh.
        assert_eq!(counter.check(&a, 10, 3), NcCheck::Forgotten);
        assert_eq!(counter.check(&[9; 32], 5, 1), NcCheck::Forgotten);
        assert_eq!(counter.check(&[9; 32], 40, 1), NcCheck::Fresh);
        // Expired entries go first, without raising the watermark.
        counter.record([4; 32], 40, 1, 25);
        assert_eq!(counter.len(), 2);
        assert_eq!(counter.check(&c, 30, 1), NcCheck::Replay);
    }
}
