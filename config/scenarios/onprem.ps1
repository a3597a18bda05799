# Authentication policies for Exchange Server 2019 on-premises (CU2 or later), from
# Microsoft's article (on-premises scenarios). Use with exchange.deployment = "onpremises".

New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc
Set-AuthenticationPolicy -Identity BlockLegacyOutlookAuth -BlockLegacyAuthWebServices

Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
Set-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacyOutlookAuth
