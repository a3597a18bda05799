//! Upstream health (SPEC §7 "Health"): per server, which protocols its active checks
//! pass, and whether it answers at all. Exchange 2013 and later publish each protocol's
//! health, as Managed Availability sees it, at `/<vdir>/healthcheck.htm`: 200 while the
//! protocol serves, an error or nothing otherwise (Microsoft, "Load balancing in Exchange
//! Server": health probes per virtual directory). Checking per protocol keeps a server in
//! the rotation of the protocols it still serves, as Microsoft's load-balancing guidance
//! asks.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use crate::policy::Protocol;

/// The health-check path of a protocol's virtual directory; None for protocols that
/// have none (their requests go to any server that answers).
pub const fn healthcheck_path(protocol: Protocol) -> Option<&'static str> {
    match protocol {
        Protocol::Autodiscover => Some("/Autodiscover/healthcheck.htm"),
        Protocol::Mapi => Some("/mapi/healthcheck.htm"),
        Protocol::OfflineAddressBook => Some("/OAB/healthcheck.htm"),
        Protocol::WebServices => Some("/EWS/healthcheck.htm"),
        Protocol::Rpc => Some("/Rpc/healthcheck.htm"),
        Protocol::ActiveSync => Some("/Microsoft-Server-ActiveSync/healthcheck.htm"),
        Protocol::PowerShell => Some("/PowerShell/healthcheck.htm"),
        Protocol::Owa => Some("/owa/healthcheck.htm"),
        Protocol::Ecp => Some("/ecp/healthcheck.htm"),
        Protocol::ReportingWebServices | Protocol::OutlookService | Protocol::Other => None,
    }
}

/// One server's health as the last round of checks left it. Everything starts healthy:
/// until a check fails, a server serves (passive ejection still applies).
pub struct ServerHealth {
    /// Per protocol ([`Protocol::index`]): its last check passed, or it was never checked.
    passes: [AtomicBool; Protocol::ALL.len()],
    /// The last round got an HTTP answer to at least one check.
    answering: AtomicBool,
}

impl Default for ServerHealth {
    fn default() -> ServerHealth {
        ServerHealth {
            passes: std::array::from_fn(|_| AtomicBool::new(true)),
            answering: AtomicBool::new(true),
        }
    }
}

impl ServerHealth {
    /// Whether the server takes new connections for `protocol`: it answers checks at
    /// all, and the protocol's own check (if it has one and it is checked) passes.
    pub fn serves(&self, protocol: Protocol) -> bool {
        self.answering.load(Ordering::Relaxed)
            && (healthcheck_path(protocol).is_none()
                || self.passes[protocol.index()].load(Ordering::Relaxed))
    }

    /// Records a round: per checked protocol, whether its check passed, and whether any
    /// check got an answer. Returns the protocols whose state changed, as (protocol, now
    /// passing) pairs, for the log.
    ///
    /// [`Probe::Unknown`] results (exgate could not open a connection for lack of its
    /// own descriptors) are no evidence either way and change nothing.
    pub fn record(&self, results: &[(Protocol, Probe)]) -> Vec<(Protocol, bool)> {
        let known: Vec<_> = results
            .iter()
            .filter(|(_, p)| *p != Probe::Unknown)
            .collect();
        if known.is_empty() {
            return Vec::new();
        }
        let answering = known.iter().any(|(_, p)| *p != Probe::NoAnswer);
        self.answering.store(answering, Ordering::Relaxed);
        let mut changed = Vec::new();
        for (protocol, probe) in known {
            let pass = *probe == Probe::Pass;
            let was = self.passes[protocol.index()].swap(pass, Ordering::Relaxed);
            if was != pass {
                changed.push((*protocol, pass));
            }
        }
        changed
    }
}

/// The outcome of one health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A 2xx answer.
    Pass,
    /// An HTTP answer that is not 2xx (the protocol is down, the server is up).
    Fail,
    /// No connection, or no answer within the check timeout.
    NoAnswer,
    /// Not checked: exgate itself had no descriptor, memory or port for the probe
    /// (SPEC §7: local exhaustion is never blamed on an upstream).
    Unknown,
}

impl Probe {
    /// The outcome of an answer with this status.
    pub fn of_status(status: u16) -> Probe {
        match status {
            200..=299 => Probe::Pass,
            _ => Probe::Fail,
        }
    }
}

