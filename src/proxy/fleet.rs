//! The fleet's policy store and account cmdlets on the proxy side (SPEC §9.1): the
//! policy log in Redis ([`crate::cluster`]) replayed onto this instance's policy, kept
//! in step by a task, and cmdlets sent to any instance appended to the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use futures_util::StreamExt as _;

use super::{CmdletError, Shared, Snapshot};
use crate::cluster::{AppendError, Cluster, LogState};
use crate::policy::Lookup;
use crate::policy::cmdlet::{AccountCommand, AccountLocation};
use crate::protect::{Activity, Location};

/// How many times a cmdlet is retried when another instance appended first.
const APPEND_ATTEMPTS: usize = 5;

/// What this instance holds of the fleet's policy log.
#[derive(Default)]
pub struct FleetState {
    /// The log as applied here: its version and digest.
    applied: std::sync::Mutex<LogState>,
    /// The log has been read once since start: `/readyz` waits for it.
    synced: AtomicBool,
    /// The entries themselves, so that a reload (SIGHUP) replays them without Redis.
    log: std::sync::Mutex<Vec<String>>,
}

impl FleetState {
    /// Whether the fleet's policy has been loaded since start.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn applied(&self) -> LogState {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Replays `entries` onto `snapshot`'s policy store, in order. An entry that fails here
/// (it applied on the instance that appended it, so this instance's users or script
/// differ) is skipped with an error log; the rest still apply.
pub(super) fn replay(snapshot: Snapshot, entries: &[String]) -> Snapshot {
    let mut engine = snapshot.engine.clone();
    for (i, script) in entries.iter().enumerate() {
        match engine.run_script(script) {
            Ok(applied) => engine = engine.with_store(applied.store),
            Err(errors) => tracing::error!(
                entry = i + 1,
                errors = %errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
                "an entry of the fleet's policy log does not apply to this instance's users and policy script (they differ from the instance that added it); skipped"
            ),
        }
    }
    Snapshot::with_engine(engine, snapshot.bearer, snapshot.kerberos)
}

impl Shared {
    /// Brings this instance's policy up to the fleet's log: reads the entries it has
    /// not applied and swaps in the policy with them. A log that is not the one applied
    /// here plus new entries (shorter, or of another digest: Redis lost data, or another
    /// history took its place) is replayed whole on the configuration. Err when Redis
    /// is unavailable.
    pub async fn sync_policy(&self, cluster: &Cluster) -> Result<(), ()> {
        // What this instance applied, read before the fleet's version: the log in Redis
        // only grows, so it is then at least as long as `local`. Read after it, `local`
        // could already hold this instance's own append (a cmdlet applied meanwhile) and
        // look longer than the log, which was taken for a lost log and rebuilt (seen in
        // CI: "applied=3 remote=2" when two instances appended at once).
        let local = self.fleet.applied();
        let remote = cluster.log_version().await.ok_or(())?;
        if remote != local {
            let extends = remote.version > local.version;
            let from = if extends { local.version } else { 0 };
            let entries = cluster.log_entries(from).await.ok_or(())?;
            // Only what the state read named: entries appended since wait for the next.
            let wanted = usize::try_from(remote.version - from).unwrap_or(usize::MAX);
            let entries = &entries[..entries.len().min(wanted)];
            let chained = entries.iter().fold(
                if extends {
                    local.clone()
                } else {
                    LogState::default()
                },
                |state, e| state.next(e),
            );
            if extends && chained == remote {
                blocking_here(|| self.apply_log(&local, entries));
            } else {
                tracing::warn!(
                    applied = local.version,
                    remote = remote.version,
                    "the fleet's policy log is not the one this instance applied (Redis lost data, or another history replaced it): rebuilding from the configuration and the log as it is"
                );
                let entries = match extends {
                    true => cluster.log_entries(0).await.ok_or(())?,
                    false => entries.to_vec(),
                };
                blocking_here(|| self.rebuild_from_log(entries));
            }
        }
        if !self.fleet.synced.swap(true, Ordering::AcqRel) {
            tracing::info!(
                version = self.fleet.applied().version,
                "fleet policy loaded"
            );
        }
        Ok(())
    }

