//! Protection for legacy authentication that policy still allows (SPEC §9): smart lockout
//! modelled on AD FS Extranet Smart Lockout, and password-spray detection. Time is passed
//! in, so the rules are tested without sleeping.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many familiar addresses a user keeps (AD FS keeps 20).
const FAMILIAR_IPS: usize = 20;
/// Bound on tracked users and addresses; beyond it, stale entries are dropped first.
const MAX_TRACKED: usize = 100_000;

/// Where a request comes from, for a user: an address they signed in from before, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    Familiar,
    Unknown,
}

impl Location {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Location::Familiar => "familiar",
            Location::Unknown => "unknown",
        }
    }
}

/// What a lockout does (`lockout.mode`, AD FS's `ExtranetLockoutMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockoutMode {
    /// Refuse the locked-out user's legacy attempts from that location at the edge
    /// (`AdfsSmartLockoutEnforce`).
    Enforce,
    /// Count, audit and meter lockouts, refuse nothing (`AdfsSmartLockoutLogOnly`): the
    /// first days of a rollout.
    LogOnly,
}

impl LockoutMode {
    /// The configuration spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            LockoutMode::Enforce => "enforce",
            LockoutMode::LogOnly => "log-only",
        }
    }
}

/// Lockout and spray settings (`[lockout]`, `[spray]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectConfig {
    pub lockout_enabled: bool,
    /// Bad passwords from an unknown location, within the window, that lock the user's
    /// legacy attempts from there (`ExtranetLockoutThreshold`): the attempt after the
    /// last one tolerated is refused, as AD FS lets a request through only while the
    /// count is below the threshold.
    pub lockout_threshold: u32,
    /// The same for the user's familiar locations (AD FS 2019's separate familiar
    /// threshold); `lockout.familiar_threshold`, by default `lockout_threshold`.
    pub familiar_threshold: u32,
    pub lockout_mode: LockoutMode,
    pub observation_window: Duration,
    pub spray_enabled: bool,
    /// More distinct users than this from one address within the window is a spray.
    pub spray_distinct_users: u32,
    pub spray_window: Duration,
    /// Refuse further legacy attempts from a flagged address (else only report).
    pub spray_block: bool,
}

impl Default for ProtectConfig {
    fn default() -> ProtectConfig {
        ProtectConfig {
            lockout_enabled: true,
            lockout_threshold: 10,
            familiar_threshold: 10,
            lockout_mode: LockoutMode::Enforce,
            observation_window: Duration::from_secs(1800),
            spray_enabled: true,
            spray_distinct_users: 20,
            spray_window: Duration::from_secs(600),
            spray_block: false,
        }
    }
}

#[derive(Default)]
struct Counter {
    bad: u32,
    last_failure: Option<Instant>,
    /// Attempts admitted and not yet answered by Exchange: they count against the
    /// threshold, so that a burst of parallel guesses cannot all reach it.
    pending: u32,
}

impl Counter {
    /// Forgets the failures, not the attempts in flight.
    fn clear(&mut self) {
        self.bad = 0;
        self.last_failure = None;
    }
}

#[derive(Default)]
struct UserState {
    familiar: VecDeque<IpAddr>,
    familiar_counter: Counter,
    unknown_counter: Counter,
}

impl UserState {
    fn location(&self, ip: IpAddr) -> Location {
        if self.familiar.contains(&ip) {
            Location::Familiar
        } else {
            Location::Unknown
        }
    }

    fn counter(&mut self, location: Location) -> &mut Counter {
        match location {
            Location::Familiar => &mut self.familiar_counter,
            Location::Unknown => &mut self.unknown_counter,
        }
    }
}

struct SprayState {
    window_start: Instant,
    /// Hashes of the lower-cased user names seen (no allocation per attempt).
    users: NameHashes,
    flagged: bool,
}

/// A hash of the lower-cased name; a collision can only make a spray look smaller.
fn name_hash(user: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static SEED: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let mut h = SEED.get_or_init(std::hash::RandomState::new).build_hasher();
    // The lower-cased UTF-8 bytes, written in blocks: names equal but for case hash
    // alike, and an ASCII name (nearly all) is lower-cased on the stack.
    if user.is_ascii() {
        let mut block = [0u8; 64];
        for chunk in user.as_bytes().chunks(block.len()) {
            let block = &mut block[..chunk.len()];
            block.copy_from_slice(chunk);
            block.make_ascii_lowercase();
            h.write(block);
        }
    } else {
        h.write(user.to_lowercase().as_bytes());
    }
    h.finish()
}

/// The names seen from one address are already keyed hashes: hashing them again would
/// only cost time.
#[derive(Clone, Copy, Default)]
struct NameHashHasher(u64);

impl std::hash::Hasher for NameHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here (`write_u64`); fold anything else in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type NameHashes = HashSet<u64, std::hash::BuildHasherDefault<NameHashHasher>>;

/// Whether a legacy attempt may go to Exchange ([`Protect::admit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes, and it now counts as in flight until [`Protect::release`].
    Admitted(Location),
    /// No: the location's count reached the threshold within the window (401).
    LockedOut(Location),
    /// Not now: the count plus the attempts in flight reached the threshold; one of
    /// them may yet fail (503 with `Retry-After`).
    Busy(Location),
}

/// What happened when a bad password was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPassword {
    Counted(Location),
    /// This failure crossed the threshold: the lockout engages now.
    LockedOut(Location),
}

impl ProtectConfig {
    /// The threshold of `location`.
    pub const fn threshold(&self, location: Location) -> u32 {
        match location {
            Location::Familiar => self.familiar_threshold,
            Location::Unknown => self.lockout_threshold,
        }
    }
}

/// One user's lockout state, as AD FS's `Get-AdfsAccountActivity` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// `BadPwdCountFamiliar`, `BadPwdCountUnknown`: within the observation window.
    pub bad_familiar: u32,
    pub bad_unknown: u32,
    /// `LastFailedAuthFamiliar`, `LastFailedAuthUnknown`.
    pub last_failed_familiar: Option<std::time::SystemTime>,
    pub last_failed_unknown: Option<std::time::SystemTime>,
    /// `FamiliarLockout`, `UnknownLockout`: the count reached the threshold within the
    /// window.
    pub familiar_lockout: bool,
    pub unknown_lockout: bool,
    /// `FamiliarIps`, oldest first.
    pub familiar_ips: Vec<IpAddr>,
}

/// Lockout and spray state for the whole process.
pub struct Protect {
    config: ProtectConfig,
    users: Mutex<HashMap<String, UserState>>,
    sources: Mutex<HashMap<IpAddr, SprayState>>,
}

fn key(user: &str) -> String {
    user.to_lowercase()
}

impl Protect {
    /// Empty state with `config`.
    pub fn new(config: ProtectConfig) -> Protect {
        Protect {
            config,
            users: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> ProtectConfig {
        self.config
    }

    /// Whether `user`'s legacy attempts from `ip` are locked out at `now`: the location's
    /// threshold of bad passwords reached, the last within the window (whatever
    /// `lockout_mode` says; the caller decides whether to refuse).
    pub fn locked_out(&self, user: &str, ip: IpAddr, now: Instant) -> Option<Location> {
        if !self.config.lockout_enabled {
            return None;
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let state = users.get_mut(&key(user))?;
        let location = state.location(ip);
        let window = self.config.observation_window;
        let counter = state.counter(location);
        match counter.last_failure {
            Some(t) if now.duration_since(t) < window => {
                (counter.bad >= self.config.threshold(location)).then_some(location)
            }
            // The window has passed: the count starts over.
            Some(_) => {
                counter.clear();
                None
            }
            None => None,
        }
    }

    /// Before a legacy attempt naming `user` from `ip` goes to Exchange: refuses it when
    /// the location is locked out, or when the attempts already in flight could lock it
    /// (count + in flight reached the threshold: a burst of parallel guesses would
    /// otherwise all reach Active Directory before the first 401 comes back); else counts
    /// it in flight. Every [`Admission::Admitted`] must be followed by
    /// [`Protect::release`] with its location.
    pub fn admit(&self, user: &str, ip: IpAddr, now: Instant) -> Admission {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let state = users.entry(key(user)).or_default();
        let location = state.location(ip);
        let threshold = self.config.threshold(location);
        let window = self.config.observation_window;
        let counter = state.counter(location);
        if counter
            .last_failure
            .is_some_and(|t| now.duration_since(t) >= window)
        {
            counter.clear();
        }
        if counter.bad >= threshold {
            Admission::LockedOut(location)
        } else if counter.bad + counter.pending >= threshold {
            Admission::Busy(location)
        } else {
            counter.pending += 1;
            Admission::Admitted(location)
        }
    }

    /// The fleet (Redis) says `user` is locked out from `location`: this instance's count
    /// is raised to the threshold, so that the lockout holds here too if Redis becomes
    /// unreachable before its window ends.
    pub fn note_lockout(&self, user: &str, location: Location, now: Instant) {
        let threshold = self.config.threshold(location);
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let counter = users.entry(key(user)).or_default().counter(location);
        // Noted once: a locked user's refused attempts do not extend the window.
        if counter.bad < threshold || counter.last_failure.is_none() {
            counter.bad = threshold;
            counter.last_failure = Some(now);
        }
    }

    /// An admitted attempt was answered (or abandoned): it is no longer in flight.
    pub fn release(&self, user: &str, location: Location) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = users.get_mut(&key(user)) {
            let counter = state.counter(location);
            counter.pending = counter.pending.saturating_sub(1);
        }
    }

    /// Records a bad password (Exchange answered 401 to legacy credentials).
    pub fn bad_password(&self, user: &str, ip: IpAddr, now: Instant) -> BadPassword {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= MAX_TRACKED {
            let window = self.config.observation_window;
            users.retain(|_, s| {
                [&s.familiar_counter, &s.unknown_counter].iter().any(|c| {
                    c.last_failure
                        .is_some_and(|t| now.duration_since(t) < window)
                })
            });
        }
        let state = users.entry(key(user)).or_default();
        let location = state.location(ip);
        let window = self.config.observation_window;
        let threshold = self.config.threshold(location);
        let counter = state.counter(location);
        if counter
            .last_failure
            .is_some_and(|t| now.duration_since(t) >= window)
        {
            counter.clear();
        }
        counter.bad += 1;
        counter.last_failure = Some(now);
        if counter.bad == threshold {
            BadPassword::LockedOut(location)
        } else {
            BadPassword::Counted(location)
        }
    }

    /// Records a successful legacy sign-in: the address becomes familiar and the count for
    /// that location is cleared (AD FS resets on success).
    pub fn good_password(&self, user: &str, ip: IpAddr) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let state = users.entry(key(user)).or_default();
        let location = state.location(ip);
        state.counter(location).clear();
        if location == Location::Unknown {
            if state.familiar.len() == FAMILIAR_IPS {
                state.familiar.pop_front();
            }
            state.familiar.push_back(ip);
        }
    }

    /// `user`'s lockout state at `now` (`Get-AdfsAccountActivity`): counts whose window
    /// has passed show as 0.
    pub fn activity(&self, user: &str, now: Instant) -> Activity {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = users.get(&key(user)) else {
            return Activity::default();
        };
        let window = self.config.observation_window;
        let wall = std::time::SystemTime::now();
        let read = |c: &Counter, threshold: u32| match c.last_failure {
            Some(t) if now.duration_since(t) < window => {
                let at = wall.checked_sub(now.duration_since(t)).unwrap_or(wall);
                (c.bad, Some(at), c.bad >= threshold)
            }
            _ => (0, None, false),
        };
        let (bad_familiar, last_failed_familiar, familiar_lockout) =
            read(&state.familiar_counter, self.config.familiar_threshold);
        let (bad_unknown, last_failed_unknown, unknown_lockout) =
            read(&state.unknown_counter, self.config.lockout_threshold);
        Activity {
            bad_familiar,
            bad_unknown,
            last_failed_familiar,
            last_failed_unknown,
            familiar_lockout,
            unknown_lockout,
            familiar_ips: state.familiar.iter().copied().collect(),
        }
    }

    /// Clears `user`'s bad-password count for `location` (`Reset-AdfsAccountLockout`).
    pub fn reset(&self, user: &str, location: Location) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = users.get_mut(&key(user)) {
            state.counter(location).clear();
        }
    }

