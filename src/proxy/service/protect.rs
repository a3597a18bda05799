//! Smart lockout and spray detection around the request path (SPEC §9): noted before a
//! legacy request is decided final, fed Exchange's verdict after it is forwarded.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::Connection;
use crate::audit::AuditEvent;
use crate::cluster::InFlight;
use crate::policy::{Decision, Reason};
use crate::protect::{Admission, BadPassword, Location, LockoutMode};
use crate::proxy::Shared;

/// A legacy attempt counted in flight (here, and in Redis with `[cluster]`) until
/// Exchange answers it: [`Connection::protect_after`] takes it; dropped unanswered (the
/// client went away, the upstream failed), it is released in the background.
pub(super) struct Attempt {
    shared: Arc<Shared>,
    user: String,
    ip: IpAddr,
    /// The location this instance counted it under, when it did.
    local: Option<Location>,
    /// Where Redis counts it, when it does.
    fleet: Option<InFlight>,
    /// A success from here changes the fleet's state (see `Checked`).
    success_changes: bool,
}

impl Attempt {
    fn release(&mut self) {
        if let Some(location) = self.local.take() {
            self.shared.protect.release(&self.user, location);
        }
        if let (Some(cluster), Some(attempt)) = (&self.shared.cluster, self.fleet.take()) {
            cluster.release(attempt);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.release();
    }
}

impl Connection {
    /// Smart lockout and spray detection for legacy credentials that name a user: notes
    /// the attempt, and refuses it at the edge when the user is locked out from here,
    /// when the attempts already in flight could lock it (a burst of parallel guesses),
    /// or when the address is a blocked spray source. With `[cluster]` the fleet's state
    /// decides (one Redis round trip); this instance's is kept too and decides when
    /// Redis does not answer in time. Returns the refusal, or the attempt to hand to
    /// [`Connection::protect_after`] once Exchange answers.
    pub(super) async fn protect_before(
        &self,
        decision: &Decision,
        user: Option<&str>,
        now: Instant,
    ) -> (Option<Reason>, Option<Attempt>) {
        let (true, Some(user)) = (decision.legacy, user) else {
            return (None, None);
        };
        if !decision.action.forwards() && self.client.shared.cluster.is_none() {
            self.note_refused(user, now);
            return (None, None);
        }
        let (protect, ip) = (&self.client.shared.protect, self.client_ip());
        let config = protect.config();
        let flagged_here = protect.attempt(user, ip, now);
        let enforce = config.lockout_mode == LockoutMode::Enforce;
        let forwards = decision.action.forwards();
        // This instance's count, kept whatever Redis says (it decides during an outage).
        let admission =
            (forwards && config.lockout_enabled && enforce).then(|| protect.admit(user, ip, now));
        let local = match admission {
            Some(Admission::Admitted(location)) => Some(location),
            _ => None,
        };
        let (mut fleet_reserved, mut success_changes) = (None, true);
        let fleet = match &self.client.shared.cluster {
            Some(cluster) => {
                let reserve = forwards && enforce;
                // Boxed, as every Redis round trip here (see `Connection::handle`).
                Box::pin(cluster.check(
                    user,
                    ip,
                    &config,
                    reserve,
                    self.client.shared.timeouts.lockout_hold,
                ))
                .await
            }
            None => None,
        };
        let spray_blocking = config.spray_enabled && config.spray_block;
        let (flagged_now, spray_blocked, refusal) = match fleet {
            Some(c) => {
                fleet_reserved = c.reserved;
                success_changes = c.success_changes_state;
                if let Some(location) = c.locked_out {
                    protect.note_lockout(user, location, now);
                }
                let refusal = match (c.locked_out, c.busy) {
                    (Some(_), _) if enforce => Some(Reason::LockedOut),
                    (_, true) => Some(Reason::LockoutPending),
                    _ => None,
                };
                (
                    c.spray_flagged_now,
                    c.spray_flagged && spray_blocking,
                    refusal,
                )
            }
            None => {
                let refusal = match admission {
                    Some(Admission::LockedOut(_)) => Some(Reason::LockedOut),
                    Some(Admission::Busy(_)) => Some(Reason::LockoutPending),
                    _ => None,
                };
                (flagged_here, protect.spray_blocked(ip, now), refusal)
            }
        };
        if flagged_now {
            self.spray_suspected(user, ip);
        }
        if !forwards {
            return (None, None); // nothing was counted in flight
        }
        // Built only for a forwarded attempt (blocked requests, the hot path, skip it); a
        // refused one that was counted in flight is released as it drops here.
        let attempt = Attempt {
            shared: self.client.shared.clone(),
            user: user.to_owned(),
            ip,
            local,
            fleet: fleet_reserved,
            success_changes,
        };
        match spray_blocked.then_some(Reason::SpraySuspect).or(refusal) {
            Some(reason) => (Some(reason), None),
            None => (None, Some(attempt)),
        }
    }