    /// Applies `entries` on top of the log state `from`, unless another sync moved this
    /// instance elsewhere meanwhile (then the next sync sorts it out).
    fn apply_log(&self, from: &LogState, entries: &[String]) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.fleet.applied() != *from || entries.is_empty() {
            return;
        }
        let current = self.snapshot.load_full();
        let next = replay(
            Snapshot::with_engine(
                current.engine.clone(),
                current.bearer.clone(),
                current.kerberos.clone(),
            ),
            entries,
        );
        self.snapshot.store(Arc::new(next));
        let state = entries.iter().fold(from.clone(), |s, e| s.next(e));
        let version = state.version;
        self.fleet
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(entries.iter().cloned());
        *self.fleet.applied.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.metrics
            .cluster_policy_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        tracing::info!(version, "fleet policy log applied");
    }

    /// Replaces the local log with `entries` and rebuilds the policy from the
    /// configuration file (as on disk, as a SIGHUP would read it) and them.
    fn rebuild_from_log(&self, entries: Vec<String>) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let base = match crate::config::load(&self.config_path).and_then(|c| Snapshot::build(&c)) {
            Ok(base) => base,
            Err(errors) => {
                tracing::error!(
                    "the fleet's policy cannot be rebuilt, the configuration does not load: {errors}"
                );
                return;
            }
        };
        let state = entries.iter().fold(LogState::default(), |s, e| s.next(e));
        let version = state.version;
        self.snapshot.store(Arc::new(replay(base, &entries)));
        *self.fleet.log.lock().unwrap_or_else(|e| e.into_inner()) = entries;
        *self.fleet.applied.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.metrics
            .cluster_policy_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// The entries of the fleet's log this instance holds (for a reload).
    pub(super) fn fleet_log(&self) -> Vec<String> {
        self.fleet
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies cmdlets fleet-wide: checked against this instance's policy brought up to
    /// the log, appended to the log if no other instance appended meanwhile (else again,
    /// from the new version), then applied here. Redis unavailable: refused, so that no
    /// instance diverges.
    pub async fn apply_cmdlets_fleet(
        &self,
        cluster: &Cluster,
        script: &str,
    ) -> Result<Vec<String>, CmdletError> {
        for _ in 0..APPEND_ATTEMPTS {
            self.sync_policy(cluster)
                .await
                .map_err(|()| CmdletError::ClusterUnavailable)?;
            let (expected, applied, changed) = {
                let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
                let current = self.snapshot.load_full();
                let engine = &current.engine;
                let applied = engine.run_script(script).map_err(CmdletError::Script)?;
                let changed = applied.store != *engine.store();
                (self.fleet.applied(), applied, changed)
            };
            if !changed {
                return Ok(applied.output); // read-only: nothing to share
            }
            match cluster.log_append(&expected, script).await {
                Ok(_) => {
                    self.apply_log(&expected, &[script.to_owned()]);
                    tracing::info!(lines = script.lines().count(), "cmdlets applied fleet-wide");
                    return Ok(applied.output);
                }
                Err(AppendError::Conflict(_)) => continue,
                Err(AppendError::Unavailable) => return Err(CmdletError::ClusterUnavailable),
            }
        }
        Err(CmdletError::ClusterBusy)
    }

    /// Runs AD FS account cmdlets against the lockout state (the fleet's with
    /// `[cluster]`, else this instance's) and returns what they print.
    pub async fn account_cmdlets(
        &self,
        commands: &[AccountCommand],
    ) -> Result<String, CmdletError> {
        let config = self.protect.config();
        let mut out = String::new();
        for command in commands {
            match command {
                AccountCommand::Activity { identity } => {
                    let key = self.lockout_identity(identity);
                    let activity = match &self.cluster {
                        Some(c) => c
                            .activity(&key, &config)
                            .await
                            .ok_or(CmdletError::ClusterUnavailable)?,
                        None => self.protect.activity(&key, Instant::now()),
                    };
                    out.push_str(&format_activity(identity, &activity));
                }
                AccountCommand::Reset { identity, location } => {
                    let key = self.lockout_identity(identity);
                    let location = match location {
                        AccountLocation::Familiar => Location::Familiar,
                        AccountLocation::Unknown => Location::Unknown,
                    };
                    if let Some(c) = &self.cluster {
                        c.reset(&key, location)
                            .await
                            .ok_or(CmdletError::ClusterUnavailable)?;
                    }
                    self.protect.reset(&key, location);
                    tracing::info!(location = location.as_str(), "account lockout reset");
                }
            }
        }
        Ok(out)
    }

    /// The name lockout state is kept under for `identity`: the directory's UPN when
    /// the name is a declared user's (any of its forms), else its account key, as the
    /// proxy counts it (`Directory::unmapped_key`).
    fn lockout_identity(&self, identity: &str) -> String {
        let snapshot = self.snapshot.load();
        let directory = snapshot.engine.directory();
        match directory.lookup(identity) {
            Lookup::Found(id) => directory.user(id).upn.clone(),
            Lookup::Unknown | Lookup::Ambiguous => directory.unmapped_key(identity).into_owned(),
        }
    }
}

/// `Get-AdfsAccountActivity`'s list, AD FS's property names.
fn format_activity(identity: &str, a: &Activity) -> String {
    let time = |t: Option<SystemTime>| {
        t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| crate::audit::format_timestamp(d.as_secs(), d.subsec_millis()))
            .unwrap_or_default()
    };
    let ips: Vec<String> = a.familiar_ips.iter().map(|ip| ip.to_string()).collect();
    let rows = [
        ("Identifier", identity.to_owned()),
        ("BadPwdCountFamiliar", a.bad_familiar.to_string()),
        ("BadPwdCountUnknown", a.bad_unknown.to_string()),
        ("LastFailedAuthFamiliar", time(a.last_failed_familiar)),
        ("LastFailedAuthUnknown", time(a.last_failed_unknown)),
        ("FamiliarLockout", pascal(a.familiar_lockout)),
        ("UnknownLockout", pascal(a.unknown_lockout)),
        ("FamiliarIps", format!("{{{}}}", ips.join(", "))),
    ];
    let mut out = String::new();
    for (name, value) in rows {
        out.push_str(&format!("{name:<22} : {value}\n"));
    }
    out.push('\n');
    out
}

