//! `decide()`: the pure decision for one request (SPEC §1 steps 1–4).
//!
//! An [`Engine`] is an immutable snapshot — settings, users, policies, and tables derived
//! from them — so the proxy can share one behind an `Arc` and swap it atomically when a
//! cmdlet or reload changes the policies. Deciding takes no lock and does no I/O.

use super::context::{
    ConnectionIdentity, ConnectionSubject, Context, KerberosSubject, kerberos_subject,
};
use super::decision::{Action, Decision, Reason};
use super::directory::{Directory, Lookup, UserId};
use super::path::{Target, TargetError, classify};
use super::protocol::{Protocol, Switch};
use super::proxyshell::autodiscover_v2_request_refused;
use super::store::{Deployment, PolicyId, PolicyStore};
use crate::auth::{Credentials, Mechanism, NtlmMessage, Scheme, parse_authorization};

/// Enforce policies, or only report what they would block (`policy.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    ReportOnly,
}

/// What to do with legacy credentials on paths that belong to no protocol
/// (`policy.other_paths`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtherPaths {
    /// Block legacy schemes there whatever the policy (the default).
    BlockLegacy,
    /// Forward them untouched.
    Pass,
}

/// The engine's settings from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub deployment: Deployment,
    pub mode: Mode,
    pub other_paths: OtherPaths,
}

/// Who legacy credentials identify, as far as the proxy can tell.
enum Subject<'a> {
    /// A presented user name.
    User(&'a str),
    /// The identity is hidden (Kerberos without a keytab): the organization default
    /// decides.
    OrgDefault,
    /// NTLM Type 1, or a Kerberos offer without a ticket: nobody yet; decided again at
    /// the Type 3 or AP-REQ.
    HandshakeStart,
    /// Malformed or anonymous credentials: the strictest policy that could apply.
    Unidentified,
}

/// A precomputed outcome: action, reason, deciding policy.
type Outcome = (Action, Reason, Option<PolicyId>);

/// An immutable policy snapshot that decides requests.
#[derive(Clone, Debug)]
pub struct Engine {
    settings: Settings,
    directory: Directory,
    store: PolicyStore,
    /// Per protocol: NTLM Type 1 is blocked at once because every policy that could
    /// apply blocks it (holds the organization default's id).
    type1_blocked: [Option<PolicyId>; Protocol::ALL.len()],
    /// Per protocol: the outcome for legacy credentials with no identifiable user.
    unidentified: [Outcome; Protocol::ALL.len()],
}

impl Engine {
    /// Builds a snapshot and its derived tables.
    pub fn new(settings: Settings, directory: Directory, store: PolicyStore) -> Engine {
        let mut engine = Engine {
            settings,
            directory,
            store,
            type1_blocked: [None; Protocol::ALL.len()],
            unidentified: [(Action::Allow, Reason::NoPolicy, None); Protocol::ALL.len()],
        };
        for protocol in Protocol::ALL {
            if let Some(switch) = protocol.switch() {
                engine.type1_blocked[protocol.index()] = engine.blocked_for_everyone(switch);
                engine.unidentified[protocol.index()] = engine.strictest(switch);
            }
        }
        engine
    }

    /// The settings this snapshot was built with.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The declared users.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The policies and their assignments.
    pub fn store(&self) -> &PolicyStore {
        &self.store
    }

    /// Whether the organization default enforces a block of legacy authentication for
    /// `protocol` (Exchange's legacy challenges to anonymous clients are then removed).
    pub fn org_default_blocks_legacy(&self, protocol: Protocol) -> bool {
        if self.settings.mode == Mode::ReportOnly {
            return false;
        }
        match (protocol.switch(), self.store.org_default()) {
            (Some(switch), Some(p)) => {
                self.blocks(p, switch) && self.block_action(p) == Action::Block
            }
            (None, _) => {
                protocol == Protocol::Other && self.settings.other_paths == OtherPaths::BlockLegacy
            }
            (Some(_), None) => false,
        }
    }

    /// A snapshot with a new store (after cmdlets), same settings and users.
    pub fn with_store(&self, store: PolicyStore) -> Engine {
        Engine::new(self.settings, self.directory.clone(), store)
    }

    /// Runs a cmdlet script against this snapshot's store, in its dialect and with its
    /// users ([`super::cmdlet::run_script`]); the store itself is unchanged.
    pub fn run_script(
        &self,
        script: &str,
    ) -> Result<super::cmdlet::Applied, Vec<super::cmdlet::ScriptError>> {
        let ctx = super::cmdlet::ScriptContext {
            deployment: self.settings.deployment,
            directory: &self.directory,
        };
        super::cmdlet::run_script(script, &self.store, ctx)
    }

    /// Classifies, parses and decides in one call: SPEC §1 steps 1–4.
    pub fn evaluate<'h, I>(&self, target: &str, authorization: I, ctx: Context<'_>) -> Evaluation
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        let credentials = parse_authorization(authorization);
        let scheme = credentials
            .as_ref()
            .map_or(Scheme::Other, Credentials::scheme);
        let reject = |reason, protocol| Evaluation {
            decision: Decision {
                action: Action::Reject,
                reason,
                protocol,
                scheme,
                policy: None,
                legacy: false,
                user: None,
                connection: false,
            },
            credentials: Credentials::None,
            target: None,
        };
        let target = match classify(target) {
            Ok(t) if t.autodiscover_v2 && autodiscover_v2_request_refused(&ctx.request) => {
                return reject(Reason::ProxyShell, Protocol::Autodiscover);
            }
            Ok(t) => t,
            Err(TargetError::ProxyShell) => {
                return reject(Reason::ProxyShell, Protocol::Autodiscover);
            }
            Err(_) => return reject(Reason::AmbiguousPath, Protocol::Other),
        };
        let Ok(credentials) = credentials else {
            return reject(Reason::DuplicateAuthorization, target.protocol);
        };
        Evaluation {
            decision: self.decide(&target, &credentials, ctx),
            credentials,
            target: Some(target),
        }
    }

    /// Decides one request whose target is classified and credentials parsed.
    ///
    /// On a connection that NTLM or Negotiate authenticated earlier (`ctx.connection`),
    /// the request is also that connection's user's legacy request for its protocol
    /// (SPEC §3): a request without credentials of its own, or with a later Negotiate
    /// leg, is decided as the connection's user; any other request is refused when the
    /// connection's user would be, and otherwise decided on its own credentials.
    pub fn decide(&self, target: &Target, credentials: &Credentials, ctx: Context<'_>) -> Decision {
        let protocol = target.protocol;
        if matches!(protocol, Protocol::Owa | Protocol::Ecp) {
            return self.decision(
                protocol,
                credentials.scheme(),
                (Action::Allow, Reason::NotGoverned, None),
                false,
            );
        }
        if let Some(identity) = ctx.connection
            && !credentials.authenticates_anew()
        {
            let by_connection = self.decide_connection(protocol, identity);
            if !by_connection.action.forwards()
                || matches!(
                    credentials,
                    Credentials::None | Credentials::NegotiateContinuation
                )
            {
                return by_connection;
            }
        }
        self.decide_credentials(target, credentials, ctx)
    }

    /// A request decided as the user who authenticated its connection.
    fn decide_connection(&self, protocol: Protocol, identity: &ConnectionIdentity) -> Decision {
        let subject = match &identity.subject {
            ConnectionSubject::User(name) => Subject::User(name),
            ConnectionSubject::Hidden => Subject::OrgDefault,
            ConnectionSubject::Unidentified => Subject::Unidentified,
        };
        let (outcome, user) = self.legacy(protocol, identity.scheme, subject);
        Decision {
            user,
            connection: true,
            ..self.decision(protocol, identity.scheme, outcome, true)
        }
    }

    fn decision(
        &self,
        protocol: Protocol,
        scheme: Scheme,
        (action, reason, policy): Outcome,
        legacy: bool,
    ) -> Decision {
        Decision {
            action,
            reason,
            protocol,
            scheme,
            policy,
            legacy,
            user: None,
            connection: false,
        }
    }

    /// Decides a request on the credentials it carries.
    fn decide_credentials(
        &self,
        target: &Target,
        credentials: &Credentials,
        ctx: Context<'_>,
    ) -> Decision {
        let protocol = target.protocol;
        let scheme = credentials.scheme();
        let decision = |outcome, legacy| self.decision(protocol, scheme, outcome, legacy);
        // Built once: an NTLM `DOMAIN\user` is not contiguous in the message.
        let name = credentials.user();
        let named = || name.as_deref().map_or(Subject::Unidentified, Subject::User);
        let kerberos = |leg| match kerberos_subject(ctx.ticket, leg) {
            KerberosSubject::Hidden => Subject::OrgDefault,
            KerberosSubject::Offer => Subject::HandshakeStart,
            KerberosSubject::User(u) => Subject::User(u),
            KerberosSubject::Unidentified => Subject::Unidentified,
        };
        let subject = match credentials {
            Credentials::None => {
                return decision((Action::Allow, Reason::Anonymous, None), false);
            }
            Credentials::BearerProbe => {
                return decision((Action::Challenge, Reason::BearerProbe, None), false);
            }
            Credentials::Bearer(_) => {
                let outcome = self.modern(protocol, ctx.token_user, Reason::ModernAuth);
                return decision(outcome, false);
            }
            // SPEC §3: a token in the password is modern; a password is a password.
            Credentials::Basic(b) if target.basic_auth_to_oauth && b.token().is_some() => {
                let outcome = self.modern(protocol, ctx.token_user, Reason::BasicAuthToOAuth);
                return decision(outcome, false);
            }
            Credentials::Other => {
                let action = self.enforce(Action::Block);
                return decision((action, Reason::UnsupportedScheme, None), true);
            }
            Credentials::Basic(_) | Credentials::Digest { .. } => named(),
            Credentials::Ntlm { message, .. } => match message {
                NtlmMessage::Negotiate => Subject::HandshakeStart,
                NtlmMessage::Authenticate(_) => named(),
                NtlmMessage::Challenge | NtlmMessage::Malformed => Subject::Unidentified,
            },
            Credentials::Kerberos(leg) => kerberos(Some(leg)),
            Credentials::NegotiateContinuation => match ctx.prior_mechanism {
                Some(Mechanism::Kerberos) => kerberos(None),
                Some(Mechanism::Ntlm) | None => Subject::Unidentified,
            },
            Credentials::NegotiateUnknown => Subject::Unidentified,
        };
        let (outcome, user) = self.legacy(protocol, scheme, subject);
        let legacy = outcome.1 != Reason::NtlmHandshake;
        Decision {
            user,
            ..decision(outcome, legacy)
        }
    }

    /// Legacy credentials: SPEC §3–§4. Also returns the declared user the credentials
    /// named, when the decision looked them up.
    fn legacy(
        &self,
        protocol: Protocol,
        scheme: Scheme,
        subject: Subject<'_>,
    ) -> (Outcome, Option<UserId>) {
        let outcome = |o: Outcome| (o, None);
        let online = self.settings.deployment == Deployment::Online;
        if online && scheme != Scheme::Basic {
            return outcome((self.enforce(Action::Block), Reason::LegacyNotOffered, None));
        }
        let Some(switch) = protocol.switch() else {
            // Only `Other` is left: OWA and ECP returned earlier.
            return outcome(match self.settings.other_paths {
                OtherPaths::BlockLegacy => {
                    (self.enforce(Action::Block), Reason::OtherPathLegacy, None)
                }
                OtherPaths::Pass => (Action::Allow, Reason::OtherPathPass, None),
            });
        };
        if !online && !switch.exists_on_premises() {
            return outcome((Action::Allow, Reason::NoSwitch, None));
        }
        match subject {
            Subject::User(name) => match self.directory.lookup(name) {
                Lookup::Found(id) => (
                    self.legacy_outcome(self.store.effective(Some(id)), switch),
                    Some(id),
                ),
                Lookup::Unknown => outcome(self.legacy_outcome(self.store.org_default(), switch)),
                Lookup::Ambiguous => outcome(self.unidentified[protocol.index()]),
            },
            Subject::OrgDefault => outcome(self.legacy_outcome(self.store.org_default(), switch)),
            Subject::HandshakeStart => outcome(match self.type1_blocked[protocol.index()] {
                Some(policy) => (
                    Action::Block,
                    Reason::LegacyBlockedForEveryone,
                    Some(policy),
                ),
                None => (Action::Allow, Reason::NtlmHandshake, None),
            }),
            Subject::Unidentified => outcome(self.unidentified[protocol.index()]),
        }
    }

    /// A bearer token (or a token carried in Basic): only on-premises
    /// `BlockModernAuth*` can refuse it here.
    fn modern(&self, protocol: Protocol, user: Option<&str>, allowed: Reason) -> Outcome {
        let Some(switch) = protocol.switch() else {
            return (Action::Allow, allowed, None);
        };
        let user = user.and_then(|u| match self.directory.lookup(u) {
            Lookup::Found(id) => Some(id),
            Lookup::Unknown | Lookup::Ambiguous => None,
        });
        match self.store.effective(user) {
            Some(p)
                if self
                    .store
                    .policy(p)
                    .blocks_modern(self.settings.deployment, switch) =>
            {
                (self.block_action(p), Reason::ModernAuthBlocked, Some(p))
            }
            policy => (Action::Allow, allowed, policy),
        }
    }

    fn legacy_outcome(&self, policy: Option<PolicyId>, switch: Switch) -> Outcome {
        match policy {
            None => (Action::Allow, Reason::NoPolicy, None),
            Some(p) if self.blocks(p, switch) => {
                (self.block_action(p), Reason::LegacyBlocked, Some(p))
            }
            Some(p) => (Action::Allow, Reason::PolicyAllows, Some(p)),
        }
    }

    fn blocks(&self, policy: PolicyId, switch: Switch) -> bool {
        self.store
            .policy(policy)
            .blocks_legacy(self.settings.deployment, switch)
    }

    /// Block, unless this policy or the whole engine only reports.
    fn block_action(&self, policy: PolicyId) -> Action {
        if self.store.policy(policy).report_only {
            Action::ReportOnly
        } else {
            self.enforce(Action::Block)
        }
    }

    /// Global report-only turns every block into a report.
    fn enforce(&self, action: Action) -> Action {
        match (action, self.settings.mode) {
            (Action::Block, Mode::ReportOnly) => Action::ReportOnly,
            (a, _) => a,
        }
    }

    /// Every policy that could apply to someone: the organization default (which also
    /// covers unknown users) and every policy assigned to a user.
    fn applicable(&self) -> impl Iterator<Item = Option<PolicyId>> + '_ {
        std::iter::once(self.store.org_default())
            .chain(self.store.assignments().map(|(_, p)| Some(p)))
    }

    /// NTLM Type 1 is refused early only when the organization default blocks and no
    /// assigned policy lets anyone through (report-only counts as letting through).
    fn blocked_for_everyone(&self, switch: Switch) -> Option<PolicyId> {
        let default = self.store.org_default()?;
        let enforced_block = |p: Option<PolicyId>| {
            p.is_some_and(|p| self.blocks(p, switch) && self.block_action(p) == Action::Block)
        };
        self.applicable().all(enforced_block).then_some(default)
    }

    /// Fail closed for credentials that name nobody: an enforced block by any applicable
    /// policy wins, then a report-only block, else allowed.
    fn strictest(&self, switch: Switch) -> Outcome {
        let blocking: Vec<PolicyId> = self
            .applicable()
            .flatten()
            .filter(|p| self.blocks(*p, switch))
            .collect();
        let enforced = blocking
            .iter()
            .find(|p| self.block_action(**p) == Action::Block);
        match (enforced, blocking.first()) {
            (Some(p), _) => (Action::Block, Reason::UnidentifiedLegacy, Some(*p)),
            (None, Some(p)) => (Action::ReportOnly, Reason::UnidentifiedLegacy, Some(*p)),
            (None, None) => match self.store.org_default() {
                Some(p) => (Action::Allow, Reason::PolicyAllows, Some(p)),
                None => (Action::Allow, Reason::NoPolicy, None),
            },
        }
    }
}

/// The result of [`Engine::evaluate`]: the decision and the parsed credentials (the token
/// stage needs a bearer token; a rejected request carries none).
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub decision: Decision,
    pub credentials: Credentials,
    /// The classified target (None when the request was rejected before that).
    pub target: Option<Target>,
}

impl Evaluation {
    /// The bearer token to validate: a `Bearer` token, or the JWT a Basic header carries
    /// as its password (bare or as `Bearer <token>`) under `BasicAuthToOAuthConversion`.
    pub fn token(&self) -> Option<&[u8]> {
        match &self.credentials {
            Credentials::Bearer(t) => Some(t.expose()),
            Credentials::Basic(b) if self.target.is_some_and(|t| t.basic_auth_to_oauth) => {
                b.token()
            }
            _ => None,
        }
    }
}
