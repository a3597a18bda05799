//! The whole matrix: protocol × scheme × deployment × {user policy, org default, none} ×
//! {switch on, off}, each checked against an oracle that restates SPEC §2–§4 case by
//! case (it shares no code with the engine's precomputed tables).

use super::*;
use crate::auth::Scheme;
use crate::test_support::*;

/// One kind of request, as a client would send it; the named user is always user01.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Anonymous,
    BasicKnown,
    BasicUnknown,
    BasicMalformed,
    Digest,
    NtlmType1,
    NtlmType3,
    NegotiateType1,
    NegotiateType3,
    Kerberos,
    BearerProbe,
    Bearer,
    OtherScheme,
}

const KINDS: [Kind; 13] = [
    Kind::Anonymous,
    Kind::BasicKnown,
    Kind::BasicUnknown,
    Kind::BasicMalformed,
    Kind::Digest,
    Kind::NtlmType1,
    Kind::NtlmType3,
    Kind::NegotiateType1,
    Kind::NegotiateType3,
    Kind::Kerberos,
    Kind::BearerProbe,
    Kind::Bearer,
    Kind::OtherScheme,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Assignment {
    /// P is assigned to user01; the organization default is Q, P's opposite.
    UserPolicy,
    /// P is the organization default; nobody has a policy of their own.
    OrgDefault,
    /// P exists but applies to nobody.
    None,
}

fn header(kind: Kind) -> Option<Vec<u8>> {
    Some(match kind {
        Kind::Anonymous => return None,
        Kind::BasicKnown => basic("user01@contoso.com"),
        Kind::BasicUnknown => basic("stranger@contoso.com"),
        Kind::BasicMalformed => b"Basic bm8tY29sb24tYXQtYWxs".to_vec(),
        Kind::Digest => br#"Digest username="CONTOSO\\user01", realm="x", nonce="n""#.to_vec(),
        Kind::NtlmType1 => ntlm_type1(),
        Kind::NtlmType3 => ntlm_type3("CONTOSO", "user01"),
        Kind::NegotiateType1 => negotiate_type1(),
        Kind::NegotiateType3 => negotiate_type3("", "user01@contoso.com"),
        Kind::Kerberos => kerberos(),
        Kind::BearerProbe => b"Bearer".to_vec(),
        Kind::Bearer => b"Bearer eyJhbGciOiJSUzI1NiJ9.eyJ1cG4iOiJ1c2VyMDEifQ.c2ln".to_vec(),
        Kind::OtherScheme => b"PlainText user01".to_vec(),
    })
}

fn target(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Autodiscover => "/autodiscover/autodiscover.xml",
        Protocol::Mapi => "/mapi/emsmdb/?MailboxId=0@contoso.com",
        Protocol::OfflineAddressBook => "/OAB/0/oab.xml",
        Protocol::WebServices => "/EWS/Exchange.asmx",
        Protocol::Rpc => "/rpc/rpcproxy.dll?mbx@contoso.com:6001",
        Protocol::ActiveSync => "/Microsoft-Server-ActiveSync?Cmd=Sync",
        Protocol::PowerShell => "/PowerShell/",
        Protocol::ReportingWebServices => "/ecp/ReportingWebService/Reporting.svc/",
        Protocol::OutlookService => "/api/v2.0/me",
        Protocol::Owa => "/owa/",
        Protocol::Ecp => "/ecp/",
        Protocol::Other => "/unknown/app",
    }
}

/// The script for one cell. "Switch on" means `AllowBasicAuth<X>:$true` online and
/// `BlockLegacyAuth<X>` + `BlockModernAuth<X>` on-premises.
fn script(d: Deployment, protocol: Protocol, assignment: Assignment, on: bool) -> String {
    let switches = |on: bool| match (d, protocol.switch()) {
        (_, None) => String::new(),
        (Deployment::Online, Some(s)) => format!("-AllowBasicAuth{}:${on}", s.as_str()),
        (Deployment::OnPremises, Some(s)) if s.exists_on_premises() => format!(
            "-BlockLegacyAuth{0}:${on} -BlockModernAuth{0}:${on}",
            s.as_str()
        ),
        (Deployment::OnPremises, Some(_)) => String::new(),
    };
    let mut s = format!(
        "New-AuthenticationPolicy -Name P {}\nNew-AuthenticationPolicy -Name Q {}\n",
        switches(on),
        switches(!on)
    );
    match assignment {
        Assignment::UserPolicy => s.push_str(
            "Set-User user01 -AuthenticationPolicy P\nSet-OrganizationConfig -DefaultAuthenticationPolicy Q\n",
        ),
        Assignment::OrgDefault => s.push_str("Set-OrganizationConfig -DefaultAuthenticationPolicy P\n"),
        Assignment::None => {}
    }
    s
}

