//! Bounded, sharded maps from a credential's identity to what exgate learned from it:
//! verified tokens, tokens that failed verification, and read Kerberos tickets. A repeated
//! credential then costs a lookup instead of an RSA verification or a decryption.
//!
//! Every entry ends at its `valid_until` (Unix seconds). A full shard sweeps its ended
//! entries (at most once a second, so that a flood of new keys does not pay a sweep
//! each), then evicts an arbitrary entry. Shards keep connections from meeting on one lock.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::RwLock;

/// How many independently locked parts a cache has.
pub const SHARDS: usize = 16;

/// A SHA-256 digest: the key for credentials an attacker chooses freely (forged tokens,
/// tickets). A fixed-size key keeps an entry's cost independent of the credential's size
/// (a 32 KiB token costs what a 1 KiB one does), and SHA-256's collision resistance keeps
/// "the same digest" meaning "the same bytes".
pub type Digest = [u8; 32];

/// The SHA-256 of `bytes` (aws-lc-rs, which rustls builds anyway).
pub fn digest(bytes: &[u8]) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut key = [0; 32];
    key.copy_from_slice(d.as_ref());
    key
}

/// A key that picks its own shard cheaply (its bytes are already uniformly distributed:
/// a digest, or a token's signature).
pub trait ShardKey {
    /// The shard, in `0..SHARDS`.
    fn shard(&self) -> usize;
}

impl ShardKey for Digest {
    fn shard(&self) -> usize {
        usize::from(self[31]) % SHARDS
    }
}

impl ShardKey for str {
    fn shard(&self) -> usize {
        self.bytes().rev().take(8).fold(0usize, |a, b| {
            a.wrapping_mul(31).wrapping_add(usize::from(b))
        }) % SHARDS
    }
}

impl ShardKey for Box<str> {
    fn shard(&self) -> usize {
        (**self).shard()
    }
}

struct Entry<V> {
    value: V,
    valid_until: u64,
}

struct Shard<K, V, S> {
    map: HashMap<K, Entry<V>, S>,
    /// When ended entries may next be swept (Unix seconds).
    next_sweep: u64,
}

/// At most `max_entries` values (rounded up to a multiple of [`SHARDS`]), each until its
/// `valid_until`; 0 entries keeps nothing and costs nothing.
pub struct BoundedCache<K, V, S = RandomState> {
    shards: Vec<RwLock<Shard<K, V, S>>>,
    per_shard: usize,
}

/// A [`BoundedCache`] keyed by [`Digest`]. Its map still hashes the digest with a
/// per-process random key (SipHash, std's default): an attacker can grind SHA-256 inputs
/// until chosen bits of the digest collide, and would then pile entries into one probe
/// sequence (red team, issue 16).
pub type DigestCache<V> = BoundedCache<Digest, V>;

impl<K, V, S> BoundedCache<K, V, S>
where
    K: Hash + Eq + Clone + ShardKey,
    V: Clone,
    S: BuildHasher + Default,
{
    /// A cache of at most about `max_entries` values; 0 keeps nothing.
    pub fn new(max_entries: usize) -> BoundedCache<K, V, S> {
        let shards = if max_entries == 0 { 0 } else { SHARDS };
        BoundedCache {
            shards: (0..shards)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::default(),
                        next_sweep: 0,
                    })
                })
                .collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    /// Whether the cache keeps anything.
    pub fn is_enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    /// The value under `key`, if it has not ended at `now`.
    pub fn get<Q>(&self, key: &Q, now: u64) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        if self.shards.is_empty() {
            return None;
        }
        let shard = self.shards[key.shard()]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        shard
            .map
            .get(key)
            .filter(|e| now <= e.valid_until)
            .map(|e| e.value.clone())
    }

    /// Keeps `value` under `key` until `valid_until`, making room in a full shard: first
    /// by sweeping ended entries (at most once a second), then by evicting an arbitrary one.
    pub fn insert(&self, key: K, value: V, valid_until: u64, now: u64) {
        if self.shards.is_empty() {
            return;
        }
        let mut shard = self.shards[key.shard()]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if shard.map.len() >= self.per_shard && !shard.map.contains_key(&key) {
            if now >= shard.next_sweep {
                shard.map.retain(|_, e| now <= e.valid_until);
                shard.next_sweep = now.saturating_add(1);
            }
            if shard.map.len() >= self.per_shard {
                // An arbitrary victim: the first in the map's order.
                if let Some(victim) = shard.map.keys().next().cloned() {
                    shard.map.remove(&victim);
                }
            }
        }
        shard.map.insert(key, Entry { value, valid_until });
    }

    /// Forgets `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        if self.shards.is_empty() {
            return;
        }
        self.shards[key.shard()]
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .remove(key);
    }

    /// How many values are kept (ended ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_end_at_their_valid_until() {
        let cache: DigestCache<u32> = DigestCache::new(100);
        cache.insert(digest(b"a"), 1, 1000, 0);
        assert_eq!(cache.get(&digest(b"a"), 1000), Some(1));
        assert_eq!(cache.get(&digest(b"a"), 1001), None);
        assert_eq!(cache.get(&digest(b"b"), 10), None);
    }

    #[test]
    fn a_cache_of_zero_entries_keeps_nothing() {
        let cache: DigestCache<u32> = DigestCache::new(0);
        assert!(!cache.is_enabled());
        cache.insert(digest(b"a"), 1, 1000, 0);
        assert_eq!(cache.get(&digest(b"a"), 0), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_bound_and_ended_entries_go_first() {
        let cache: DigestCache<u32> = DigestCache::new(64);
        for i in 0..10_000u32 {
            cache.insert(digest(&i.to_le_bytes()), i, 5000, 0);
        }
        assert!(cache.len() <= 64 + SHARDS, "{}", cache.len());
        // A shard full of ended entries: the sweep makes room, nothing live is evicted.
        let cache: BoundedCache<Box<str>, u32> = BoundedCache::new(SHARDS);
        let same_shard: Vec<String> = (0..10_000)
            .map(|i| format!("k{i}"))
            .filter(|k| k.as_str().shard() == 0)
            .take(3)
            .collect();
        cache.insert(same_shard[0].as_str().into(), 0, 10, 0);
        cache.insert(same_shard[1].as_str().into(), 1, 5000, 100);
        assert_eq!(cache.get(same_shard[1].as_str(), 100), Some(1));
        assert_eq!(cache.len(), 1);
        // Full of a live entry: the newcomer evicts it, the bound holds.
        cache.insert(same_shard[2].as_str().into(), 2, 5000, 100);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(same_shard[2].as_str(), 100), Some(2));
    }

    #[test]
    fn removed_keys_are_gone() {
        let cache: DigestCache<u32> = DigestCache::new(10);
        cache.insert(digest(b"a"), 1, 1000, 0);
        cache.remove(&digest(b"a"));
        assert_eq!(cache.get(&digest(b"a"), 0), None);
    }

    #[test]
    fn digests_pick_every_shard() {
        let mut seen = [false; SHARDS];
        for i in 0..1000u32 {
            seen[digest(&i.to_le_bytes()).shard()] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
