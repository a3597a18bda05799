# /etc/exgate/policies.ps1: the authentication policies, as Exchange PowerShell cmdlets.
#
# The package starts where Microsoft's roll-out starts: one organization-wide policy in
# report-only mode. Nothing new is blocked; every request it would block is forwarded and
# recorded as "report_only" in the audit log (`exgate report /var/log/exgate/audit.jsonl`)
# and in exgate_legacy_auth_attempts_total{action="report_only"}.
#
# exchange.deployment = "online": a new policy blocks Basic for every protocol it does
# not allow, so the two lines below report every Basic sign-in.
# exchange.deployment = "onpremises": a new policy blocks nothing until told; use instead
#   New-AuthenticationPolicy -Name OrgBlockLegacy -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc -BlockLegacyAuthWebServices -ReportOnly
#
# Then pilot and enforce with `exgate cmdlet` (persisted in /var/lib/exgate/state.ps1), or
# here followed by `systemctl reload exgate`:
#   New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false -AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false
#   Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
#   Set-AuthenticationPolicy OrgBlockLegacy -ReportOnly:$false
# (users are declared in /etc/exgate/exgate.toml, [[users]]).

New-AuthenticationPolicy -Name OrgBlockLegacy -ReportOnly
Set-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy
