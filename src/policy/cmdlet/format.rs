//! `Get-AuthenticationPolicy` output in Exchange's list format (`Format-List`): one
//! `Name : Value` line per property, names padded to the longest name plus one.

use crate::policy::protocol::Switch;
use crate::policy::store::{AuthenticationPolicy, Deployment};

/// Formats one policy as Exchange PowerShell lists it for `deployment`.
pub fn format_policy(policy: &AuthenticationPolicy, deployment: Deployment) -> String {
    let bool_text = |b: bool| if b { "True" } else { "False" };
    let mut rows: Vec<(String, String)> = Vec::new();
    match deployment {
        Deployment::Online => {
            // Exchange lists Powershell last, after the alphabetical rest.
            let order = Switch::ALL
                .into_iter()
                .filter(|s| *s != Switch::Powershell)
                .chain([Switch::Powershell]);
            for s in order {
                rows.push((
                    format!("AllowBasicAuth{}", s.as_str()),
                    bool_text(policy.allow_basic.contains(s)).into(),
                ));
            }
        }
        Deployment::OnPremises => {
            let on_prem = || Switch::ALL.into_iter().filter(|s| s.exists_on_premises());
            for s in on_prem() {
                rows.push((
                    format!("BlockLegacyAuth{}", s.as_str()),
                    bool_text(policy.block_legacy.contains(s)).into(),
                ));
            }
            for s in on_prem() {
                rows.push((
                    format!("BlockModernAuth{}", s.as_str()),
                    bool_text(policy.block_modern.contains(s)).into(),
                ));
            }
        }
    }
    rows.push(("ReportOnly".into(), bool_text(policy.report_only).into()));
    rows.push(("Name".into(), policy.name.clone()));
    rows.push(("Identity".into(), policy.name.clone()));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}: {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_list_matches_the_articles_column() {
        let mut p = AuthenticationPolicy::new("BlockLegacyOutlookAuth");
        p.allow_basic.set(Switch::Imap, true);
        let text = format_policy(&p, Deployment::Online);
        // The article shows these lines verbatim (column 36 holds the colon).
        assert!(text.contains("AllowBasicAuthAutodiscover         : False\n"));
        assert!(text.contains("AllowBasicAuthOfflineAddressBook   : False\n"));
        assert!(text.contains("AllowBasicAuthImap                 : True\n"));
        assert!(text.contains("Name                               : BlockLegacyOutlookAuth\n"));
        assert!(
            text.trim_end()
                .ends_with("Identity                           : BlockLegacyOutlookAuth")
        );
        assert_eq!(text.lines().count(), 15);
        let powershell = text
            .lines()
            .position(|l| l.starts_with("AllowBasicAuthPowershell"));
        assert_eq!(powershell, Some(11));
    }

    #[test]
    fn on_premises_list_matches_the_articles_column() {
        let mut p = AuthenticationPolicy::new("BlockLegacyOutlookAuth");
        p.block_legacy.set(Switch::Mapi, true);
        let text = format_policy(&p, Deployment::OnPremises);
        assert!(text.contains("BlockLegacyAuthMapi               : True\n"));
        assert!(text.contains("BlockLegacyAuthAutodiscover       : False\n"));
        assert!(text.contains("BlockModernAuthOfflineAddressBook : False\n"));
        assert!(!text.contains("AllowBasicAuth"));
        assert_eq!(text.lines().count(), 19);
    }
}