    /// Notes a legacy attempt naming `user` from `ip`. Returns true exactly once per
    /// window, when the address crosses the distinct-user threshold (a spray suspect).
    pub fn attempt(&self, user: &str, ip: IpAddr, now: Instant) -> bool {
        if !self.config.spray_enabled {
            return false;
        }
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.config.spray_window;
        if sources.len() >= MAX_TRACKED {
            sources.retain(|_, s| now.duration_since(s.window_start) < window);
        }
        let state = sources.entry(ip).or_insert_with(|| SprayState {
            window_start: now,
            users: NameHashes::default(),
            flagged: false,
        });
        if now.duration_since(state.window_start) >= window {
            *state = SprayState {
                window_start: now,
                users: NameHashes::default(),
                flagged: false,
            };
        }
        let limit = self.config.spray_distinct_users as usize;
        if state.users.len() <= limit {
            state.users.insert(name_hash(user));
        }
        if !state.flagged && state.users.len() > limit {
            state.flagged = true;
            return true;
        }
        false
    }

    /// Whether `ip` is a flagged spray source whose legacy attempts are refused.
    pub fn spray_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        if !(self.config.spray_enabled && self.config.spray_block) {
            return false;
        }
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.get(&ip).is_some_and(|s| {
            s.flagged && now.duration_since(s.window_start) < self.config.spray_window
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn protect(threshold: u32) -> Protect {
        Protect::new(ProtectConfig {
            lockout_threshold: threshold,
            familiar_threshold: threshold,
            observation_window: Duration::from_secs(1800),
            spray_distinct_users: 20,
            spray_window: Duration::from_secs(600),
            ..ProtectConfig::default()
        })
    }

    /// With a threshold of 3, three bad passwords reach Exchange and the fourth attempt is
    /// refused (AD FS passes a request only while the count is below the threshold).
    #[test]
    fn lockout_engages_at_the_threshold_and_releases_after_the_window() {
        let p = protect(3);
        let t0 = Instant::now();
        let attacker = ip("203.0.113.5");
        for i in 0..2 {
            assert_eq!(
                p.bad_password("user01", attacker, t0),
                BadPassword::Counted(Location::Unknown),
                "{i}"
            );
            assert_eq!(p.locked_out("user01", attacker, t0), None);
        }
        assert_eq!(
            p.bad_password("USER01", attacker, t0),
            BadPassword::LockedOut(Location::Unknown)
        );
        assert_eq!(
            p.locked_out("user01", attacker, t0),
            Some(Location::Unknown)
        );
        let later = t0 + Duration::from_secs(1799);
        assert_eq!(
            p.locked_out("user01", attacker, later),
            Some(Location::Unknown)
        );
        let after = t0 + Duration::from_secs(1800);
        assert_eq!(
            p.locked_out("user01", attacker, after),
            None,
            "released after the window"
        );
        // …and counting starts over.
        assert_eq!(
            p.bad_password("user01", attacker, after),
            BadPassword::Counted(Location::Unknown)
        );
        assert_eq!(p.locked_out("user01", attacker, after), None);
    }

    #[test]
    fn familiar_and_unknown_locations_are_counted_apart() {
        let p = protect(2);
        let t0 = Instant::now();
        let office = ip("198.51.100.10");
        let attacker = ip("203.0.113.5");
        p.good_password("user01", office);
        for _ in 0..3 {
            p.bad_password("user01", attacker, t0);
        }
        assert_eq!(
            p.locked_out("user01", attacker, t0),
            Some(Location::Unknown)
        );
        assert_eq!(
            p.locked_out("user01", office, t0),
            None,
            "the user still signs in from the office"
        );
        assert_eq!(
            p.bad_password("user01", office, t0),
            BadPassword::Counted(Location::Familiar)
        );
        assert_eq!(
            p.bad_password("user01", office, t0),
            BadPassword::LockedOut(Location::Familiar)
        );
        assert_eq!(p.locked_out("user01", office, t0), Some(Location::Familiar));
        // Other users are unaffected.
        assert_eq!(p.locked_out("user02", attacker, t0), None);
    }

    #[test]
    fn the_familiar_location_has_its_own_threshold() {
        let p = Protect::new(ProtectConfig {
            lockout_threshold: 2,
            familiar_threshold: 5,
            ..ProtectConfig::default()
        });
        let t0 = Instant::now();
        let office = ip("198.51.100.10");
        p.good_password("user01", office);
        for i in 0..4 {
            assert_eq!(
                p.bad_password("user01", office, t0),
                BadPassword::Counted(Location::Familiar),
                "{i}"
            );
        }
        assert_eq!(p.locked_out("user01", office, t0), None);
        assert_eq!(
            p.bad_password("user01", office, t0),
            BadPassword::LockedOut(Location::Familiar)
        );
        let attacker = ip("203.0.113.5");
        p.bad_password("user01", attacker, t0);
        assert_eq!(
            p.bad_password("user01", attacker, t0),
            BadPassword::LockedOut(Location::Unknown)
        );
    }

    #[test]
    fn activity_shows_the_counts_and_reset_clears_one_location() {
        let p = protect(2);
        let t0 = Instant::now();
        let office = ip("198.51.100.10");
        let attacker = ip("203.0.113.5");
        p.good_password("user01", office);
        p.bad_password("user01", attacker, t0);
        p.bad_password("user01", attacker, t0);
        p.bad_password("user01", office, t0);
        let a = p.activity("USER01", t0);
        assert_eq!((a.bad_unknown, a.unknown_lockout), (2, true));
        assert_eq!((a.bad_familiar, a.familiar_lockout), (1, false));
        assert!(a.last_failed_unknown.is_some());
        assert_eq!(a.familiar_ips, [office]);
        p.reset("user01", Location::Unknown);
        let a = p.activity("user01", t0);
        assert_eq!((a.bad_unknown, a.unknown_lockout), (0, false));
        assert_eq!(a.bad_familiar, 1, "the other location is kept");
        assert_eq!(p.locked_out("user01", attacker, t0), None);
        // After the window, the counts show as 0.
        let later = t0 + Duration::from_secs(1800);
        assert_eq!(p.activity("user01", later).bad_familiar, 0);
        assert_eq!(p.activity("nobody", t0), Activity::default());
    }

    /// A burst of parallel guesses: with a threshold of 3, only three are admitted while
    /// none has been answered; the rest wait (Busy) rather than reach Exchange. Answers
    /// release their places; after three 401s the location is locked.
    #[test]
    fn attempts_in_flight_count_against_the_threshold() {
        let p = protect(3);
        let t0 = Instant::now();
        let attacker = ip("203.0.113.5");
        let verdicts: Vec<Admission> = (0..50).map(|_| p.admit("user01", attacker, t0)).collect();
        let admitted = verdicts
            .iter()
            .filter(|v| matches!(v, Admission::Admitted(_)))
            .count();
        assert_eq!(admitted, 3);
        assert_eq!(verdicts[3], Admission::Busy(Location::Unknown));
        for _ in 0..3 {
            p.bad_password("user01", attacker, t0);
            p.release("user01", Location::Unknown);
        }
        assert_eq!(
            p.admit("user01", attacker, t0),
            Admission::LockedOut(Location::Unknown)
        );
        // A success releases too, and clears the count: the next attempts are admitted.
        let q = protect(2);
        let home = ip("192.0.2.7");
        assert!(matches!(
            q.admit("user02", home, t0),
            Admission::Admitted(_)
        ));
        assert!(matches!(
            q.admit("user02", home, t0),
            Admission::Admitted(_)
        ));
        assert_eq!(
            q.admit("user02", home, t0),
            Admission::Busy(Location::Unknown)
        );
        q.release("user02", Location::Unknown);
        assert!(matches!(
            q.admit("user02", home, t0),
            Admission::Admitted(_)
        ));
        // After the window, the failures are forgotten but not the attempts in flight.
        let later = t0 + Duration::from_secs(1800);
        p.release("user01", Location::Unknown); // no-op: nothing in flight
        assert!(matches!(
            p.admit("user01", attacker, later),
            Admission::Admitted(_)
        ));
    }

    #[test]
    fn a_good_password_clears_its_locations_count() {
        let p = protect(2);
        let t0 = Instant::now();
        let home = ip("192.0.2.7");
        p.bad_password("user01", home, t0);
        p.bad_password("user01", home, t0);
        p.good_password("user01", home);
        // home is familiar now; its familiar count is fresh.
        assert_eq!(
            p.bad_password("user01", home, t0),
            BadPassword::Counted(Location::Familiar)
        );
    }

    #[test]
    fn a_spray_of_fifty_users_from_one_address_is_flagged_once() {
        let p = protect(10);
        let t0 = Instant::now();
        let source = ip("203.0.113.99");
        let flags: usize = (0..50)
            .map(|i| {
                p.attempt(
                    &format!("user{i:02}@contoso.com"),
                    source,
                    t0 + Duration::from_secs(i),
                )
            })
            .filter(|f| *f)
            .count();
        assert_eq!(flags, 1);
        assert!(
            !p.spray_blocked(source, t0),
            "spray.block is off by default"
        );
    }

    #[test]
    fn spray_names_compare_case_insensitively() {
        assert_eq!(
            name_hash("User01@Contoso.com"),
            name_hash("user01@contoso.com")
        );
        assert_ne!(name_hash("user01"), name_hash("user02"));
        assert_eq!(name_hash("ÉRIC@Contoso.com"), name_hash("éric@contoso.com"));
        // Longer than one stack block.
        let long = "A".repeat(150);
        assert_eq!(name_hash(&long), name_hash(&long.to_lowercase()));
        assert_ne!(name_hash(&long), name_hash(&"a".repeat(149)));
    }

    #[test]
    fn one_users_retries_are_not_a_spray() {
        let p = protect(10);
        let t0 = Instant::now();
        let source = ip("198.51.100.10");
        for i in 0..500 {
            assert!(!p.attempt("user01@contoso.com", source, t0 + Duration::from_millis(i)));
        }
        // Nor are many users spread over many addresses.
        for i in 0..50u8 {
            assert!(!p.attempt(&format!("user{i}"), IpAddr::from([10, 0, 0, i]), t0));
        }
    }

    #[test]
    fn spray_blocking_refuses_a_flagged_address_for_the_window() {
        let p = Protect::new(ProtectConfig {
            spray_block: true,
            spray_distinct_users: 3,
            ..ProtectConfig::default()
        });
        let t0 = Instant::now();
        let source = ip("203.0.113.99");
        for i in 0..4 {
            p.attempt(&format!("u{i}"), source, t0);
        }
        assert!(p.spray_blocked(source, t0));
        assert!(!p.spray_blocked(source, t0 + Duration::from_secs(600)));
        assert!(!p.spray_blocked(ip("198.51.100.1"), t0));
    }
}
