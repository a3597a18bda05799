//! The fleet (SPEC §9.1): with `[cluster] redis_url`, every instance keeps lockout and
//! spray state and the policy log in one Redis, so that N instances behind a load
//! balancer behave as one.
//!
//! - Lockout and spray: one Lua script before a legacy request is forwarded (the spray
//!   attempt, the spray block and the lockout check, one round trip), one after Exchange
//!   refused its password (awaited, so that the next attempt, on any instance, sees it),
//!   and one after a success only when it changes something (a count to clear, a new
//!   familiar address), not awaited. Keys expire with their windows. None for a bearer or
//!   anonymous request.
//! - The policy store: cmdlets are appended to a Redis list, the policy log, whose
//!   length is its version; an append names the version it was checked against and
//!   fails if another instance appended first. A message on a channel tells the others,
//!   and each also compares versions every second, so a lost message is not a lost
//!   change.
//!
//! Every operation is bounded by `timeout_milliseconds`; a failure or a timeout is
//! counted in `exgate_cluster_errors_total{op}`, warned about once per outage, and the
//! caller falls back to its local state. Redis keys carry no user name: a user is the
//! SHA-256 of the lower-cased name.

mod scripts;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::metrics::Metrics;
use crate::protect::{Activity, BadPassword, Location, ProtectConfig};

/// The default of `cluster.key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "exgate:";
/// The default of `cluster.timeout_milliseconds`.
pub const DEFAULT_TIMEOUT_MILLISECONDS: u64 = 100;
/// How often each instance compares its policy-log version with Redis's, whatever the
/// channel said.
pub const VERSION_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// After an outage warning, how long further outages stay quiet (counted, not warned).
const OUTAGE_WARNING_QUIET: Duration = Duration::from_secs(30);
/// How long a familiar address is kept without a new success (AD FS keeps the last 20;
/// Redis needs an expiry so that users who left do not stay forever).
const FAMILIAR_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// A `redis://` or `rediss://` URL, which may hold a password: `Display` and `Debug`
/// show it without one.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// `redis://` or `rediss://` with a host, no query and no fragment (redis-rs also
    /// takes other schemes, and a password in a unix URL's query, which `Display` could
    /// not hide), checked by redis-rs itself; the error never repeats the URL.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        const SHAPE: &str = "is not a Redis URL like redis://[[user]:password@]host[:port][/db] or rediss://… (no query)";
        let rest = text
            .strip_prefix("redis://")
            .or_else(|| text.strip_prefix("rediss://"))
            .ok_or_else(|| SHAPE.to_owned())?;
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        if rest.contains(['?', '#']) || host.is_empty() || host.starts_with(['/', ':']) {
            return Err(SHAPE.into());
        }
        match redis::Client::open(text) {
            Ok(_) => Ok(RedisUrl(text.to_owned())),
            Err(_) => Err(SHAPE.into()),
        }
    }

    /// The URL as written, password included: for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RedisUrl {
    /// `redis://host:port/db`, with any user name and password left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("redis", &self.0));
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        write!(f, "{scheme}://{rest}")
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// `[cluster]`.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub redis_url: RedisUrl,
    /// Prefix of every key and channel (`exgate:`), so that fleets can share a Redis.
    pub key_prefix: String,
    /// Bound on every Redis operation; the request path never waits longer.
    pub timeout: Duration,
}

/// What the check before forwarding a legacy request found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The user's lockout for this location, when its count reached the threshold within
    /// the window.
    pub locked_out: Option<Location>,
    /// This attempt crossed the spray threshold: report it (once per window, fleet-wide).
    pub spray_flagged_now: bool,
    /// The address is a flagged spray source within its window.
    pub spray_flagged: bool,
    /// A success from here would change something (a count to clear, a new familiar
    /// address, a familiar address to refresh).
    pub success_changes_state: bool,
    /// The count plus the attempts in flight reached the threshold: this attempt waits.
    pub busy: bool,
    /// The attempt counts as in flight until its answer, under this key and id: pass it
    /// to [`Cluster::bad_password`], [`Cluster::good_password`] or [`Cluster::release`].
    pub reserved: Option<InFlight>,
}

/// An attempt counted in flight in Redis: the set it is in and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    key: String,
    id: String,
}

/// How many policy-log entries one read takes.
pub const LOG_CHUNK: u64 = 1000;

/// Where a policy log stands: its length, and the digest chained over its entries
/// ([`LogState::next`]), so that two logs of one length but different entries differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    pub version: u64,
    /// Hex SHA-1 chained over the entries, `""` for the empty log (Redis's own
    /// `redis.sha1hex` computes the same in the append script).
    pub digest: String,
}

impl LogState {
    /// The state after `script` is appended: SHA-1(digest .. script), in hex. SHA-1 is
    /// what Redis's scripts offer; the chain guards against accidents (a Redis that lost
    /// data), not against whoever can write to Redis, who controls the policy anyway.
    pub fn next(&self, script: &str) -> LogState {
        let mut input = Vec::with_capacity(self.digest.len() + script.len());
        input.extend_from_slice(self.digest.as_bytes());
        input.extend_from_slice(script.as_bytes());
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
        LogState {
            version: self.version + 1,
            digest: hex(digest.as_ref()),
        }
    }
}

/// Why a policy-log append did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// Another instance appended first: the log is at this version now.
    Conflict(u64),
    /// Redis did not answer in time, or failed.
    Unavailable,
}

/// The Redis side of the fleet. Cheap to share (`Arc`).
pub struct Cluster {
    config: ClusterConfig,
    client: redis::Client,
    conn: ConnectionManager,
    metrics: Arc<Metrics>,
    /// Set by the first failure of an outage, cleared by the next success.
    outage: AtomicBool,
    /// Set by a failure of the request path's own calls, cleared by any success: while
    /// set, the request path does not wait for Redis (a slow policy read does not set
    /// it).
    request_path_down: AtomicBool,
    /// When an outage was last warned about, and whether the current one was (so that
    /// its end is logged): a Redis that flaps while it restarts warns once, not at
    /// every flap.
    warned: std::sync::Mutex<(Option<std::time::Instant>, bool)>,
    scripts: scripts::Scripts,
}

impl Cluster {
    /// A cluster client that connects lazily: an instance starts, and enforces with its
    /// local state, while Redis is down.
    pub fn new(config: ClusterConfig, metrics: Arc<Metrics>) -> Result<Cluster, String> {
        let client = redis::Client::open(config.redis_url.expose())
            .map_err(|_| format!("cluster.redis_url {} is not usable", config.redis_url))?;
        // Reconnects are retried quickly and forever; every call is bounded by the
        // timeout on our side too, so a reconnect in progress never holds a request.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(config.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(usize::MAX);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|_| format!("cluster.redis_url {} is not usable", config.redis_url))?;
        Ok(Cluster {
            config,
            client,
            conn,
            metrics,
            outage: AtomicBool::new(false),
            request_path_down: AtomicBool::new(false),
            warned: std::sync::Mutex::new((None, false)),
            scripts: scripts::Scripts::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.config.key_prefix)
    }

    /// A user's id in Redis: the first 128 bits of the SHA-256 of the lower-cased name,
    /// in hex, so that Redis holds no user name.
    fn user_id(user: &str) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, user.to_lowercase().as_bytes());
        hex(&digest.as_ref()[..16])
    }

    /// The keys of a user's lockout hash and of their familiar addresses.
    fn user_keys(&self, user: &str) -> (String, String) {
        let id = Cluster::user_id(user);
        (self.key("lockout", &id), self.key("familiar", &id))
    }

    /// The policy log's key.
    pub fn log_key(&self) -> String {
        format!("{}policy:log", self.config.key_prefix)
    }

    /// The channel a new log version is announced on.
    pub fn channel(&self) -> String {
        format!("{}policy:changed", self.config.key_prefix)
    }

    /// Runs `op` within the timeout. A failure or timeout is counted under `label`,
    /// warned about once per outage, and None; the first success after an outage is
    /// logged. During an outage the request path's operations (`label` "protect",
    /// "bad_password", "good_password") do not wait for Redis at all: they are counted
    /// and None at once, and the policy task's checks every second find Redis back.
    async fn run<T, F>(&self, label: &'static str, op: F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let request_path = matches!(label, "protect" | "bad_password" | "good_password");
        if request_path && self.request_path_down.load(Ordering::Relaxed) {
            self.metrics.record_cluster_error(label);
            return None;
        }
        let outcome = match tokio::time::timeout(self.config.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.config.timeout)),
        };
        match outcome {
            Ok(v) => {
                self.request_path_down.store(false, Ordering::Relaxed);
                if self.outage.swap(false, Ordering::Relaxed) {
                    let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
                    if std::mem::take(&mut warned.1) {
                        tracing::info!(redis = %self.config.redis_url, "cluster store reachable again: shared lockout, spray and policy state resume");
                    }
                }
                Some(v)
            }
            Err(error) => {
                self.metrics.record_cluster_error(label);
                if request_path {
                    self.request_path_down.store(true, Ordering::Relaxed);
                }
                if !self.outage.swap(true, Ordering::Relaxed) {
                    let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
                    if warned.0.is_some_and(|t| t.elapsed() < OUTAGE_WARNING_QUIET) {
                        return None; // the same outage, flapping as Redis comes back
                    }
                    *warned = (Some(std::time::Instant::now()), true);
                    tracing::warn!(
                        redis = %self.config.redis_url,
                        op = label,
                        %error,
                        "cluster store unreachable: enforcing with this instance's last policy and local lockout and spray counters; cmdlets are refused until it returns"
                    );
                }
                None
            }
        }
    }

    /// Before a legacy request naming `user` from `ip` is forwarded (or refused by
    /// policy: spray counts those too): records the spray attempt, reads the lockout and
    /// spray state and, with `reserve` (the attempt would be forwarded in enforce mode),
    /// counts it in flight for at most `hold` unless that could reach the threshold; one
    /// round trip. None when Redis is unavailable.
    pub async fn check(
        &self,
        user: &str,
        ip: IpAddr,
        config: &ProtectConfig,
        reserve: bool,
        hold: Duration,
    ) -> Option<Checked> {
        // One digest per check (it was three).
        let user_id = Cluster::user_id(user);
        let (lockout, familiar) = (
            self.key("lockout", &user_id),
            self.key("familiar", &user_id),
        );
        let ip_text = ip.to_string();
        let (spray, flag) = (self.key("spray", &ip_text), self.key("sprayflag", &ip_text));
        let in_flight = [
            self.key("pending", &format!("{user_id}:f")),
            self.key("pending", &format!("{user_id}:u")),
        ];
        let attempt = attempt_id();
        let name = &user_id;
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.check.prepare_invoke();
        invocation
            .key(&lockout)
            .key(&familiar)
            .key(&spray)
            .key(&flag)
            .key(&in_flight[0])
            .key(&in_flight[1])
            .arg(&ip_text)
            .arg(name)
            .arg(u8::from(config.lockout_enabled))
            .arg(config.lockout_threshold)
            .arg(config.familiar_threshold)
            .arg(millis(config.observation_window))
            .arg(u8::from(config.spray_enabled))
            .arg(config.spray_distinct_users)
            .arg(millis(config.spray_window))
            .arg(u8::from(reserve))
            .arg(u8::from(config.spray_block))
            .arg(&attempt)
            .arg(millis(hold));
        let reply: Vec<i64> = self
            .run("protect", invocation.invoke_async(&mut conn))
            .await?;
        let [
            familiar,
            locked,
            changes,
            flagged_now,
            flagged,
            busy,
            reserved,
        ] = reply[..]
        else {
            self.metrics.record_cluster_error("protect");
            return None;
        };
        let location = if familiar == 1 {
            Location::Familiar
        } else {
            Location::Unknown
        };
        let [familiar_key, unknown_key] = in_flight;
        Some(Checked {
            locked_out: (locked == 1).then_some(location),
            spray_flagged_now: flagged_now == 1,
            spray_flagged: flagged == 1,
            success_changes_state: changes == 1,
            busy: busy == 1,
            reserved: (reserved == 1).then_some(InFlight {
                key: if familiar == 1 {
                    familiar_key
                } else {
                    unknown_key
                },
                id: attempt,
            }),
        })
    }

    /// Exchange refused `user`'s password from `ip`: counts it for the location, and
    /// says whether this failure engaged the lockout. Awaited before the 401 goes back,
    /// so that the next attempt, on any instance, sees it.
    pub async fn bad_password(
        &self,
        user: &str,
        ip: IpAddr,
        config: &ProtectConfig,
        attempt: Option<&InFlight>,
    ) -> Option<BadPassword> {
        let (lockout, familiar) = self.user_keys(user);
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.bad_password.prepare_invoke();
        let (in_flight, id) = attempt.map_or(("", ""), |a| (a.key.as_str(), a.id.as_str()));
        invocation
            .key(&lockout)
            .key(&familiar)
            .key(in_flight)
            .arg(ip.to_string())
            .arg(config.lockout_threshold)
            .arg(config.familiar_threshold)
            .arg(millis(config.observation_window))
            .arg(id);
        let reply: Vec<i64> = self
            .run("bad_password", invocation.invoke_async(&mut conn))
            .await?;
        let [familiar, _count, engaged] = reply[..] else {
            self.metrics.record_cluster_error("bad_password");
            return None;
        };
        let location = if familiar == 1 {
            Location::Familiar
        } else {
            Location::Unknown
        };
        Some(if engaged == 1 {
            BadPassword::LockedOut(location)
        } else {
            BadPassword::Counted(location)
        })
    }

    /// A legacy sign-in of `user` from `ip` succeeded: takes the attempt out of flight
    /// and, when `changes` (from [`Checked::success_changes_state`]), clears the
    /// location's count and makes the address familiar (the last 20 kept). Sent in the
    /// background: a success needs no one to wait. Nothing is sent when there is
    /// nothing to do.
    pub fn good_password(
        self: &Arc<Self>,
        user: &str,
        ip: IpAddr,
        attempt: Option<InFlight>,
        changes: bool,
    ) {
        if attempt.is_none() && !changes {
            return;
        }
        let (lockout, familiar) = self.user_keys(user);
        let this = self.clone();
        tokio::spawn(async move {
            let mut conn = this.conn.clone();
            let mut invocation = this.scripts.good_password.prepare_invoke();
            let (in_flight, id) = attempt.map_or((String::new(), String::new()), |a| (a.key, a.id));
            invocation
                .key(&lockout)
                .key(&familiar)
                .key(&in_flight)
                .arg(ip.to_string())
                .arg(millis(FAMILIAR_TTL))
                .arg(&id)
                .arg(u8::from(changes));
            let _: Option<i64> = this
                .run("good_password", invocation.invoke_async(&mut conn))
                .await;
        });
    }

    /// An attempt counted in flight was answered otherwise than with a verdict on its
    /// password, or abandoned: takes it out of flight, in the background.
    pub fn release(self: &Arc<Self>, attempt: InFlight) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut conn = this.conn.clone();
            let _: Option<i64> = this
                .run(
                    "good_password",
                    redis::cmd("ZREM")
                        .arg(&attempt.key)
                        .arg(&attempt.id)
                        .query_async(&mut conn),
                )
                .await;
        });
    }

    /// `user`'s lockout state, fleet-wide (`Get-AdfsAccountActivity`).
    pub async fn activity(&self, user: &str, config: &ProtectConfig) -> Option<Activity> {
        let (lockout, familiar) = self.user_keys(user);
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.activity.prepare_invoke();
        invocation
            .key(&lockout)
            .key(&familiar)
            .arg(millis(config.observation_window));
        // [familiar count, familiar last ms, unknown count, unknown last ms, ip, ip, …]
        let reply: Vec<String> = self
            .run("account", invocation.invoke_async(&mut conn))
            .await?;
        let number = |i: usize| {
            reply
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let at = |ms: u64| (ms > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        let (bad_familiar, bad_unknown) = (number(0) as u32, number(2) as u32);
        Some(Activity {
            bad_familiar,
            bad_unknown,
            last_failed_familiar: at(number(1)),
            last_failed_unknown: at(number(3)),
            familiar_lockout: bad_familiar >= config.familiar_threshold,
            unknown_lockout: bad_unknown >= config.lockout_threshold,
            familiar_ips: reply
                .iter()
                .skip(4)
                .filter_map(|ip| ip.parse().ok())
                .collect(),
        })
    }

    /// Clears `user`'s count for `location`, fleet-wide (`Reset-AdfsAccountLockout`).
    pub async fn reset(&self, user: &str, location: Location) -> Option<()> {
        let (lockout, _) = self.user_keys(user);
        let prefix = match location {
            Location::Familiar => "f",
            Location::Unknown => "u",
        };
        let mut conn = self.conn.clone();
        let fields = [format!("{prefix}bad"), format!("{prefix}last")];
        let _: i64 = self
            .run(
                "account",
                redis::cmd("HDEL")
                    .arg(&lockout)
                    .arg(&fields[..])
                    .query_async(&mut conn),
            )
            .await?;
        Some(())
    }

    /// The policy log's version: how many entries it holds.
    pub async fn log_version(&self) -> Option<LogState> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.log_state.prepare_invoke();
        invocation.key(self.log_key()).key(self.digest_key());
        let reply: Vec<String> = self
            .run("policy_sync", invocation.invoke_async(&mut conn))
            .await?;
        match &reply[..] {
            [version, digest] => Some(LogState {
                version: version.parse().ok()?,
                digest: digest.clone(),
            }),
            _ => None,
        }
    }

    /// The policy log's digest key.
    fn digest_key(&self) -> String {
        format!("{}policy:digest", self.config.key_prefix)
    }

    /// The entries of the policy log from index `from` (0-based) to its end, read
    /// [`LOG_CHUNK`] at a time, each read within the timeout (a long log takes several
    /// round trips rather than one that never ends in time).
    pub async fn log_entries(&self, from: u64) -> Option<Vec<String>> {
        let mut entries = Vec::new();
        let mut start = from;
        loop {
            let mut conn = self.conn.clone();
            let chunk: Vec<String> = self
                .run(
                    "policy_sync",
                    redis::cmd("LRANGE")
                        .arg(self.log_key())
                        .arg(start)
                        .arg(start + LOG_CHUNK - 1)
                        .query_async(&mut conn),
                )
                .await?;
            let n = chunk.len() as u64;
            entries.extend(chunk);
            if n < LOG_CHUNK {
                return Some(entries);
            }
            start += n;
        }
    }

    /// Appends `script` to the policy log if it is still at `expected` (version and
    /// digest), and announces the new version. Returns the new version.
    pub async fn log_append(&self, expected: &LogState, script: &str) -> Result<u64, AppendError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.append.prepare_invoke();
        invocation
            .key(self.log_key())
            .key(self.digest_key())
            .arg(expected.version)
            .arg(&expected.digest)
            .arg(script)
            .arg(self.channel());
        let reply: Vec<i64> = self
            .run("policy_append", invocation.invoke_async(&mut conn))
            .await
            .ok_or(AppendError::Unavailable)?;
        match reply[..] {
            [1, version] => Ok(version.unsigned_abs()),
            [0, version] => Err(AppendError::Conflict(version.unsigned_abs())),
            _ => Err(AppendError::Unavailable),
        }
    }

    /// A connection subscribed to the policy channel (a new one per call; None when
    /// Redis is unavailable).
    pub async fn subscribe(&self) -> Option<redis::aio::PubSub> {
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.channel()).await?;
            Ok(pubsub)
        };
        self.run("policy_sync", connect).await
    }
}

