# Authentication policies for exgate, written exactly as in Exchange Online PowerShell.
# A line that starts with '-' continues the command above it. The steps are those of the
# README's "Rolling out, the way Microsoft recommends"; this file starts at steps 1 and 2.

# Step 1, report only for everyone: the organization's policy blocks nothing yet; every
# request it would block is forwarded and recorded as "report_only" (audit log,
# `exgate report`, exgate_legacy_auth_attempts_total{action="report_only"}).
New-AuthenticationPolicy -Name OrgBlockLegacy -ReportOnly
Set-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy

# Step 2, the pilot: the commands of Microsoft's article "MFA-protected Outlook desktop
# access in hybrid messaging" (Exchange Online scenarios), enforced for one user. The
# first command is wrapped onto a second line as it is published there.
New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false
-AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth

# Step 3, when `exgate report` shows nobody left who matters, enforce for everyone, with
# `exgate cmdlet` or here (then `exgate validate` and a reload):
#   Set-AuthenticationPolicy OrgBlockLegacy -ReportOnly:$false
# (The article's own last command, Set-OrganizationConfig -DefaultAuthenticationPolicy
# BlockLegacyOutlookAuth, enforces for everyone at once, with no report-only phase.)

# An exception for a mailbox that still needs IMAP with Basic (the article's example).
New-AuthenticationPolicy -Name BlockOutlook
Set-AuthenticationPolicy -Identity BlockOutlook -AllowBasicAuthImap:$true
