# Authentication policies for exgate, written exactly as in Exchange Online PowerShell.
# These are the commands of Microsoft's article "MFA-protected Outlook desktop access in
# hybrid messaging" (Exchange Online scenarios); the first command is wrapped onto a
# second line as it is published there. A line that starts with '-' continues the
# command above it.

New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false
-AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false

# Pilot first: one user, then the whole organization.
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
Set-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacyOutlookAuth

# An exception for a mailbox that still needs IMAP with Basic (the article's example).
New-AuthenticationPolicy -Name BlockOutlook
Set-AuthenticationPolicy -Identity BlockOutlook -AllowBasicAuthImap:$true
