# Authentication policies for Exchange Server 2019 on-premises (CU2 or later), from
# Microsoft's article (on-premises scenarios). Use with exchange.deployment = "onpremises".
# The steps are those of the README's "Rolling out, the way Microsoft recommends"; this
# file starts at steps 1 and 2.

# Step 1, report only for everyone. On-premises a new policy blocks nothing until told,
# protocol by protocol; -ReportOnly then forwards what it would block and records it.
New-AuthenticationPolicy -Name OrgBlockLegacy -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc -BlockLegacyAuthWebServices -ReportOnly
Set-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy

# Step 2, the pilot: the article's policy, enforced for one user. The article leaves EWS
# out; to block legacy EWS for the pilot too, add
#   Set-AuthenticationPolicy -Identity BlockLegacyOutlookAuth -BlockLegacyAuthWebServices
New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth

# Step 3, when `exgate report` shows nobody left who matters:
#   Set-AuthenticationPolicy OrgBlockLegacy -ReportOnly:$false
# (The article's own last command, Set-OrganizationConfig -DefaultAuthenticationPolicy
# BlockLegacyOutlookAuth, enforces for everyone at once, with no report-only phase.)
