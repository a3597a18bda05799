//! The article's numbered steps, and which step a request belongs to: the console draws
//! the scenario's architecture with these numbers and marks each request with its step,
//! whether it came from `exgate lab walk` or from any other client. Pure.

use serde::Serialize;

use crate::audit::AuditRecord;
use crate::lab::Scenario;

/// Where a step's arrow runs in the console's drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrow {
    /// Outlook → exgate → Exchange, without a token.
    Access,
    /// Exchange → Outlook: the Bearer challenge naming the identity provider.
    Challenge,
    /// Outlook → Entra ID (the authorize URL).
    Authorize,
    /// Entra ID ↔ AD FS sign-in, and the MFA demand.
    SignIn,
    /// MFA completed; tokens back to Outlook.
    Tokens,
    /// Outlook → exgate → Exchange with the access token.
    Mailbox,
    /// The legacy path (Basic, NTLM, …): the article's red dashed line.
    Legacy,
    /// A token without MFA, refused by exgate (exgate's addition to the article).
    NoMfa,
}

/// One numbered step of the article's figure for a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ArticleStep {
    /// The article's number(s): `"1"`, `"4–8"`, … or `"legacy"`, `"mfa"`.
    pub number: &'static str,
    pub arrow: Arrow,
    /// What happens, in the article's words (shortened).
    pub title: &'static str,
}

const fn s(number: &'static str, arrow: Arrow, title: &'static str) -> ArticleStep {
    ArticleStep {
        number,
        arrow,
        title,
    }
}

/// The steps of `scenario`'s figure, in order. Conditional Access scenarios number the
/// sign-in 4–8 and the mailbox 11; AD FS ones 4–6 and 10 (the article's lists).
pub fn steps(scenario: Scenario) -> [ArticleStep; 8] {
    let first = match scenario.deployment() {
        crate::policy::Deployment::Online => s(
            "1",
            Arrow::Access,
            "Outlook tries to access Exchange (no token yet)",
        ),
        crate::policy::Deployment::OnPremises => s(
            "1",
            Arrow::Access,
            "Outlook connects to Exchange and advertises modern authentication",
        ),
    };
    let challenge = s(
        "2",
        Arrow::Challenge,
        "Exchange provides the URL of the Azure AD endpoint to get a token from",
    );
    let authorize = s(
        "3",
        Arrow::Authorize,
        "Outlook connects to Azure AD by using that URL",
    );
    let legacy = s(
        "legacy",
        Arrow::Legacy,
        "Legacy authentication (Basic, NTLM, …): blocked by the authentication policy",
    );
    let no_mfa = match scenario.mfa_by_adfs() {
        false => s(
            "mfa",
            Arrow::NoMfa,
            "A token issued without MFA: refused with Conditional Access's claims challenge, on which the client steps up",
        ),
        true => s(
            "mfa",
            Arrow::NoMfa,
            "A token issued without MFA: refused (insufficient_user_authentication)",
        ),
    };
    match scenario.mfa_by_adfs() {
        false => [
            first,
            challenge,
            authorize,
            s(
                "4–8",
                Arrow::SignIn,
                "Azure AD redirects to AD FS; the user signs in; Conditional Access calls MFA",
            ),
            s(
                "9–10",
                Arrow::Tokens,
                "The user completes MFA; Azure AD issues access and refresh tokens",
            ),
            s(
                "11",
                Arrow::Mailbox,
                "With the access token, Outlook connects to Exchange and retrieves the mailbox",
            ),
            legacy,
            no_mfa,
        ],
        true => [
            first,
            challenge,
            authorize,
            s(
                "4–6",
                Arrow::SignIn,
                "Azure AD redirects to AD FS; the user signs in; the access control policy calls MFA",
            ),
            s(
                "7–9",
                Arrow::Tokens,
                "The user completes MFA at AD FS; Azure AD issues access and refresh tokens",
            ),
            s(
                "10",
                Arrow::Mailbox,
                "With the access token, Outlook connects to Exchange and retrieves the mailbox",
            ),
            legacy,
            no_mfa,
        ],
    }
}