/// SPEC §2–§4, restated per case.
fn oracle(
    d: Deployment,
    protocol: Protocol,
    kind: Kind,
    a: Assignment,
    on: bool,
) -> (Action, Reason) {
    use Action::*;
    use Reason::*;
    let online = d == Deployment::Online;
    // Does policy P (or its opposite Q) block legacy auth? Online "on" allows Basic;
    // on-premises "on" blocks legacy.
    let p_blocks = if online { !on } else { on };
    let q_blocks = !p_blocks;
    let verdict = |policy: Option<bool>, blocked_reason| match policy {
        None => (Allow, NoPolicy),
        Some(true) => (Block, blocked_reason),
        Some(false) => (Allow, PolicyAllows),
    };
    let user_policy = match a {
        Assignment::UserPolicy | Assignment::OrgDefault => Some(p_blocks),
        Assignment::None => None,
    };
    let org_default = match a {
        Assignment::UserPolicy => Some(q_blocks),
        Assignment::OrgDefault => Some(p_blocks),
        Assignment::None => None,
    };

    if matches!(protocol, Protocol::Owa | Protocol::Ecp) {
        return (Allow, NotGoverned);
    }
    match kind {
        Kind::Anonymous => return (Allow, Anonymous),
        Kind::BearerProbe => return (Challenge, BearerProbe),
        Kind::OtherScheme => return (Block, UnsupportedScheme),
        Kind::Bearer => {
            let has_switch = protocol.switch().is_some_and(|s| s.exists_on_premises());
            // On-premises "on" also sets BlockModernAuth on P; the token's user is user01.
            let modern_blocked = !online && has_switch && user_policy.is_some() && on;
            return if modern_blocked {
                (Block, ModernAuthBlocked)
            } else {
                (Allow, ModernAuth)
            };
        }
        _ => {}
    }
    let basic = matches!(
        kind,
        Kind::BasicKnown | Kind::BasicUnknown | Kind::BasicMalformed
    );
    if online && !basic {
        return (Block, LegacyNotOffered);
    }
    if protocol == Protocol::Other {
        return (Block, OtherPathLegacy);
    }
    if !online && !protocol.switch().is_some_and(|s| s.exists_on_premises()) {
        return (Allow, NoSwitch);
    }
    match kind {
        Kind::BasicKnown | Kind::Digest | Kind::NtlmType3 | Kind::NegotiateType3 => {
            verdict(user_policy, LegacyBlocked)
        }
        Kind::BasicUnknown | Kind::Kerberos => verdict(org_default, LegacyBlocked),
        Kind::NtlmType1 | Kind::NegotiateType1 => {
            // Early only when the default blocks and no assigned policy allows.
            let everyone = match a {
                Assignment::UserPolicy => org_default == Some(true) && p_blocks,
                Assignment::OrgDefault => p_blocks,
                Assignment::None => false,
            };
            if everyone {
                (Block, LegacyBlockedForEveryone)
            } else {
                (Allow, NtlmHandshake)
            }
        }
        Kind::BasicMalformed => {
            let any_blocks = match a {
                Assignment::UserPolicy => true, // P and Q are opposites: one blocks
                Assignment::OrgDefault => p_blocks,
                Assignment::None => false,
            };
            if any_blocks {
                (Block, UnidentifiedLegacy)
            } else {
                verdict(org_default, LegacyBlocked)
            }
        }
        _ => unreachable!("{kind:?} returned above"),
    }
}

fn expected_scheme(kind: Kind) -> Scheme {
    match kind {
        Kind::Anonymous => Scheme::None,
        Kind::BasicKnown | Kind::BasicUnknown | Kind::BasicMalformed => Scheme::Basic,
        Kind::Digest => Scheme::Digest,
        Kind::NtlmType1 | Kind::NtlmType3 => Scheme::Ntlm,
        Kind::NegotiateType1 | Kind::NegotiateType3 => Scheme::NegotiateNtlm,
        Kind::Kerberos => Scheme::Kerberos,
        Kind::BearerProbe | Kind::Bearer => Scheme::Bearer,
        Kind::OtherScheme => Scheme::Other,
    }
}

#[test]
fn every_cell_of_the_matrix_matches_the_spec() {
    let mut cells = 0;
    let mut outcomes = std::collections::HashSet::new();
    for d in [Deployment::Online, Deployment::OnPremises] {
        for protocol in Protocol::ALL {
            for a in [
                Assignment::UserPolicy,
                Assignment::OrgDefault,
                Assignment::None,
            ] {
                for on in [true, false] {
                    let engine = engine(d, &script(d, protocol, a, on));
                    for kind in KINDS {
                        let h = header(kind);
                        let ctx = Context {
                            prior_mechanism: None,
                            token_user: Some("user01@contoso.com"),
                            ..Context::default()
                        };
                        let got = engine
                            .evaluate(target(protocol), h.as_deref(), ctx)
                            .decision;
                        let want = oracle(d, protocol, kind, a, on);
                        let cell = format!("{d:?} {protocol} {kind:?} {a:?} switch_on={on}");
                        assert_eq!((got.action, got.reason), want, "{cell}");
                        assert_eq!(got.protocol, protocol, "{cell}");
                        assert_eq!(got.scheme, expected_scheme(kind), "{cell}");
                        let legacy =
                            !matches!(kind, Kind::Anonymous | Kind::Bearer | Kind::BearerProbe)
                                && !matches!(protocol, Protocol::Owa | Protocol::Ecp)
                                && want.1 != Reason::NtlmHandshake;
                        assert_eq!(got.legacy, legacy, "{cell}");
                        outcomes.insert(want);
                        cells += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cells, 2 * 12 * 3 * 2 * KINDS.len());
    // The matrix exercises every allow and block path, not just a few.
    assert!(outcomes.len() >= 14, "{outcomes:?}");
}
