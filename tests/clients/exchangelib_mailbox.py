#!/usr/bin/env python3
"""exchangelib, unmodified, reading a mailbox through exgate: SOAP Autodiscover, the
version guess, the Inbox, the folder tree, one message's body, ResolveNames and a sync.

    exchangelib_mailbox.py --url https://localhost:PORT --email user02@contoso.com \
                           --user 'CONTOSO\\user02' --password P --auth basic|ntlm
    exchangelib_mailbox.py --url https://localhost:PORT --email user01@contoso.com \
                           --user user01@contoso.com --password P --auth oauth \
                           --authority https://localhost:IDP/TENANT --mfa-code C \
                           --scope https://outlook.office365.com/EWS.AccessAsUser.All

With --auth oauth, Microsoft's MSAL acquires the token first (username and password
with the lab's one-time code, as msal_flows.py does), and exchangelib uses it as OAuth2
credentials holding an access token: Autodiscover, the version guess and the mailbox
then go over `Authorization: Bearer`, which exgate validates (MFA included).

Prints one JSON line and exits 0 whatever happened:
    {"ok": true, "autodiscover": {...}, "guess": {...}, "inbox": {...}, ...}
or, at the first failure, {"ok": false, "step": <step>, "error": <exception class>,
"detail": <text>} plus the steps done so far.

Only the first Autodiscover URL is given: exchangelib's own first try is
https://<domain>/autodiscover/autodiscover.svc, found through DNS, which the lab's
contoso.com has not. exchangelib's Autodiscover cache is where it keeps an endpoint that
worked, so that is where this script puts the lab's (in a scratch temp directory, so no
other run's cache is read). Everything after that is exchangelib's normal path: it POSTs
GetUserSettings, takes ExternalEwsUrl and the version from the answer, and talks EWS.
With an https URL, requests trusts the CA file that REQUESTS_CA_BUNDLE names (the
lab's own CA, once the lab serves TLS).
"""

import argparse
import json
import sys
import tempfile

# exchangelib keeps its Autodiscover cache in the temp directory it sees at import.
tempfile.tempdir = tempfile.mkdtemp(prefix="exgate-exchangelib-")

from exchangelib import (  # noqa: E402
    BASIC,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    FailFast,
    OAuth2AuthorizationCodeCredentials,
)
from exchangelib.autodiscover import AutodiscoverProtocol  # noqa: E402
from exchangelib.autodiscover.cache import autodiscover_cache  # noqa: E402
from exchangelib.protocol import CachingProtocol  # noqa: E402


def msal_token(a):
    """An access token from MSAL's username-password flow with the second factor."""
    import msal
    from oauthlib.oauth2 import OAuth2Token

    from msal_flows import AuthorityPortSession

    outlook = "d3590ed6-52b3-4102-aeff-aad2292ab01c"  # Outlook desktop's client id
    app = msal.PublicClientApplication(
        outlook,
        authority=a.authority,
        instance_discovery=False,
        http_client=AuthorityPortSession(a.authority),
    )
    result = app.acquire_token_by_username_password(
        a.user, a.password, scopes=[a.scope], data={"mfa_code": a.mfa_code}
    )
    if "access_token" not in result:
        raise RuntimeError(f"MSAL: {result.get('error')}: {result.get('error_description', '')[:200]}")
    return OAuth2Token({"access_token": result["access_token"], "token_type": "Bearer",
                        "expires_in": result.get("expires_in", 3600)})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="exgate's base URL, e.g. http://127.0.0.1:18443")
    p.add_argument("--email", required=True)
    p.add_argument("--user", required=True, help="the login: user@domain or DOMAIN\\user")
    p.add_argument("--password", required=True)
    p.add_argument("--auth", choices=["basic", "ntlm", "oauth"], required=True)
    p.add_argument("--authority", help="with --auth oauth: the lab's identity provider")
    p.add_argument("--mfa-code", help="with --auth oauth: the lab's one-time code")
    p.add_argument("--scope", help="with --auth oauth: the EWS scope to ask for")
    a = p.parse_args()

    auth_type = {"basic": BASIC, "ntlm": NTLM, "oauth": OAUTH2}[a.auth]
    out = {"ok": False, "auth": a.auth}
    step = "token"
    try:
        if a.auth == "oauth":
            credentials = OAuth2AuthorizationCodeCredentials(access_token=msal_token(a))
        else:
            credentials = Credentials(a.user, a.password)
        step = "autodiscover"
        domain = a.email.split("@", 1)[1].lower()
        autodiscover_cache[(domain, credentials)] = AutodiscoverProtocol(
            config=Configuration(
                service_endpoint=a.url.rstrip("/") + "/autodiscover/autodiscover.svc",
                credentials=credentials,
                auth_type=auth_type,
                retry_policy=FailFast(),
            )
        )
        account = Account(
            primary_smtp_address=a.email,
            credentials=credentials,
            autodiscover=True,
            config=Configuration(credentials=credentials, auth_type=auth_type, retry_policy=FailFast()),
        )
        ad = account.ad_response
        out["autodiscover"] = {
            "ews_url": ad.ews_url,
            "smtp": ad.autodiscover_smtp_address,
            "display_name": ad.user_settings.get("user_display_name"),
            "api_version": ad.version.api_version if ad.version else None,
        }

        step = "inbox"
        items = list(account.inbox.all())
        out["inbox"] = {
            "count": account.inbox.all().count(),
            "total_count": account.inbox.total_count,
            "subjects": [i.subject for i in items],
            "senders": [i.sender.email_address if i.sender else None for i in items],
        }
        step = "read"
        first = account.inbox.get(id=items[0].id, changekey=items[0].changekey)
        out["first"] = {"subject": first.subject, "body": str(first.body), "is_read": first.is_read}

        step = "folders"
        out["folders"] = sorted(f.name for f in account.root.walk())
        out["tree"] = account.root.tree().splitlines()

        step = "resolve_names"
        out["resolve_names"] = [m.email_address for m in account.protocol.resolve_names(["user0"])]

        step = "sync"
        out["sync_created"] = sorted(
            i.subject for change, i in account.inbox.sync_items() if change == "create"
        )

        # A second client that knows only the EWS URL: exchangelib guesses the server's
        # version (a ConvertId request) before its first call. Its protocol cache would
        # hand back the first client's protocol, which knows the version already.
        step = "guess"
        CachingProtocol.clear_cache()
        guessing = Account(
            primary_smtp_address=a.email,
            autodiscover=False,
            access_type="delegate",
            config=Configuration(
                service_endpoint=ad.ews_url,
                credentials=credentials,
                auth_type=auth_type,
                retry_policy=FailFast(),
            ),
        )
        version = guessing.version
        out["guess"] = {
            "build": [version.build.major_version, version.build.minor_version,
                      version.build.major_build, version.build.minor_build],
            "api_version": version.api_version,
            "inbox_count": guessing.inbox.all().count(),
        }
        out["ok"] = True
    except Exception as e:  # report, never crash
        out.update(step=step, error=type(e).__name__, detail=str(e)[:500])
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
