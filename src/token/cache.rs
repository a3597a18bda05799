//! The token caches: a repeated token costs a hash lookup and a comparison, not an RSA
//! verification, whether it verified ([`VerifiedCache`]) or failed ([`FailedCache`]).
//! Both are [`crate::cache`] maps, bounded and sharded.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::TokenError;
use crate::cache::{BoundedCache, Digest, DigestCache};

/// What exgate learned from a token it verified.
#[derive(Debug)]
pub struct Verified {
    token: Box<str>,
    /// Index of the issuer that signed it.
    pub issuer: usize,
    /// The [`KeySet::generation`](super::KeySet::generation) that verified it: under any
    /// other key set (a key replaced under the same `kid`, a key removed, any refresh)
    /// the entry is void and the token is verified again.
    pub generation: u64,
    /// Unix seconds after which the token is no longer accepted (`exp` + leeway).
    pub valid_until: u64,
    /// The user (`upn`, `unique_name`, `preferred_username` or `oid`).
    pub user: Option<String>,
    /// The token shows multi-factor authentication.
    pub mfa: bool,
}

impl Verified {
    /// A verified token's facts.
    pub fn new(
        token: &str,
        issuer: usize,
        generation: u64,
        valid_until: u64,
        user: Option<String>,
        mfa: bool,
    ) -> Verified {
        Verified {
            token: token.into(),
            issuer,
            generation,
            valid_until,
            user,
            mfa,
        }
    }
}

/// A bounded map from token to [`Verified`], keyed by the token's signature (itself a
/// digest of the signed token); each entry holds the whole token, so that only the very
/// same token is ever a hit.
pub struct VerifiedCache {
    map: BoundedCache<Box<str>, Arc<Verified>>,
}

/// The signature segment of a compact JWS, the cache key.
fn signature(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(_, s)| s)
}

impl VerifiedCache {
    /// A cache of at most `max_entries` tokens; 0 caches nothing.
    pub fn new(max_entries: usize) -> VerifiedCache {
        VerifiedCache {
            map: BoundedCache::new(max_entries),
        }
    }

    /// Whether the cache keeps anything (`tokens.cache_max_entries` > 0).
    pub fn is_enabled(&self) -> bool {
        self.map.is_enabled()
    }

    /// The entry for exactly this token, if it is still valid at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Verified>> {
        self.map
            .get(signature(token), now)
            .filter(|v| *v.token == *token)
    }

    /// Remembers a verified token until it expires.
    pub fn insert(&self, verified: Arc<Verified>, now: u64) {
        let sig = signature(&verified.token).into();
        let until = verified.valid_until;
        self.map.insert(sig, verified, until, now);
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a failed verification is remembered. Its outcome cannot change while the
/// issuer's key set stays the same (the same bytes never verify under the same keys, and
/// an expired or wrongly addressed token stays so); the bound only returns memory.
pub const FAILED_TTL_SECONDS: u64 = 600;

/// A token that failed after its key was found: what it failed with, and under which
/// key set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed {
    /// Index of the issuer whose key set refused it.
    pub issuer: usize,
    /// That key set's [`KeySet::generation`](super::KeySet::generation): a new set
    /// (rotation, removal, or any refresh) voids the entry.
    pub generation: u64,
    /// The refusal.
    pub error: TokenError,
    /// For [`TokenError::Expired`], the token's last valid instant (`exp` + leeway, Unix
    /// seconds; 0 otherwise): a clock stepped back before it makes the entry void, since
    /// the token is then valid again.
    pub expired_after: u64,
}

impl Failed {
    /// Whether the refusal still holds at `now` under the key set numbered `generation`.
    pub fn holds(&self, generation: u64, now: u64) -> bool {
        self.generation == generation
            && (self.error != TokenError::Expired || now > self.expired_after)
    }
}

/// Recent failed verifications, keyed by the SHA-256 of the whole token, so that a forged
/// token sent in a loop pays one RSA verification, not one per request. Bounded
/// separately from [`VerifiedCache`]: a flood of distinct forgeries evicts only other
/// forgeries, never a legitimate client's verified token. Entries are a fixed 56 bytes
/// whatever the token's size.
///
/// In front of the map, a filter of [`FILTER_BITS`] bits (8 KiB) says which tokens may be
/// remembered: one bit per token, picked by a seeded hash of its signature, set when its
/// failure is remembered and never cleared. A token whose bit is clear was never
/// remembered, which [`FailedCache::may_hold`] tells without the digest of the whole
/// token; a set bit (the token's own, or another's) only means the map must be asked.
pub struct FailedCache {
    map: DigestCache<Failed>,
    /// [`FILTER_BITS`] bits; none when the cache keeps nothing.
    filter: Box<[AtomicU64]>,
    /// A per-process random seed of the filter's hash, so that an attacker cannot aim
    /// forgeries at the bits of tokens they do not have.
    seed: u64,
}