/// A random id for an attempt in flight (128 bits, hex).
fn attempt_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    hex(&bytes)
}

/// Lower-case hex, without a `format!` per byte (the request path's cost).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_the_first_128_bits_of_the_lower_cased_name_s_sha256_in_hex() {
        // printf user02@contoso.com | sha256sum → 900dcb41a73faf5c85ddfd406f0115fb…
        assert_eq!(
            Cluster::user_id("USER02@contoso.com"),
            "900dcb41a73faf5c85ddfd406f0115fb"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn a_redis_url_is_redis_or_rediss_with_a_host_and_its_password_is_never_shown() {
        for ok in [
            "redis://127.0.0.1:6379/0",
            "redis://exgate-redis:6379",
            "rediss://redis.contoso.com:6380/2",
            "redis://:S3cret@127.0.0.1:6379/0",
            "redis://user:S3cret@127.0.0.1/0",
            "redis://[::1]:6379/0",
        ] {
            let url = RedisUrl::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            let shown = format!("{url} {url:?}");
            assert!(!shown.contains("S3cret"), "{shown}");
            assert!(!shown.contains("user"), "{shown}");
        }
        for bad in [
            "http://127.0.0.1:6379",
            "redis+unix:///tmp/r.sock?pass=S3cret",
            "unix:///tmp/r.sock?pass=S3cret",
            "valkey://127.0.0.1:6379",
            "redis://:S3cret@127.0.0.1:6379/0?x=@y",
            "redis://127.0.0.1:6379/0#frag",
            "redis://",
            "redis://:S3cret@",
            "redis:127.0.0.1",
        ] {
            let e = RedisUrl::parse(bad).expect_err(bad);
            assert!(!e.contains("S3cret"), "{e}");
        }
    }
}