fn pascal(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

/// Keeps this instance's policy in step with the fleet's log: at start (before
/// `/readyz` says 200), on every message on the policy channel, every
/// [`crate::cluster::VERSION_CHECK_INTERVAL`], and after Redis returns (a new
/// subscription is followed by a version check, so a missed message is not a lost
/// change). Runs until the proxy stops.
pub async fn run_sync(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(crate::cluster::VERSION_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // (Re)subscribe; then a version check covers whatever was missed meanwhile.
        let mut pubsub = cluster.subscribe().await;
        let _ = shared.sync_policy(&cluster).await;
        match pubsub.as_mut() {
            Some(ps) => {
                let mut messages = ps.on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(_) => { let _ = shared.sync_policy(&cluster).await; }
                            None => break, // the subscription dropped: reconnect
                        },
                        _ = tick.tick() => {
                            if shared.sync_policy(&cluster).await.is_err() {
                                break; // Redis is gone: subscribe again when it returns
                            }
                        }
                    }
                }
            }
            None => {
                tick.tick().await;
            }
        }
    }
}

/// Runs `work`, which holds the thread for a while (a policy rebuild): through
/// `block_in_place` on the multi-thread runtime, so that other tasks move to another
/// worker; directly on the current-thread one (`serve` on a single CPU), where there is
/// no other worker and `block_in_place` would panic.
fn blocking_here<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
