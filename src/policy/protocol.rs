//! The Exchange protocols exgate tells apart, and the policy switch each one answers to.

use std::fmt;

/// An Exchange HTTP protocol, as named in SPEC §2 (the "Protocol" column).
///
/// The names double as metric label values and as the protocol names accepted in
/// configuration (`tokens.mfa.require_for`, …), so they never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Autodiscover,
    Mapi,
    OfflineAddressBook,
    WebServices,
    Rpc,
    ActiveSync,
    PowerShell,
    ReportingWebServices,
    OutlookService,
    Owa,
    Ecp,
    Other,
}

impl Protocol {
    /// Every protocol, in a fixed order (used for per-protocol tables and exhaustive tests).
    pub const ALL: [Protocol; 12] = [
        Protocol::Autodiscover,
        Protocol::Mapi,
        Protocol::OfflineAddressBook,
        Protocol::WebServices,
        Protocol::Rpc,
        Protocol::ActiveSync,
        Protocol::PowerShell,
        Protocol::ReportingWebServices,
        Protocol::OutlookService,
        Protocol::Owa,
        Protocol::Ecp,
        Protocol::Other,
    ];

    /// The stable name: a metric label value and the spelling used in configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Autodiscover => "Autodiscover",
            Protocol::Mapi => "Mapi",
            Protocol::OfflineAddressBook => "OfflineAddressBook",
            Protocol::WebServices => "WebServices",
            Protocol::Rpc => "Rpc",
            Protocol::ActiveSync => "ActiveSync",
            Protocol::PowerShell => "PowerShell",
            Protocol::ReportingWebServices => "ReportingWebServices",
            Protocol::OutlookService => "OutlookService",
            Protocol::Owa => "Owa",
            Protocol::Ecp => "Ecp",
            Protocol::Other => "Other",
        }
    }

    /// Parses a protocol name from configuration, case-insensitively.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    /// The position of this protocol in [`Protocol::ALL`], for per-protocol tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The authentication-policy switch that governs this protocol, if any.
    ///
    /// OWA and ECP have none (Exchange's policies do not cover them); `Other` is
    /// governed by `policy.other_paths` instead.
    pub const fn switch(self) -> Option<Switch> {
        match self {
            Protocol::Autodiscover => Some(Switch::Autodiscover),
            Protocol::Mapi => Some(Switch::Mapi),
            Protocol::OfflineAddressBook => Some(Switch::OfflineAddressBook),
            Protocol::WebServices => Some(Switch::WebServices),
            Protocol::Rpc => Some(Switch::Rpc),
            Protocol::ActiveSync => Some(Switch::ActiveSync),
            Protocol::PowerShell => Some(Switch::Powershell),
            Protocol::ReportingWebServices => Some(Switch::ReportingWebServices),
            Protocol::OutlookService => Some(Switch::OutlookService),
            Protocol::Owa | Protocol::Ecp | Protocol::Other => None,
        }
    }

    /// The Entra sign-in-log "Client app" label for this protocol (audit field `client_app`).
    pub const fn client_app(self) -> &'static str {
        match self {
            Protocol::Autodiscover => "Autodiscover",
            Protocol::Mapi => "MAPI over HTTP",
            Protocol::OfflineAddressBook => "Offline Address Book",
            Protocol::WebServices => "Exchange Web Services",
            Protocol::Rpc => "Outlook Anywhere (RPC over HTTP)",
            Protocol::ActiveSync => "Exchange ActiveSync",
            Protocol::PowerShell => "Exchange Online PowerShell",
            Protocol::ReportingWebServices => "Reporting Web Services",
            Protocol::OutlookService => "Outlook Service",
            Protocol::Owa | Protocol::Ecp => "Browser",
            Protocol::Other => "Other clients",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol suffix of an authentication-policy switch (`AllowBasicAuth<Suffix>`,
/// `BlockLegacyAuth<Suffix>`, `BlockModernAuth<Suffix>`).
///
/// Imap, Pop and Smtp are not HTTP protocols; they exist so that scripts written for
/// Exchange load unchanged and `Get-AuthenticationPolicy` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Switch {
    ActiveSync,
    Autodiscover,
    Imap,
    Mapi,
    OfflineAddressBook,
    OutlookService,
    Pop,
    Powershell,
    ReportingWebServices,
    Rpc,
    Smtp,
    WebServices,
}

impl Switch {
    /// Every switch suffix in Exchange's (alphabetical) order.
    pub const ALL: [Switch; 12] = [
        Switch::ActiveSync,
        Switch::Autodiscover,
        Switch::Imap,
        Switch::Mapi,
        Switch::OfflineAddressBook,
        Switch::OutlookService,
        Switch::Pop,
        Switch::Powershell,
        Switch::ReportingWebServices,
        Switch::Rpc,
        Switch::Smtp,
        Switch::WebServices,
    ];

    /// The suffix as Exchange spells it in parameter names.
    pub const fn as_str(self) -> &'static str {
        match self {
            Switch::ActiveSync => "ActiveSync",
            Switch::Autodiscover => "Autodiscover",
            Switch::Imap => "Imap",
            Switch::Mapi => "Mapi",
            Switch::OfflineAddressBook => "OfflineAddressBook",
            Switch::OutlookService => "OutlookService",
            Switch::Pop => "Pop",
            Switch::Powershell => "Powershell",
            Switch::ReportingWebServices => "ReportingWebServices",
            Switch::Rpc => "Rpc",
            Switch::Smtp => "Smtp",
            Switch::WebServices => "WebServices",
        }
    }

    /// Whether Exchange Server on-premises has `BlockLegacyAuth`/`BlockModernAuth`
    /// switches for this suffix (it has none for SMTP, PowerShell, Reporting Web
    /// Services and Outlook Service).
    pub const fn exists_on_premises(self) -> bool {
        matches!(
            self,
            Switch::ActiveSync
                | Switch::Autodiscover
                | Switch::Imap
                | Switch::Mapi
                | Switch::OfflineAddressBook
                | Switch::Pop
                | Switch::Rpc
                | Switch::WebServices
        )
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of switch suffixes, one bit each: the on/off state of one family of switches
/// in one policy.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SwitchSet(u16);

impl SwitchSet {
    /// Whether `switch` is in the set.
    pub const fn contains(self, switch: Switch) -> bool {
        self.0 & switch.bit() != 0
    }

    /// Puts `switch` in the set (`on`) or takes it out.
    pub fn set(&mut self, switch: Switch, on: bool) {
        if on {
            self.0 |= switch.bit();
        } else {
            self.0 &= !switch.bit();
        }
    }
}

impl fmt::Debug for SwitchSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Switch::ALL.iter().filter(|s| self.contains(**s)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip_case_insensitively() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_name(p.as_str()), Some(p));
            assert_eq!(Protocol::from_name(&p.as_str().to_uppercase()), Some(p));
        }
        assert_eq!(Protocol::from_name("mapi"), Some(Protocol::Mapi));
        assert_eq!(Protocol::from_name("imap"), None);
    }

    #[test]
    fn index_matches_position_in_all() {
        for (i, p) in Protocol::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }

    #[test]
    fn on_premises_has_eight_switches() {
        let n = Switch::ALL
            .iter()
            .filter(|s| s.exists_on_premises())
            .count();
        assert_eq!(n, 8);
    }

    #[test]
    fn switch_set_sets_and_clears() {
        let mut s = SwitchSet::default();
        s.set(Switch::Mapi, true);
        s.set(Switch::Rpc, true);
        assert!(s.contains(Switch::Mapi) && s.contains(Switch::Rpc));
        s.set(Switch::Mapi, false);
        assert!(!s.contains(Switch::Mapi) && s.contains(Switch::Rpc));
        assert_eq!(format!("{s:?}"), "{Rpc}");
    }
}