fn number_of(scenario: Scenario, arrow: Arrow) -> &'static str {
    steps(scenario)
        .into_iter()
        .find(|s| s.arrow == arrow)
        .map_or("", |s| s.number)
}

/// The step a request that passed through exgate belongs to, as its step numbers
/// (`"1–2"` for the request and the challenge that answers it), or None for what the
/// article does not draw (a refused malformed request, a token from another tenant, …).
pub fn of_request(scenario: Scenario, r: &AuditRecord) -> Option<String> {
    if r.legacy {
        return Some(number_of(scenario, Arrow::Legacy).to_owned());
    }
    match (r.scheme.as_str(), r.reason.as_str()) {
        // No credentials, or Outlook's empty `Bearer` advertising modern authentication:
        // the answer is the Bearer challenge naming the identity provider.
        ("none", _) | (_, "bearer_probe") if r.status == 401 => Some("1–2".to_owned()),
        ("bearer", "mfa_required") => Some(number_of(scenario, Arrow::NoMfa).to_owned()),
        // The mailbox retrieved: a token accepted on one of Outlook's protocols, and
        // Exchange's answer a success (red team: a bearer request to /owa/, or one whose
        // client went away, was drawn as step 11).
        ("bearer", _)
            if r.decision == "allow"
                && OUTLOOK_PROTOCOLS.contains(&r.protocol.as_str())
                && r.upstream_status.is_some_and(|s| (200..400).contains(&s)) =>
        {
            Some(number_of(scenario, Arrow::Mailbox).to_owned())
        }
        _ => None,
    }
}

/// What the identity provider did with a request, for [`of_idp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdpOutcome {
    /// The authorize (sign-in) page was served.
    SignInPage,
    /// A sign-in or step-up refused for want of the second factor (AADSTS50076, MSIS7068).
    MfaRequired,
    /// Tokens issued.
    TokensIssued,
    /// Anything else (discovery, keys, a wrong password, …).
    Other,
}

/// The step an identity provider request belongs to.
pub fn of_idp(scenario: Scenario, outcome: IdpOutcome) -> Option<&'static str> {
    let arrow = match outcome {
        IdpOutcome::SignInPage => Arrow::Authorize,
        IdpOutcome::MfaRequired => Arrow::SignIn,
        IdpOutcome::TokensIssued => Arrow::Tokens,
        IdpOutcome::Other => return None,
    };
    Some(number_of(scenario, arrow))
}

/// The protocols Outlook desktop retrieves a mailbox over (exgate's protocol names).
const OUTLOOK_PROTOCOLS: [&str; 5] = [
    "Autodiscover",
    "Mapi",
    "OfflineAddressBook",
    "Rpc",
    "WebServices",
];

/// Whether exgate forwarded the request to Exchange: its decision was to allow it or to
/// only report it. (Whether Exchange then answered is the record's `upstream_status`: a
/// client that goes away mid-body leaves none, yet Exchange got its credentials.)
pub fn forwarded(r: &AuditRecord) -> bool {
    matches!(r.decision.as_str(), "allow" | "report_only")
}

