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
    /// the address is a blocked spray source.
    pub(super) fn protect_before(
        &self,
        decision: &Decision,
        user: Option<&str>,
        now: Instant,
    ) -> Option<Reason> {
        let (true, Some(user)) = (decision.legacy, user) else {
            return None;
        };
        let (protect, ip) = (&self.shared.protect, self.peer.ip());
        if protect.attempt(user, ip, now) {
            self.shared.metrics.record_spray_suspect();
            self.audit_event("spray_suspect", user, None);
            tracing::warn!(client = %ip, "password spray suspected: many user names from one address");
        }
        if !decision.action.forwards() {
            return None;
        }
        if protect.spray_blocked(ip, now) {
            return Some(Reason::SpraySuspect);
        }
        // In log-only mode a lockout is counted, audited and metered, and refuses nothing.
        let enforce = protect.config().lockout_mode == LockoutMode::Enforce;
        protect
            .locked_out(user, ip, now)
            .filter(|_| enforce)
            .map(|_| Reason::LockedOut)
    }

    /// Feeds Exchange's verdict on forwarded legacy credentials back into lockout.
    pub(super) fn protect_after(&self, decision: &Decision, user: Option<&str>, status: u16) {
        let (true, Some(user)) = (decision.legacy, user) else {
            return;
        };
        let (protect, ip) = (&self.shared.protect, self.peer.ip());
        if status == 401 {
            if let BadPassword::LockedOut(location) = protect.bad_password(user, ip, Instant::now())
            {
                self.shared.metrics.record_lockout(location.as_str());
                self.audit_event("lockout", user, Some(location.as_str()));
            }
        } else if status < 400 {
            protect.good_password(user, ip);
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
