//! Kerberos users get their own policy (SPEC §3 "Kerberos"): with the keytab of the
//! Exchange service principal, exgate decrypts the ticket inside a client's AP-REQ and
//! reads who the client is. It never answers the AP-REQ (Exchange authenticates the
//! client, checks the authenticator and keeps the replay cache) and keeps what it read
//! no longer than the ticket's `endtime`.
//!
//! ASN.1 and AES come from `picky-krb`, RC4-HMAC from `kerberos_crypto`; the keytab file
//! format is read here ([`keytab`]).

pub mod build;
mod cache;
pub mod keytab;
pub mod ticket;

use std::path::PathBuf;
use std::sync::Arc;

pub use cache::TicketCache;
pub use keytab::{Keytab, KeytabEntry, KeytabError, Principal};
pub use ticket::{TicketClient, TicketError};

/// How long after its `endtime` a ticket still names its client: the Kerberos clock skew
/// Windows and MIT allow by default (5 minutes, RFC 4120 §1.6 "reasonable").
pub const CLOCK_SKEW_SECONDS: u64 = 300;

/// Where a [`TicketReader::read`] answer came from (`exgate_kerberos_tickets_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The ticket was decrypted now.
    Decrypted,
    /// The very same ticket was decrypted earlier and has not ended.
    Cached,
}

impl Source {
    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Source::Decrypted => "decrypted",
            Source::Cached => "cached",
        }
    }
}

/// Reads the client principal out of AP-REQs with one keytab, caching by ticket.
pub struct TicketReader {
    keytab: Arc<Keytab>,
    cache: TicketCache,
}

impl std::fmt::Debug for TicketReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketReader")
            .field("keys", &self.keytab.entries.len())
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl TicketReader {
    /// A reader over `keytab`, remembering at most `cache_max_entries` tickets (0: none).
    pub fn new(keytab: Arc<Keytab>, cache_max_entries: usize) -> TicketReader {
        TicketReader {
            keytab,
            cache: TicketCache::new(cache_max_entries),
        }
    }

    /// The client of the AP-REQ `ap_req` (DER), at Unix time `now` (seconds).
    ///
    /// A ticket read before and not yet ended costs a lookup; any other is decrypted
    /// ([`ticket::read_client`]) and remembered until its `endtime` (+ clock skew).
    /// Errors: the AP-REQ is malformed, no key fits, none decrypts it, its client is not
    /// a plain user principal, or it ended more than [`CLOCK_SKEW_SECONDS`] ago.
    pub fn read(
        &self,
        ap_req: &[u8],
        now: u64,
    ) -> Result<(Arc<TicketClient>, Source), TicketError> {
        if ap_req.len() > ticket::MAX_AP_REQ_BYTES {
            return Err(TicketError::Malformed);
        }
        let ticket = ticket::ticket_der(ap_req).ok_or(TicketError::Malformed)?;
        if let Some(client) = self.cache.get(ticket, now) {
            return Ok((client, Source::Cached));
        }
        let client = Arc::new(ticket::read_client(&self.keytab, ap_req)?);
        if client.endtime.saturating_add(CLOCK_SKEW_SECONDS) < now {
            return Err(TicketError::Expired);
        }
        self.cache.insert(ticket, client.clone(), now);
        Ok((client, Source::Decrypted))
    }

    /// How many tickets are remembered.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests;

/// How many read tickets are remembered by default: one per Kerberos user's service
/// ticket, which Outlook reuses on every connection for hours.
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 100_000;

/// The validated `[kerberos]` section.
#[derive(Clone, Debug)]
pub struct KerberosConfig {
    /// `kerberos.keytab`, resolved against the configuration's folder.
    pub keytab_path: PathBuf,
    /// Its keys (secrets: `Debug` redacts them).
    pub keytab: Arc<Keytab>,
    /// `kerberos.cache_max_entries` (default 100,000; 0 caches nothing).
    pub cache_max_entries: usize,
}