/// The bits of [`FailedCache`]'s filter. Each distinct forgery sets at most one; past
/// tens of thousands of them most bits are set, and every token asks the map, as it
/// would without a filter.
pub const FILTER_BITS: usize = 1 << 16;

impl FailedCache {
    /// A cache of at most `max_entries` failures; 0 caches nothing.
    pub fn new(max_entries: usize) -> FailedCache {
        let map = DigestCache::new(max_entries);
        let words = if map.is_enabled() {
            FILTER_BITS / 64
        } else {
            0
        };
        FailedCache {
            map,
            filter: (0..words).map(|_| AtomicU64::new(0)).collect(),
            seed: RandomState::new().hash_one(0u64),
        }
    }

    /// The filter word and bit of `token`: a seeded multiply-rotate hash of its
    /// signature segment (the bytes after the last `.`), eight bytes at a time, then
    /// mixed.
    fn filter_bit(&self, token: &[u8]) -> (usize, u64) {
        let signature = match memchr::memrchr(b'.', token) {
            Some(dot) => &token[dot + 1..],
            None => token,
        };
        let mut hash = self.seed ^ signature.len() as u64;
        for chunk in signature.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            hash = (hash ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
        // MurmurHash3's 64-bit finalizer, so that every bit of the input moves the bit
        // picked.
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^= hash >> 33;
        let bit = (hash >> 48) as usize % FILTER_BITS;
        (bit / 64, 1 << (bit % 64))
    }

    /// Whether a failure may be remembered for `token` (any bytes): false only when it
    /// certainly is not, at the cost of a pass over its signature.
    pub fn may_hold(&self, token: &[u8]) -> bool {
        if self.filter.is_empty() {
            return false;
        }
        let (word, bit) = self.filter_bit(token);
        self.filter[word].load(Ordering::Relaxed) & bit != 0
    }

    /// Whether the cache keeps anything.
    pub fn is_enabled(&self) -> bool {
        self.map.is_enabled()
    }

    /// The failure remembered for the token whose digest is `key`, if any at `now`.
    pub fn get(&self, key: &Digest, now: u64) -> Option<Failed> {
        self.map.get(key, now)
    }

    /// Remembers the failure of `token`, whose digest is `key`, for
    /// [`FAILED_TTL_SECONDS`].
    pub fn insert(&self, token: &str, key: Digest, failed: Failed, now: u64) {
        if self.filter.is_empty() {
            return;
        }
        // The bit first: a token in the map always has its bit set.
        let (word, bit) = self.filter_bit(token.as_bytes());
        self.filter[word].fetch_or(bit, Ordering::Relaxed);
        self.map
            .insert(key, failed, now.saturating_add(FAILED_TTL_SECONDS), now);
    }

    /// Forgets a failure (its key set has changed).
    pub fn remove(&self, key: &Digest) {
        self.map.remove(key);
    }

    /// How many failures are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{SHARDS, digest};

    fn verified(token: &str, valid_until: u64) -> Arc<Verified> {
        Arc::new(Verified::new(token, 0, 1, valid_until, None, true))
    }

    #[test]
    fn only_the_same_token_hits() {
        let cache = VerifiedCache::new(100);
        cache.insert(verified("h.p.sig", 1000), 0);
        assert!(cache.get("h.p.sig", 10).is_some());
        // Same signature, different payload: a forgery attempt, never a hit.
        assert!(cache.get("h.forged.sig", 10).is_none());
        assert!(cache.get("h.p.other", 10).is_none());
    }

    #[test]
    fn the_filter_holds_every_remembered_token_and_few_others() {
        let cache = FailedCache::new(100);
        let token = |i: usize| format!("eyJh.eyJw.c2ln{i:06}QmFk");
        assert!((0..1000).all(|i| !cache.may_hold(token(i).as_bytes())));
        for i in 0..10 {
            cache.insert(&token(i), digest(token(i).as_bytes()), failed(1), 0);
        }
        // Never a false negative, whatever the seed.
        assert!((0..10).all(|i| cache.may_hold(token(i).as_bytes())));
        // 10 of 65,536 bits set: about 0.15 of 1,000 other tokens read a set bit.
        let others = (10..1010)
            .filter(|&i| cache.may_hold(token(i).as_bytes()))
            .count();
        assert!(others <= 5, "{others}");
        // Only the signature picks the bit: a token that keeps a remembered one's
        // signature may be remembered (the map tells).
        assert!(cache.may_hold(b"eyJo.eyJvdGhlcg.c2ln000003QmFk"));
        // Any bytes are read without a panic.
        for bytes in [&b""[..], b".", b"...", b"\xff\xfe.\x00", b"no-dot-at-all"] {
            let _ = cache.may_hold(bytes);
        }
    }

    #[test]
    fn a_zero_sized_failed_cache_filters_everything_out() {
        let cache = FailedCache::new(0);
        cache.insert("a.b.c", digest(b"a.b.c"), failed(1), 0);
        assert!(!cache.may_hold(b"a.b.c"));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_zero_sized_cache_caches_nothing() {
        let cache = VerifiedCache::new(0);
        cache.insert(verified("h.p.sig", 1000), 0);
        assert!(cache.get("h.p.sig", 10).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn entries_end_at_their_expiry() {
        let cache = VerifiedCache::new(100);
        cache.insert(verified("a.b.c", 1000), 0);
        assert!(cache.get("a.b.c", 1000).is_some());
        assert!(cache.get("a.b.c", 1001).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let cache = VerifiedCache::new(64);
        for i in 0..10_000 {
            cache.insert(verified(&format!("h.p.sig{i:05}xyzw"), 5000), 0);
        }
        assert!(cache.len() <= 64 + SHARDS, "{}", cache.len());
        // Expired entries go first.
        let cache = VerifiedCache::new(16);
        for i in 0..16 {
            cache.insert(verified(&format!("h.p.old{i}"), 10), 0);
        }
        cache.insert(verified("h.p.new", 5000), 100);
        assert!(cache.get("h.p.new", 100).is_some());
    }

    fn failed(generation: u64) -> Failed {
        Failed {
            issuer: 0,
            generation,
            error: TokenError::BadSignature,
            expired_after: 0,
        }
    }

    #[test]
    fn a_failure_is_remembered_for_its_ttl_and_only_for_that_token() {
        let cache = FailedCache::new(100);
        cache.insert("h.p.forged", digest(b"h.p.forged"), failed(7), 1000);
        assert_eq!(cache.get(&digest(b"h.p.forged"), 1000), Some(failed(7)));
        assert_eq!(
            cache.get(&digest(b"h.p.forged"), 1000 + FAILED_TTL_SECONDS),
            Some(failed(7))
        );
        assert_eq!(
            cache.get(&digest(b"h.p.forged"), 1001 + FAILED_TTL_SECONDS),
            None
        );
        assert_eq!(cache.get(&digest(b"h.p.forgee"), 1000), None);
        cache.remove(&digest(b"h.p.forged"));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_flood_of_distinct_forgeries_stays_within_the_bound() {
        let cache = FailedCache::new(1000);
        for i in 0..100_000u32 {
            let token = format!("h.p.{i:08}");
            cache.insert(
                &token,
                digest(token.as_bytes()),
                failed(1),
                u64::from(i / 1000),
            );
        }
        assert!(cache.len() <= 1000 + SHARDS, "{}", cache.len());
        // The newest are kept.
        assert!(cache.get(&digest(b"h.p.00099999"), 99).is_some());
        assert!(FailedCache::new(0).get(&digest(b"x"), 0).is_none());
    }

    #[test]
    fn a_failure_holds_only_under_its_key_set_and_an_expiry_only_after_it() {
        assert!(failed(7).holds(7, 0));
        assert!(!failed(7).holds(8, 0));
        let expired = Failed {
            error: TokenError::Expired,
            expired_after: 1000,
            ..failed(7)
        };
        assert!(expired.holds(7, 1001));
        // The clock stepped back: the token is valid again, the entry is void.
        assert!(!expired.holds(7, 1000));
        assert!(!expired.holds(7, 10));
    }
}
