//! The verified-token cache: a repeated token costs a hash lookup and a comparison, not
//! an RSA verification. Bounded, sharded so that connections rarely meet on one lock,
//! keyed by the token's signature (itself a digest of the signed token), and each entry
//! holds the whole token so that only the very same token is ever a hit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const SHARDS: usize = 16;

/// What exgate learned from a token it verified.
#[derive(Debug)]
pub struct Verified {
    token: Box<str>,
    /// Index of the issuer that signed it.
    pub issuer: usize,
    /// The signing key: when it leaves the issuer's key set, the entry is void.
    pub kid: Option<String>,
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
        kid: Option<String>,
        valid_until: u64,
        user: Option<String>,
        mfa: bool,
    ) -> Verified {
        Verified {
            token: token.into(),
            issuer,
            kid,
            valid_until,
            user,
            mfa,
        }
    }
}

/// A bounded map from token to [`Verified`].
pub struct VerifiedCache {
    shards: Vec<RwLock<HashMap<Box<str>, Arc<Verified>>>>,
    per_shard: usize,
}

/// The signature segment of a compact JWS, the cache key.
fn signature(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(_, s)| s)
}

fn shard_of(sig: &str) -> usize {
    // Signature bytes are uniformly distributed; a few of them pick the shard.
    sig.bytes().rev().take(8).fold(0usize, |a, b| {
        a.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % SHARDS
}

impl VerifiedCache {
    /// A cache of at most `max_entries` tokens; 0 caches nothing.
    pub fn new(max_entries: usize) -> VerifiedCache {
        let shards = if max_entries == 0 { 0 } else { SHARDS };
        VerifiedCache {
            shards: (0..shards).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    /// Whether the cache keeps anything (`tokens.cache_max_entries` > 0).
    pub fn is_enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    /// The entry for exactly this token, if it is still valid at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Verified>> {
        if self.shards.is_empty() {
            return None;
        }
        let sig = signature(token);
        let shard = self.shards[shard_of(sig)]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        shard
            .get(sig)
            .filter(|v| *v.token == *token && now <= v.valid_until)
            .cloned()
    }

    /// Remembers a verified token, evicting expired entries (or, when none has expired,
    /// an arbitrary one) to stay within the bound.
    pub fn insert(&self, verified: Arc<Verified>, now: u64) {
        if self.shards.is_empty() {
            return;
        }
        let sig: Box<str> = signature(&verified.token).into();
        let mut shard = self.shards[shard_of(&sig)]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&sig) {
            shard.retain(|_, v| now <= v.valid_until);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().cloned()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(sig, verified);
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(token: &str, valid_until: u64) -> Arc<Verified> {
        Arc::new(Verified::new(
            token,
            0,
            Some("k".into()),
            valid_until,
            None,
            true,
        ))
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
}
