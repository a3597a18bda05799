//! Authentication policies and their assignments: the state that cmdlets change.

use std::collections::BTreeMap;

use super::directory::UserId;
use super::protocol::{Switch, SwitchSet};

/// Which Exchange's policy dialect is in force (`exchange.deployment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Deployment {
    /// Exchange Online: `AllowBasicAuth*`, default `$false`; legacy means Basic.
    Online,
    /// Exchange Server 2019 CU2+: `BlockLegacyAuth*` / `BlockModernAuth*`, default unset;
    /// legacy means Basic, Digest, NTLM and Kerberos.
    OnPremises,
}

impl Deployment {
    /// The configuration spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Deployment::Online => "online",
            Deployment::OnPremises => "onpremises",
        }
    }
}

/// One authentication policy, holding both dialects' switch families; only the family
/// of the deployment's dialect can be set by cmdlets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticationPolicy {
    pub name: String,
    /// Online: protocols that still allow Basic (`AllowBasicAuth<X>:$true`).
    pub allow_basic: SwitchSet,
    /// On-premises: protocols with legacy authentication blocked.
    pub block_legacy: SwitchSet,
    /// On-premises: protocols with modern authentication blocked (CU13+).
    pub block_modern: SwitchSet,
    /// exgate extension: forward what this policy would block and record it.
    pub report_only: bool,
}

impl AuthenticationPolicy {
    /// A new policy as `New-AuthenticationPolicy -Name <name>` makes it: online, Basic
    /// blocked everywhere; on-premises, nothing blocked.
    pub fn new(name: &str) -> AuthenticationPolicy {
        AuthenticationPolicy {
            name: name.to_owned(),
            allow_basic: SwitchSet::default(),
            block_legacy: SwitchSet::default(),
            block_modern: SwitchSet::default(),
            report_only: false,
        }
    }

    /// Whether this policy blocks legacy authentication for `switch` under `deployment`.
    pub fn blocks_legacy(&self, deployment: Deployment, switch: Switch) -> bool {
        match deployment {
            Deployment::Online => !self.allow_basic.contains(switch),
            Deployment::OnPremises => {
                switch.exists_on_premises() && self.block_legacy.contains(switch)
            }
        }
    }

    /// Whether this policy blocks modern (Bearer) authentication for `switch`.
    pub fn blocks_modern(&self, deployment: Deployment, switch: Switch) -> bool {
        deployment == Deployment::OnPremises
            && switch.exists_on_premises()
            && self.block_modern.contains(switch)
    }
}

/// The position of a policy in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub u16);

/// Every policy, who has which, and the organization default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStore {
    policies: Vec<AuthenticationPolicy>,
    assignments: BTreeMap<UserId, PolicyId>,
    org_default: Option<PolicyId>,
}

impl PolicyStore {
    /// The policy behind an id.
    pub fn policy(&self, id: PolicyId) -> &AuthenticationPolicy {
        &self.policies[usize::from(id.0)]
    }

    /// Every policy, in creation order.
    pub fn policies(&self) -> impl Iterator<Item = (PolicyId, &AuthenticationPolicy)> {
        self.policies
            .iter()
            .enumerate()
            .map(|(i, p)| (PolicyId(i as u16), p))
    }

    /// Finds a policy by name, case-insensitively (Exchange identities are).
    pub fn find(&self, name: &str) -> Option<PolicyId> {
        self.policies
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
            .map(|i| PolicyId(i as u16))
    }

    /// The policy assigned to a user with `Set-User`.
    pub fn user_policy(&self, user: UserId) -> Option<PolicyId> {
        self.assignments.get(&user).copied()
    }

    /// Every user assignment.
    pub fn assignments(&self) -> impl Iterator<Item = (UserId, PolicyId)> + '_ {
        self.assignments.iter().map(|(u, p)| (*u, *p))
    }

    /// The organization default (`Set-OrganizationConfig -DefaultAuthenticationPolicy`).
    pub fn org_default(&self) -> Option<PolicyId> {
        self.org_default
    }

    /// The policy in force for a user: their own, else the organization default.
    pub fn effective(&self, user: Option<UserId>) -> Option<PolicyId> {
        user.and_then(|u| self.user_policy(u)).or(self.org_default)
    }

    /// Marks a policy report-only (or enforcing) from configuration (`policy.policies`).
    pub fn set_report_only(&mut self, id: PolicyId, report_only: bool) {
        self.policy_mut(id).report_only = report_only;
    }

    pub(super) fn insert(&mut self, policy: AuthenticationPolicy) -> PolicyId {
        self.policies.push(policy);
        PolicyId((self.policies.len() - 1) as u16)
    }

    pub(super) fn policy_mut(&mut self, id: PolicyId) -> &mut AuthenticationPolicy {
        &mut self.policies[usize::from(id.0)]
    }

    /// Removes an unassigned policy; the ids of later policies shift down by one.
    pub(super) fn remove(&mut self, id: PolicyId) {
        self.policies.remove(usize::from(id.0));
        let shift = |p: &mut PolicyId| {
            if p.0 > id.0 {
                p.0 -= 1;
            }
        };
        self.assignments.values_mut().for_each(shift);
        if let Some(p) = self.org_default.as_mut() {
            shift(p);
        }
    }

    /// Whether any user, or the organization, has this policy.
    pub(super) fn is_assigned(&self, id: PolicyId) -> bool {
        self.org_default == Some(id) || self.assignments.values().any(|p| *p == id)
    }

    pub(super) fn assign(&mut self, user: UserId, policy: Option<PolicyId>) {
        match policy {
            Some(p) => self.assignments.insert(user, p),
            None => self.assignments.remove(&user),
        };
    }

    pub(super) fn set_org_default(&mut self, policy: Option<PolicyId>) {
        self.org_default = policy;
    }
}
