//! Smart lockout and spray detection around the request path (SPEC §9): noted before a
//! legacy request is decided final, fed Exchange's verdict after it is forwarded.

use std::time::Instant;

use super::Connection;
use crate::audit::AuditEvent;
use crate::policy::{Decision, Reason};
use crate::protect::{BadPassword, LockoutMode};

impl Connection {
    /// Smart lockout and spray detection for legacy credentials that name a user: notes
    /// the attempt, and refuses it at the edge when the user is locked out from here or
    /// the address is a blocked spray source. With `[cluster]` the fleet's state decides
    /// (one Redis round trip); this instance's is kept too and decides when Redis does
    /// not answer in time. Returns the refusal, and whether a success would change the
    /// fleet's state (see [`Connection::protect_after`]).
    pub(super) async fn protect_before(
        &self,
        decision: &Decision,
        user: Option<&str>,
        now: Instant,
    ) -> (Option<Reason>, bool) {
        let (true, Some(user)) = (decision.legacy, user) else {
            return (None, false);
        };
        let (protect, ip) = (&self.shared.protect, self.peer.ip());
        let config = protect.config();
        let flagged_here = protect.attempt(user, ip, now);
        let fleet = match &self.shared.cluster {
            Some(cluster) => cluster.check(user, ip, &config).await,
            None => None,
        };
        let (flagged_now, spray_blocked, locked_out, success_changes) = match fleet {
            Some(c) => (
                c.spray_flagged_now,
                c.spray_flagged && config.spray_enabled && config.spray_block,
                c.locked_out,
                c.success_changes_state,
            ),
            None => (
                flagged_here,
                protect.spray_blocked(ip, now),
                protect.locked_out(user, ip, now),
                true,
            ),
        };
        if flagged_now {
            self.shared.metrics.record_spray_suspect();
            self.audit_event("spray_suspect", user, None);
            tracing::warn!(client = %ip, "password spray suspected: many user names from one address");
        }
        if !decision.action.forwards() {
            return (None, success_changes);
        }
        if spray_blocked {
            return (Some(Reason::SpraySuspect), success_changes);
        }
        // In log-only mode a lockout is counted, audited and metered, and refuses nothing.
        let enforce = config.lockout_mode == LockoutMode::Enforce;
        let refusal = locked_out.filter(|_| enforce).map(|_| Reason::LockedOut);
        (refusal, success_changes)
    }

    /// Feeds Exchange's verdict on forwarded legacy credentials back into lockout: a bad
    /// password is counted before its 401 goes back (with `[cluster]`, in Redis, so that
    /// the next attempt on any instance sees it); a success clears the location's count
    /// and makes the address familiar (sent to Redis in the background, and only when
    /// `success_changes` says it changes something).
    pub(super) async fn protect_after(
        &self,
        decision: &Decision,
        user: Option<&str>,
        status: u16,
        success_changes: bool,
    ) {
        let (true, Some(user)) = (decision.legacy, user) else {
            return;
        };
        let (protect, ip) = (&self.shared.protect, self.peer.ip());
        if status == 401 {
            let here = protect.bad_password(user, ip, Instant::now());
            let verdict = match &self.shared.cluster {
                Some(cluster) => cluster
                    .bad_password(user, ip, &protect.config())
                    .await
                    .unwrap_or(here),
                None => here,
            };
            if let BadPassword::LockedOut(location) = verdict {
                self.shared.metrics.record_lockout(location.as_str());
                self.audit_event("lockout", user, Some(location.as_str()));
            }
        } else if status < 400 {
            protect.good_password(user, ip);
            if let (Some(cluster), true) = (&self.shared.cluster, success_changes) {
                cluster.good_password(user, ip);
            }
        }
    }

    /// Writes a lockout or spray event's audit line, naming the user's directory
    /// identity when the name is a declared user's.
    pub(super) fn audit_event(&self, event: &str, user: &str, location: Option<&str>) {
        if let Some(audit) = &self.shared.audit {
            let snapshot = self.shared.snapshot.load();
            let (user, presented_user) =
                crate::audit::user_names(snapshot.engine.directory(), None, Some(user));
            audit.write(&AuditEvent {
                ts: crate::audit::timestamp(),
                event: event.into(),
                request_id: audit.request_id(),
                client_ip: self.peer.ip().to_string(),
                user,
                presented_user,
                legacy: true,
                location: location.map(Into::into),
            });
        }
    }
}
