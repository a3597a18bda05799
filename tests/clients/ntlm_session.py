#!/usr/bin/env python3
"""A real NTLM client: several requests on ONE requests.Session (so one kept-alive TCP
connection), as Outlook and most NTLM libraries do.

    ntlm_session.py --base URL --user 'CONTOSO\\user01' --password P [--negotiate] PATH...

NTLM authenticates the connection, not the request: after the first handshake the
library sends later requests on the same connection without any Authorization header.
The proxy must then decide each later request by the connection's user.

Prints one JSON line per PATH:
    {"path", "status", "connection_reused", "new_connections", "local_port", "legs"}
connection_reused: no new TCP connection was opened for this request (auth legs included);
local_port: the client's port of the connection that carried the final answer;
legs: the statuses of the auth legs before the final answer (e.g. [401, 401]).
With --negotiate, a request that ran a handshake also has "spnego": the server answered in
SPNEGO (a NegTokenResp, as IIS does, not a bare NTLM challenge), and "mech_list_mic": the
server's last token carried a mechListMIC, which pyspnego verified (a wrong one raises).
Exits 0 whatever the statuses.
"""

import argparse
import base64
import json
import sys
from urllib.parse import urlparse

import requests
import spnego
import urllib3.connection
from requests_ntlm import HttpNtlmAuth
from spnego._spnego import NegTokenResp, unpack_token  # pyspnego's own SPNEGO decoder

# Count the TCP connections urllib3 opens or tries to (a reused connection opens none).
# HTTPSConnection has its own connect, which does not call HTTPConnection's: hook both.
CONNECTS = []


def _counting(connect):
    def counting_connect(self):
        CONNECTS.append(self)
        connect(self)

    return counting_connect


for _cls in (urllib3.connection.HTTPConnection, urllib3.connection.HTTPSConnection):
    _cls.connect = _counting(_cls.connect)


def negotiate_token(r):
    """The token of the response's `WWW-Authenticate: Negotiate <token>`, if any."""
    for value in (v.strip() for v in r.headers.get("www-authenticate", "").split(",")):
        if value.lower().startswith("negotiate "):
            return base64.b64decode(value.split(" ", 1)[1])
    return None


class NegotiateAuth(requests.auth.AuthBase):
    """`Authorization: Negotiate` with NTLM inside SPNEGO, by pyspnego's own SPNEGO
    (use_negotiate; without Kerberos it offers NTLM only). Like HttpNtlmAuth, it answers a
    401 by running the handshake on the same connection, and sends nothing on an
    authenticated one. The server's last token, on the 200, is given to pyspnego too, as
    mutual authentication: pyspnego checks its mechListMIC."""

    def __init__(self, user, password):
        self.user, self.password = user, password

    def __call__(self, r):
        r.headers["Connection"] = "Keep-Alive"
        r.register_hook("response", self._on_response)
        return r

    def _on_response(self, r, **kwargs):
        offers = r.headers.get("www-authenticate", "").lower()
        if r.status_code != 401 or "negotiate" not in offers:
            return r
        if "Authorization" in r.request.headers:
            return r  # a handshake leg failed: give the 401 back
        ctx = spnego.client(
            self.user,
            self.password,
            hostname=urlparse(r.url).hostname,
            service="HTTP",
            protocol="negotiate",
            options=spnego.NegotiateOptions.use_negotiate,
        )
        history, token = [], ctx.step()  # NegTokenInit carrying the NTLM Type 1
        spnego_seen = mic_seen = False
        while token is not None:
            r.content  # read the body so the connection can carry the next leg
            r.raw.release_conn()
            history.append(r)
            req = r.request.copy()
            req.headers["Authorization"] = "Negotiate " + base64.b64encode(token).decode()
            r = r.connection.send(req, **kwargs)
            answer = negotiate_token(r)
            if answer is not None:
                resp = unpack_token(answer)
                if isinstance(resp, NegTokenResp):
                    spnego_seen = True
                    mic_seen = resp.mech_list_mic is not None
            if r.status_code != 401:
                if answer is not None and not ctx.complete:
                    ctx.step(answer)  # accept-completed: verifies the mechListMIC
                break
            if answer is None or ctx.complete:
                break
            token = ctx.step(answer)  # NTLM Type 3 (and the client's mechListMIC)
        r.history[:0] = history
        r.spnego = {"spnego": spnego_seen, "mech_list_mic": mic_seen and ctx.complete}
        return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--negotiate", action="store_true")
    p.add_argument("paths", nargs="+")
    a = p.parse_args()

    s = requests.Session()
    s.auth = NegotiateAuth(a.user, a.password) if a.negotiate else HttpNtlmAuth(a.user, a.password)
    for path in a.paths:
        before = len(CONNECTS)
        url = a.base.rstrip("/") + path
        try:
            if path.lower().startswith("/mapi/"):
                # As Outlook's MAPI/HTTP Connect request (empty body here).
                r = s.post(url, data=b"", stream=True, timeout=30, headers={
                    "X-RequestType": "Connect",
                    "Content-Type": "application/mapi-http",
                })
            else:
                r = s.get(url, stream=True, timeout=30)
            try:  # the connection is still checked out: ask its socket
                port = r.raw._connection.sock.getsockname()[1]
            except Exception:
                port = None
            r.content  # reading the body gives the connection back to the pool
            status, legs = r.status_code, [h.status_code for h in r.history]
            negotiate = getattr(r, "spnego", {})
        except requests.RequestException as e:
            status, legs, port, negotiate = type(e).__name__, [], None, {}
        new = len(CONNECTS) - before
        print(json.dumps({
            "path": path,
            "status": status,
            "connection_reused": new == 0,
            "new_connections": new,
            "local_port": port,
            "legs": legs,
            **negotiate,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
