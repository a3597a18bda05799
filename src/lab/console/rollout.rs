//! The console's rollout switch: the stages Microsoft recommends for authentication
//! policies (report only for everyone, a pilot group, the organization), and the cmdlets
//! that take the lab from where it is to a stage — the README's "Rolling out" cmdlets,
//! verbatim, only those still needed. Pure: the console reads the state from the
//! running engine and applies the cmdlets through the admin path.

use serde::Serialize;

use crate::policy::{AuthenticationPolicy, Deployment, Engine, Switch};

/// The organization's policy of the rollout (README "Rolling out", step 1).
pub const ORG_POLICY: &str = "OrgBlockLegacy";
/// The article's pilot policy, which the lab's `policies.ps1` creates.
pub const PILOT_POLICY: &str = "BlockLegacyOutlookAuth";
/// The article's pilot user.
pub const PILOT_USER: &str = "user01";

/// A rollout stage, in the order Microsoft recommends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// `OrgBlockLegacy -ReportOnly` is the organization default and the pilot user has no
    /// policy of their own: legacy authentication is forwarded and recorded for everyone.
    ReportOnly,
    /// As `ReportOnly`, and the pilot user has `BlockLegacyOutlookAuth`: their legacy
    /// attempts are blocked.
    Pilot,
    /// `OrgBlockLegacy` enforced as the organization default (the pilot keeps theirs).
    Organization,
}

impl Stage {
    /// Every stage, in rollout order.
    pub const ALL: [Stage; 3] = [Stage::ReportOnly, Stage::Pilot, Stage::Organization];

    /// The name the console's buttons and `POST …/rollout` use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::ReportOnly => "report-only",
            Stage::Pilot => "pilot",
            Stage::Organization => "organization",
        }
    }

    /// Parses [`Stage::as_str`].
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What the rollout depends on, read from the policy store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutState {
    /// `OrgBlockLegacy` exists; `Some(report_only)`.
    pub org_policy: Option<bool>,
    /// `OrgBlockLegacy` is the organization default.
    pub org_default_is_org_policy: bool,
    /// The organization default is another policy (named).
    pub other_org_default: Option<String>,
    /// `BlockLegacyOutlookAuth` exists.
    pub pilot_policy_exists: bool,
    /// The policy assigned to the pilot user, if any.
    pub pilot_user_policy: Option<String>,
    /// Switches the README's `OrgBlockLegacy` blocks that the one in the store does not
    /// (someone loosened it with `Set-AuthenticationPolicy`).
    pub org_policy_gaps: Vec<Switch>,
    /// The same for `BlockLegacyOutlookAuth`.
    pub pilot_policy_gaps: Vec<Switch>,
    /// `BlockLegacyOutlookAuth` only reports (red team: `-ReportOnly` on the pilot's policy
    /// left the stage "organization" while user01's Basic was forwarded).
    pub pilot_policy_report_only: bool,
}

/// The switches whose legacy authentication the README's policy `name` blocks: every
/// one online (a new policy blocks Basic everywhere); on-premises, those its
/// `New-AuthenticationPolicy` line names.
fn blocked_by_readme(deployment: Deployment, name: &str) -> Vec<Switch> {
    use Switch::*;
    match deployment {
        Deployment::Online => Switch::ALL.to_vec(),
        Deployment::OnPremises if name.eq_ignore_ascii_case(ORG_POLICY) => {
            vec![Autodiscover, Mapi, OfflineAddressBook, Rpc, WebServices]
        }
        Deployment::OnPremises => vec![Autodiscover, Mapi, OfflineAddressBook, Rpc],
    }
}

/// What `policy` leaves open of what the README's policy of that name blocks.
fn gaps(deployment: Deployment, policy: &AuthenticationPolicy) -> Vec<Switch> {
    blocked_by_readme(deployment, &policy.name)
        .into_iter()
        .filter(|s| !policy.blocks_legacy(deployment, *s))
        .collect()
}

/// `Set-AuthenticationPolicy` closing `gaps` in the policy `name`.
fn close_gaps(deployment: Deployment, name: &str, gaps: &[Switch]) -> String {
    let switches: Vec<String> = gaps
        .iter()
        .map(|s| match deployment {
            Deployment::Online => format!("-AllowBasicAuth{}:$false", s.as_str()),
            Deployment::OnPremises => format!("-BlockLegacyAuth{}", s.as_str()),
        })
        .collect();
    format!("Set-AuthenticationPolicy {name} {}", switches.join(" "))
}

/// Policy names compare as Exchange compares them: ignoring case (red team: a pilot
/// policy renamed to lower case made the pilot button loop).
fn is(name: Option<&str>, policy: &str) -> bool {
    name.is_some_and(|n| n.eq_ignore_ascii_case(policy))
}

impl RolloutState {
    /// Reads the state from an engine (the running snapshot's).
    pub fn of(engine: &Engine) -> RolloutState {
        let store = engine.store();
        let name = |id| store.policy(id).name.clone();
        let org = store.find(ORG_POLICY);
        let pilot_user = match engine.directory().lookup(PILOT_USER) {
            crate::policy::Lookup::Found(id) => Some(id),
            _ => None,
        };
        let default = store.org_default();
        let deployment = engine.settings().deployment;
        let gaps_of = |name| {
            store
                .find(name)
                .map(|id| gaps(deployment, store.policy(id)))
                .unwrap_or_default()
        };
        let pilot_report_only = store
            .find(PILOT_POLICY)
            .is_some_and(|id| store.policy(id).report_only);
        RolloutState {
            org_policy_gaps: gaps_of(ORG_POLICY),
            pilot_policy_gaps: gaps_of(PILOT_POLICY),
            pilot_policy_report_only: pilot_report_only,
            org_policy: org.map(|id| store.policy(id).report_only),
            org_default_is_org_policy: default.is_some() && default == org,
            other_org_default: default.filter(|d| Some(*d) != org).map(name),
            pilot_policy_exists: store.find(PILOT_POLICY).is_some(),
            pilot_user_policy: pilot_user.and_then(|id| store.user_policy(id)).map(name),
        }
    }

    /// The stage the state is at, if it is exactly one of them. The lab starts at none:
    /// the article's pilot is enforced but there is no organization default yet. A policy
    /// loosened below the README's (`-AllowBasicAuthMapi:$true`) is no stage either.
    pub fn stage(&self) -> Option<Stage> {
        let pilot = is(self.pilot_user_policy.as_deref(), PILOT_POLICY)
            && self.pilot_policy_gaps.is_empty()
            && !self.pilot_policy_report_only;
        if !self.org_default_is_org_policy || !self.org_policy_gaps.is_empty() {
            return None;
        }
        match (self.org_policy, self.pilot_user_policy.is_none()) {
            (Some(false), true) => Some(Stage::Organization),
            (Some(false), false) if pilot => Some(Stage::Organization),
            (Some(true), _) if pilot => Some(Stage::Pilot),
            (Some(true), true) => Some(Stage::ReportOnly),
            _ => None,
        }
    }

    /// What the state is when it is at no stage: the lab's start (the article's pilot,
    /// no organization default), or something else.
    pub fn note(&self) -> Option<&'static str> {
        if self.stage().is_some() {
            return None;
        }
        let lab_start = self.org_policy.is_none()
            && !self.org_default_is_org_policy
            && self.other_org_default.is_none()
            && is(self.pilot_user_policy.as_deref(), PILOT_POLICY)
            && self.pilot_policy_gaps.is_empty()
            && !self.pilot_policy_report_only;
        Some(match lab_start {
            true => {
                "the lab's start: the article's pilot (user01 blocked), no organization default"
            }
            false => {
                "none of the three: the policies differ from every stage's (see who has which)"
            }
        })
    }
}

/// `-BlockLegacyAuth<X>` for each switch the README's policy `name` blocks on-premises, in
/// its order; nothing online, where a new policy blocks Basic everywhere.
fn readme_switches(deployment: Deployment, name: &str) -> String {
    match deployment {
        Deployment::Online => String::new(),
        Deployment::OnPremises => blocked_by_readme(deployment, name)
            .iter()
            .map(|s| format!(" -BlockLegacyAuth{}", s.as_str()))
            .collect(),
    }
}

/// `New-AuthenticationPolicy` for the organization's policy, report-only, as the README's
/// step 1 prints it.
fn new_org_policy(deployment: Deployment) -> String {
    let switches = readme_switches(deployment, ORG_POLICY);
    format!("New-AuthenticationPolicy -Name {ORG_POLICY}{switches} -ReportOnly")
}

/// `New-AuthenticationPolicy` for the pilot policy, as the README prints it (online, the
/// article's `-AllowBasicAuth<X>:$false` list, in its order).
fn new_pilot_policy(deployment: Deployment) -> String {
    let switches = match deployment {
        Deployment::Online => {
            " -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false -AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false".to_owned()
        }
        Deployment::OnPremises => readme_switches(deployment, PILOT_POLICY),
    };
    format!("New-AuthenticationPolicy -Name {PILOT_POLICY}{switches}")
}

/// Closes what was loosened in the pilot's policy: switches, and `-ReportOnly`.
fn close_pilot_gaps(deployment: Deployment, state: &RolloutState, out: &mut Vec<String>) {
    if !state.pilot_policy_gaps.is_empty() {
        out.push(close_gaps(
            deployment,
            PILOT_POLICY,
            &state.pilot_policy_gaps,
        ));
    }
    if state.pilot_policy_report_only {
        out.push(format!(
            "Set-AuthenticationPolicy {PILOT_POLICY} -ReportOnly:$false"
        ));
    }
}

/// The cmdlets that take `state` to `stage`, in the order to apply them; empty when it
/// is there already. Each line is one the README's rollout section prints, verbatim, or,
/// going back a stage, its counterpart (`-ReportOnly:$true`; `Set-User user01
/// -AuthenticationPolicy $null`, since report only for everyone means nobody blocked).
pub fn cmdlets(deployment: Deployment, state: &RolloutState, stage: Stage) -> Vec<String> {
    let mut out = Vec::new();
    let report_only = stage != Stage::Organization;
    let set_report_only =
        |on: bool| format!("Set-AuthenticationPolicy {ORG_POLICY} -ReportOnly:${on}");
    // A new organization policy starts report-only (step 1); the organization stage then
    // enforces it (step 3), after it is the default, as the README orders them.
    let mut enforce_last = false;
    match state.org_policy {
        None => {
            out.push(new_org_policy(deployment));
            enforce_last = !report_only;
        }
        Some(current) if current != report_only => out.push(set_report_only(report_only)),
        Some(_) => {}
    }
    if state.org_policy.is_some() && !state.org_policy_gaps.is_empty() {
        out.push(close_gaps(deployment, ORG_POLICY, &state.org_policy_gaps));
    }
    if !state.org_default_is_org_policy {
        out.push(format!(
            "Set-OrganizationConfig -DefaultAuthenticationPolicy {ORG_POLICY}"
        ));
    }
    if enforce_last {
        out.push(set_report_only(false));
    }
    match stage {
        Stage::ReportOnly if state.pilot_user_policy.is_some() => {
            out.push(format!("Set-User {PILOT_USER} -AuthenticationPolicy $null"));
        }
        Stage::Pilot => {
            if !state.pilot_policy_exists {
                out.push(new_pilot_policy(deployment));
            } else {
                close_pilot_gaps(deployment, state, &mut out);
            }
            if !is(state.pilot_user_policy.as_deref(), PILOT_POLICY) {
                out.push(format!(
                    "Set-User {PILOT_USER} -AuthenticationPolicy {PILOT_POLICY}"
                ));
            }
        }
        // Everyone blocked: the pilot user's own policy too.
        Stage::Organization => match state.pilot_user_policy.as_deref() {
            None => {}
            Some(p) if is(Some(p), PILOT_POLICY) => close_pilot_gaps(deployment, state, &mut out),
            // Another policy of their own: the organization's decides for them too.
            Some(_) => out.push(format!("Set-User {PILOT_USER} -AuthenticationPolicy $null")),
        },
        Stage::ReportOnly => {}
    }
    out
}
