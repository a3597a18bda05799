//! The read-ticket cache: Outlook presents one service ticket on every new connection for
//! hours, so a repeated ticket costs a hash lookup and a comparison, not a decryption.
//! Bounded and sharded like the verified-token cache (`token::cache`); keyed by the
//! SHA-256 of the ticket's DER, so that only the very same ticket is ever a hit and an
//! entry costs the same whatever the ticket's size (holding whole tickets, a realm user
//! asking the KDC for 40 KB tickets padded as they like could make 100,000 entries take
//! 4.4 GiB: found by the red team).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::TicketClient;

const SHARDS: usize = 16;
const KEY_BYTES: usize = 32;

type Key = [u8; KEY_BYTES];

struct Entry {
    client: Arc<TicketClient>,
}

/// A bounded map from ticket DER to the client it names.
pub struct TicketCache {
    shards: Vec<RwLock<HashMap<Key, Entry>>>,
    per_shard: usize,
}

fn key_of(ticket: &[u8]) -> Key {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ticket);
    let mut key = [0; KEY_BYTES];
    key.copy_from_slice(digest.as_ref());
    key
}

fn shard_of(key: &Key) -> usize {
    usize::from(key[KEY_BYTES - 1]) % SHARDS
}

impl TicketCache {
    /// A cache of at most `max_entries` tickets; 0 caches nothing.
    pub fn new(max_entries: usize) -> TicketCache {
        let shards = if max_entries == 0 { 0 } else { SHARDS };
        TicketCache {
            shards: (0..shards).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    /// The client of exactly this ticket, if it was read before and has not ended at
    /// `now` (Unix seconds).
    pub fn get(&self, ticket: &[u8], now: u64) -> Option<Arc<TicketClient>> {
        if self.shards.is_empty() {
            return None;
        }
        let key = key_of(ticket);
        let shard = self.shards[shard_of(&key)]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        shard
            .get(&key)
            .filter(|e| now <= e.client.endtime.saturating_add(super::CLOCK_SKEW_SECONDS))
            .map(|e| e.client.clone())
    }

    /// Remembers a ticket's client, evicting ended entries (or, when none has ended, an
    /// arbitrary one) to stay within the bound.
    pub fn insert(&self, ticket: &[u8], client: Arc<TicketClient>, now: u64) {
        if self.shards.is_empty() {
            return;
        }
        let key = key_of(ticket);
        let mut shard = self.shards[shard_of(&key)]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| now <= e.client.endtime.saturating_add(super::CLOCK_SKEW_SECONDS));
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(key, Entry { client });
    }

    /// How many tickets are remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