/// The protocols requests have used since start, as a bit set over
/// [`Protocol::index`]: the active checks cover their virtual directories (SPEC §7),
/// plus Autodiscover's, where every Exchange client starts.
#[derive(Default)]
pub struct InUse(AtomicU16);

impl InUse {
    /// Notes a request for `protocol`: one relaxed load when already noted.
    pub fn note(&self, protocol: Protocol) {
        let bit = 1u16 << protocol.index();
        if self.0.load(Ordering::Relaxed) & bit == 0 {
            self.0.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// The protocols to check, each with its health-check path.
    pub fn checked(&self) -> Vec<(Protocol, &'static str)> {
        let bits = self.0.load(Ordering::Relaxed) | 1 << Protocol::Autodiscover.index();
        Protocol::ALL
            .into_iter()
            .filter(|p| bits & (1 << p.index()) != 0)
            .filter_map(|p| healthcheck_path(p).map(|path| (p, path)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exchange_vdir_has_its_healthcheck_page() {
        for p in Protocol::ALL {
            if let Some(path) = healthcheck_path(p) {
                assert!(path.ends_with("/healthcheck.htm"));
                // The check path classifies as its own protocol.
                let target = crate::policy::classify(path).unwrap();
                assert_eq!(target.protocol, p, "{path}");
            }
        }
    }

    #[test]
    fn autodiscover_is_always_checked_and_used_protocols_join_it() {
        let in_use = InUse::default();
        assert_eq!(
            in_use.checked(),
            vec![(Protocol::Autodiscover, "/Autodiscover/healthcheck.htm")]
        );
        in_use.note(Protocol::Mapi);
        in_use.note(Protocol::Other);
        in_use.note(Protocol::Mapi);
        let checked: Vec<_> = in_use.checked().into_iter().map(|(p, _)| p).collect();
        assert_eq!(checked, vec![Protocol::Autodiscover, Protocol::Mapi]);
    }

    #[test]
    fn a_failed_check_takes_only_its_protocol_out() {
        let h = ServerHealth::default();
        assert!(h.serves(Protocol::Mapi) && h.serves(Protocol::Other));
        let changed = h.record(&[
            (Protocol::Autodiscover, Probe::Pass),
            (Protocol::Mapi, Probe::Fail),
        ]);
        assert_eq!(changed, vec![(Protocol::Mapi, false)]);
        assert!(!h.serves(Protocol::Mapi));
        assert!(h.serves(Protocol::Autodiscover));
        assert!(h.serves(Protocol::WebServices), "never checked");
        assert!(h.serves(Protocol::Other), "the server answers");
        assert_eq!(
            h.record(&[(Protocol::Mapi, Probe::Pass)]),
            vec![(Protocol::Mapi, true)]
        );
        assert!(h.serves(Protocol::Mapi));
    }

    #[test]
    fn a_server_that_answers_nothing_serves_nothing() {
        let h = ServerHealth::default();
        h.record(&[
            (Protocol::Autodiscover, Probe::NoAnswer),
            (Protocol::Mapi, Probe::NoAnswer),
        ]);
        assert!(!h.serves(Protocol::Autodiscover));
        assert!(!h.serves(Protocol::Mapi));
        assert!(!h.serves(Protocol::Other));
        assert!(
            !h.serves(Protocol::WebServices),
            "unchecked, but the server is silent"
        );
    }

    #[test]
    fn a_probe_exgate_could_not_make_changes_nothing() {
        let h = ServerHealth::default();
        let changed = h.record(&[
            (Protocol::Autodiscover, Probe::Unknown),
            (Protocol::Mapi, Probe::Unknown),
        ]);
        assert!(changed.is_empty());
        assert!(h.serves(Protocol::Mapi) && h.serves(Protocol::Other));
        h.record(&[
            (Protocol::Mapi, Probe::Fail),
            (Protocol::Autodiscover, Probe::Pass),
        ]);
        h.record(&[
            (Protocol::Mapi, Probe::Unknown),
            (Protocol::Autodiscover, Probe::Pass),
        ]);
        assert!(
            !h.serves(Protocol::Mapi),
            "an unknown probe is no recovery either"
        );
    }

    #[test]
    fn only_2xx_passes() {
        assert_eq!(Probe::of_status(200), Probe::Pass);
        assert_eq!(Probe::of_status(204), Probe::Pass);
        assert_eq!(Probe::of_status(302), Probe::Fail);
        assert_eq!(Probe::of_status(404), Probe::Fail);
        assert_eq!(Probe::of_status(503), Probe::Fail);
    }
}
