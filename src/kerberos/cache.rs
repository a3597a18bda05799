//! The read-ticket cache: Outlook presents one service ticket on every new connection for
//! hours, so a repeated ticket costs a hash lookup and a comparison, not a decryption.
//! A [`crate::cache::DigestCache`], like the failed-token cache: keyed by the
//! SHA-256 of the ticket's DER, so that only the very same ticket is ever a hit and an
//! entry costs the same whatever the ticket's size (holding whole tickets, a realm user
//! asking the KDC for 40 KB tickets padded as they like could make 100,000 entries take
//! 4.4 GiB: found by the red team).

use std::sync::Arc;

use super::TicketClient;
use crate::cache::{DigestCache, digest};

/// A bounded map from ticket DER to the client it names.
pub struct TicketCache {
    map: DigestCache<Arc<TicketClient>>,
}

impl TicketCache {
    /// A cache of at most `max_entries` tickets; 0 caches nothing.
    pub fn new(max_entries: usize) -> TicketCache {
        TicketCache {
            map: DigestCache::new(max_entries),
        }
    }

    /// The client of exactly this ticket, if it was read before and has not ended at
    /// `now` (Unix seconds).
    pub fn get(&self, ticket: &[u8], now: u64) -> Option<Arc<TicketClient>> {
        if !self.map.is_enabled() {
            return None;
        }
        self.map.get(&digest(ticket), now)
    }

    /// Remembers a ticket's client until its `endtime` (+ clock skew), evicting ended
    /// entries (or, when none has ended, an arbitrary one) to stay within the bound.
    pub fn insert(&self, ticket: &[u8], client: Arc<TicketClient>, now: u64) {
        if !self.map.is_enabled() {
            return;
        }
        let until = client.endtime.saturating_add(super::CLOCK_SKEW_SECONDS);
        self.map.insert(digest(ticket), client, until, now);
    }

    /// How many tickets are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