    /// [`Connection::protect_before`] for legacy credentials naming `user` that the
    /// policy refused, without `[cluster]`: counted for spray detection only (nothing is
    /// in flight to Exchange, so lockout has nothing to count).
    pub(super) fn note_refused(&self, user: &str, now: Instant) {
        let ip = self.client_ip();
        if self.client.shared.protect.attempt(user, ip, now) {
            self.spray_suspected(user, ip);
        }
    }

    /// Reports the address that just became a spray suspect.
    fn spray_suspected(&self, user: &str, ip: IpAddr) {
        self.client.shared.metrics.record_spray_suspect();
        self.audit_event("spray_suspect", user, None);
        tracing::warn!(client = %ip, "password spray suspected: many user names from one address");
    }

    /// Feeds Exchange's verdict on forwarded legacy credentials back into lockout: a bad
    /// password (401) is counted before its 401 goes back (with `[cluster]`, in Redis,
    /// so that the next attempt on any instance sees it); a success (2xx on a resource
    /// that needs a password) clears the location's count and makes the address
    /// familiar (sent to Redis in the background); any other answer only ends the
    /// attempt.
    pub(super) async fn protect_after(
        &self,
        decision: &Decision,
        attempt: Option<Attempt>,
        status: u16,
        password_checked: bool,
    ) {
        let Some(mut attempt) = attempt else {
            return;
        };
        if !decision.legacy {
            return;
        }
        let (protect, ip) = (&self.client.shared.protect, attempt.ip);
        let user = attempt.user.clone();
        if status == 401 {
            if let Some(location) = attempt.local.take() {
                protect.release(&user, location);
            }
            let here = protect.bad_password(&user, ip, Instant::now());
            let verdict = match &self.client.shared.cluster {
                Some(cluster) => Box::pin(cluster.bad_password(
                    &user,
                    ip,
                    &protect.config(),
                    attempt.fleet.take().as_ref(),
                ))
                .await
                .unwrap_or(here),
                None => here,
            };
            if let BadPassword::LockedOut(location) = verdict {
                protect.note_lockout(&user, location, Instant::now());
                self.client.shared.metrics.record_lockout(location.as_str());
                self.audit_event("lockout", &user, Some(location.as_str()));
            }
        } else if (200..300).contains(&status) && password_checked {
            if let Some(location) = attempt.local.take() {
                protect.release(&user, location);
            }
            protect.good_password(&user, ip);
            if let Some(cluster) = &self.client.shared.cluster {
                cluster.good_password(&user, ip, attempt.fleet.take(), attempt.success_changes);
            }
        }
        // Anything else (a redirect, 403, 5xx, an anonymous resource): released on drop.
    }

    /// The client's address as lockout and spray count it: an IPv4-mapped IPv6 address
    /// (a dual-stack listener's view of an IPv4 client) is the IPv4 address, so that
    /// every instance counts one client alike.
    pub(super) fn client_ip(&self) -> IpAddr {
        self.client.peer.ip().to_canonical()
    }

    /// Writes a lockout or spray event's audit line, naming the user's directory
    /// identity when the name is a declared user's.
    pub(super) fn audit_event(&self, event: &str, user: &str, location: Option<&str>) {
        if let Some(audit) = &self.client.shared.audit {
            let snapshot = self.client.shared.snapshot.load();
            let (user, presented_user) =
                crate::audit::user_names(snapshot.engine.directory(), None, Some(user));
            audit.write(&AuditEvent {
                ts: crate::audit::timestamp(),
                event: event.into(),
                request_id: audit.request_id(),
                client_ip: self.client_ip().to_string(),
                user,
                presented_user,
                legacy: true,
                location: location.map(Into::into),
            });
        }
    }
}
