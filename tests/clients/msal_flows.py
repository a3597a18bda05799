#!/usr/bin/env python3
"""Microsoft's MSAL for Python, unmodified, against the lab's identity provider.

    REQUESTS_CA_BUNDLE=<lab>/ca.pem msal_flows.py --authority https://localhost:PORT/TENANT \
        --user user01@contoso.com --password P --mfa-code 246810 [--proxy https://localhost:PORT]

Runs, with a PublicClientApplication and its in-memory token cache:
  1. acquire_token_by_username_password without the second factor: refused
     (Entra's AADSTS50076, or AD FS's MSIS7068);
  2. the same with the lab's one-time code (`data={"mfa_code": …}`, MSAL's way to add
     form fields): a token, an id_token and client_info, so MSAL caches an account;
  3. get_accounts() and acquire_token_silent: first by the refresh token (see below),
     then the access token from the cache;
  4. acquire_token_silent(force_refresh=True): the refresh-token grant again;
  5. the step-up MSAL performs on a claims challenge (claims_challenge=, the acrs
     request exgate's insufficient_claims names): silently without the code, refused;
     by the refresh token with the code, and by username and password with the code,
     a token whose acrs holds the context;
  6. with --proxy, EWS FindItem through exgate with the last token.
Prints one JSON line summarising each step and exits 0 (the caller judges).

The port: MSAL Python keeps an authority's port for discovery but not for the user
realm lookup that precedes username/password (msal/authority.py user_realm_discovery
builds https://<hostname>/common/userrealm/…; MSAL issue #259, fixed for tenant
discovery only by #484). Real Entra listens on 443; the lab cannot. So this script gives
MSAL its documented `http_client=` parameter: a requests.Session that puts the
authority's port back on URLs MSAL addressed to the authority's host without one.
Nothing else changes; certificates are verified against REQUESTS_CA_BUNDLE.
"""

import argparse
import base64
import json
import sys
import warnings
from urllib.parse import urlsplit, urlunsplit

import msal
import requests

# acquire_token_by_username_password is deprecated for public clients (a warning only).
warnings.simplefilter("ignore", DeprecationWarning)


class AuthorityPortSession(requests.Session):
    """A requests.Session that sends MSAL's port-less authority URLs to the port."""

    def __init__(self, authority):
        super().__init__()
        parts = urlsplit(authority)
        self.host, self.netloc = parts.hostname, parts.netloc

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        if parts.netloc == self.host:
            url = urlunsplit(parts._replace(netloc=self.netloc))
        return super().request(method, url, *args, **kwargs)


def claims_of(jwt):
    """The payload of a JWT, unverified (the lab's resource server verifies it)."""
    if not jwt:
        return {}
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def error_of(result):
    return {k: result.get(k) for k in ("error", "error_codes", "suberror")} | {
        "description": (result.get("error_description") or "")[:80],
        "claims": bool(result.get("claims")),
    }


def token_of(result):
    if "access_token" not in result:
        return {"ok": False} | error_of(result)
    at = claims_of(result["access_token"])
    idt = result.get("id_token_claims") or claims_of(result.get("id_token"))
    return {
        "ok": True,
        "source": result.get("token_source"),
        "aud": at.get("aud"),
        "upn": at.get("upn"),
        "oid": at.get("oid"),
        "amr": at.get("amr"),
        "acrs": at.get("acrs"),
        "scp": at.get("scp"),
        "id_token": {k: idt.get(k) for k in ("aud", "iss", "oid", "tid", "preferred_username", "ver")},
        "client_info": "client_info" in result,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--authority", required=True, help="https://localhost:PORT/<tenant>")
    p.add_argument("--client-id", default="d3590ed6-52b3-4102-aeff-aad2292ab01c", help="default: Outlook's")
    p.add_argument("--scope", default="https://outlook.office365.com/EWS.AccessAsUser.All")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mfa-code", required=True)
    p.add_argument("--acrs", default="c1", help="the authentication context of the step-up")
    p.add_argument("--proxy", help="exgate's base URL: call EWS with the token")
    a = p.parse_args()

    app = msal.PublicClientApplication(
        a.client_id,
        authority=a.authority,
        instance_discovery=False,
        http_client=AuthorityPortSession(a.authority),
    )
    scopes, code = [a.scope], {"mfa_code": a.mfa_code}
    out = {"authority": a.authority, "token_endpoint": app.authority.token_endpoint}

    r = app.acquire_token_by_username_password(a.user, a.password, scopes)
    out["without_mfa"] = token_of(r)
    r = app.acquire_token_by_username_password(a.user, a.password, scopes, data=code)
    out["with_mfa"] = token_of(r)
    first = r.get("access_token")

    accounts = app.get_accounts()
    out["accounts"] = [acc.get("username") for acc in accounts]
    account = accounts[0] if accounts else None
    # MSAL files a token obtained with extra `data=` fields under a key of those fields
    # (token_cache._compute_ext_cache_key), so the first silent call, without them,
    # finds no access token and redeems the refresh token; the next one hits the cache.
    r = app.acquire_token_silent(scopes, account=account) or {}
    out["silent"] = token_of(r) | {"same_token": r.get("access_token") == first}
    second = r.get("access_token")
    r = app.acquire_token_silent(scopes, account=account) or {}
    out["silent_cached"] = token_of(r) | {"same_token": r.get("access_token") == second}
    r = app.acquire_token_silent(scopes, account=account, force_refresh=True) or {}
    out["refresh"] = token_of(r) | {"same_token": r.get("access_token") == second}

    challenge = json.dumps({"access_token": {"acrs": {"essential": True, "value": a.acrs}}})
    r = app.acquire_token_silent_with_error(scopes, account=account, claims_challenge=challenge) or {}
    out["step_up_silent_without_mfa"] = token_of(r)
    r = app.acquire_token_silent(scopes, account=account, claims_challenge=challenge, data=code) or {}
    out["step_up_silent"] = token_of(r)
    r = app.acquire_token_by_username_password(
        a.user, a.password, scopes, claims_challenge=challenge, data=code)
    out["step_up"] = token_of(r)

    if a.proxy and "access_token" in r:
        find = (
            '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
            ' xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
            ' xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>'
            '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>'
            '<m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>'
            "</s:Body></s:Envelope>"
        )
        res = requests.post(
            a.proxy.rstrip("/") + "/EWS/Exchange.asmx",
            data=find,
            headers={"Authorization": "Bearer " + r["access_token"], "Content-Type": "text/xml"},
            timeout=10,
        )
        out["ews"] = {"status": res.status_code, "items": res.text.count("<t:ItemId ")}

    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