/// Whether the console draws the request on the red (blocked legacy) line: legacy
/// authentication exgate refused, so the credentials never reached Exchange. Decided by
/// exgate's decision, not by whether an answer came back (red team: a forwarded Basic
/// whose client went away was drawn as blocked).
pub fn blocked_legacy(r: &AuditRecord) -> bool {
    r.legacy && !forwarded(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        scheme: &str,
        decision: &str,
        reason: &str,
        status: u16,
        legacy: bool,
    ) -> AuditRecord {
        AuditRecord {
            protocol: "Mapi".into(),
            scheme: scheme.into(),
            decision: decision.into(),
            reason: reason.into(),
            status,
            legacy,
            upstream_status: (decision == "allow" || decision == "report_only").then_some(status),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn every_scenario_numbers_its_steps_as_the_article_does() {
        let numbers = |s| steps(s).map(|s| s.number);
        assert_eq!(
            numbers(Scenario::OnlineCa),
            ["1", "2", "3", "4–8", "9–10", "11", "legacy", "mfa"]
        );
        assert_eq!(numbers(Scenario::OnpremCa), numbers(Scenario::OnlineCa));
        assert_eq!(
            numbers(Scenario::OnlineAdfs),
            ["1", "2", "3", "4–6", "7–9", "10", "legacy", "mfa"]
        );
        assert_eq!(numbers(Scenario::OnpremAdfs), numbers(Scenario::OnlineAdfs));
    }

    #[test]
    fn requests_belong_to_the_step_the_article_draws() {
        let ca = Scenario::OnlineCa;
        let adfs = Scenario::OnpremAdfs;
        // Anonymous Autodiscover answered with Exchange's challenge; on-premises, the
        // empty Bearer exgate answers itself.
        let anonymous = record("none", "allow", "anonymous", 401, false);
        assert_eq!(of_request(ca, &anonymous).as_deref(), Some("1–2"));
        let probe = record("bearer", "challenge", "bearer_probe", 401, false);
        assert_eq!(of_request(adfs, &probe).as_deref(), Some("1–2"));
        // Anonymous and answered 200 (a health check) is no step.
        assert_eq!(
            of_request(ca, &record("none", "allow", "anonymous", 200, false)),
            None
        );
        let mailbox = record("bearer", "allow", "modern_auth", 200, false);
        assert_eq!(of_request(ca, &mailbox).as_deref(), Some("11"));
        assert_eq!(of_request(adfs, &mailbox).as_deref(), Some("10"));
        // Not the mailbox: a bearer request to OWA, or one Exchange did not answer with a
        // success (the client went away: no answer at all).
        let mut owa = mailbox.clone();
        owa.protocol = "Owa".into();
        assert_eq!(of_request(ca, &owa), None);
        let mut gone = mailbox.clone();
        gone.upstream_status = None;
        gone.status = 400;
        assert_eq!(of_request(ca, &gone), None);
        let no_mfa = record("bearer", "block", "mfa_required", 401, false);
        assert_eq!(of_request(ca, &no_mfa).as_deref(), Some("mfa"));
        assert_eq!(
            of_request(ca, &record("bearer", "block", "invalid_token", 401, false)),
            None
        );
        for (decision, reason, status) in [
            ("block", "legacy_blocked", 401),
            ("report_only", "legacy_blocked", 200),
            ("allow", "no_policy", 200),
        ] {
            let r = record("basic", decision, reason, status, true);
            assert_eq!(of_request(ca, &r).as_deref(), Some("legacy"), "{decision}");
        }
    }

    #[test]
    fn only_legacy_that_exgate_refused_is_drawn_red() {
        assert!(blocked_legacy(&record(
            "basic",
            "block",
            "legacy_blocked",
            401,
            true
        )));
        assert!(blocked_legacy(&record(
            "ntlm",
            "block",
            "locked_out",
            401,
            true
        )));
        // Forwarded (report-only, allowed): Exchange got the password.
        assert!(!blocked_legacy(&record(
            "basic",
            "report_only",
            "legacy_blocked",
            200,
            true
        )));
        assert!(!blocked_legacy(&record(
            "basic",
            "allow",
            "no_policy",
            401,
            true
        )));
        assert!(!blocked_legacy(&record(
            "bearer",
            "block",
            "mfa_required",
            401,
            false
        )));
    }

    #[test]
    fn identity_provider_outcomes_map_to_the_scenario_numbers() {
        assert_eq!(
            of_idp(Scenario::OnlineCa, IdpOutcome::SignInPage),
            Some("3")
        );
        assert_eq!(
            of_idp(Scenario::OnlineCa, IdpOutcome::MfaRequired),
            Some("4–8")
        );
        assert_eq!(
            of_idp(Scenario::OnlineAdfs, IdpOutcome::MfaRequired),
            Some("4–6")
        );
        assert_eq!(
            of_idp(Scenario::OnpremCa, IdpOutcome::TokensIssued),
            Some("9–10")
        );
        assert_eq!(
            of_idp(Scenario::OnpremAdfs, IdpOutcome::TokensIssued),
            Some("7–9")
        );
        assert_eq!(of_idp(Scenario::OnlineCa, IdpOutcome::Other), None);
    }
}
