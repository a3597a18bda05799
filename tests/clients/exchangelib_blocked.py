#!/usr/bin/env python3
"""exchangelib (the common Python EWS library) over NTLM, one EWS call.

    exchangelib_blocked.py --server URL|HOST:PORT --user 'CONTOSO\\user01' --password P
                           [--max-wait 30 | --fail-fast]

Prints one JSON line {"outcome": "ok" | <exception class>, "seconds": elapsed,
"posts": EWS POSTs sent (first try plus retries), "detail": exception text} and exits 0.

Why: under a FaultTolerance retry policy exchangelib reads any non-200 it does not
recognise as "server busy" (HTTP 401, or any answer with `Connection: close`) and backs
off 10 s, 20 s, 40 s... until one wait would exceed max_wait, then raises
RateLimitError. How long it hangs on a blocked NTLM handshake is what we measure.
With --fail-fast (exchangelib's default policy) a plain 401 raises UnauthorizedError at
once, but a 401 with `Connection: close` raises ErrorServerBusy (checked first).
"""

import argparse
import json
import sys
import time

import requests
from exchangelib import DELEGATE, NTLM, Account, Build, Configuration, Credentials, FailFast, FaultTolerance, Version
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.services import FindItem

# Count the EWS POSTs (exchangelib's sessions are requests.Session subclasses; the NTLM
# handshake legs go through the adapter, not through post(), so they are not counted).
POSTS = 0
_post = requests.Session.post


def _counting_post(self, *args, **kwargs):
    global POSTS
    POSTS += 1
    return _post(self, *args, **kwargs)


requests.Session.post = _counting_post


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True,
                   help="exgate's base URL (https://…: trusted through REQUESTS_CA_BUNDLE), or HOST:PORT for plain http")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--max-wait", type=int, default=30)
    p.add_argument("--fail-fast", action="store_true", help="FailFast instead of FaultTolerance")
    a = p.parse_args()

    base = a.server if "://" in a.server else f"http://{a.server}"
    start = time.monotonic()
    outcome, detail = "ok", ""
    try:
        config = Configuration(
            # A full service_endpoint is taken as is, so http:// works (a bare
            # server= would become https://).
            service_endpoint=f"{base}/EWS/Exchange.asmx",
            credentials=Credentials(a.user, a.password),
            auth_type=NTLM,  # no auth-type guessing request
            version=Version(build=Build(15, 1, 2507, 6)),  # Exchange 2016: no version guessing
            retry_policy=FailFast() if a.fail_fast else FaultTolerance(max_wait=a.max_wait),
        )
        # The SMTP address is only put in the request; no autodiscover.
        upn = a.user.split("\\")[-1].split("@")[0] + "@contoso.com"
        account = Account(upn, config=config, autodiscover=False, access_type=DELEGATE)
        # One FindItem on the inbox: a single EWS call, so what is measured is the
        # authentication, not a conversation (exchangelib_mailbox.py reads the mailbox).
        inbox = DistinguishedFolderId(id="inbox", mailbox=Mailbox(email_address=upn))
        items = list(FindItem(account=account).call(
            folders=[inbox], additional_fields=set(), restriction=None, order_fields=None,
            shape="IdOnly", query_string=None, depth="Shallow", calendar_view=None,
            max_items=None, offset=0,
        ))
        bad = [i for i in items if isinstance(i, Exception)]  # EWS returns errors in-line
        if bad:
            outcome, detail = type(bad[0]).__name__, str(bad[0])
    except Exception as e:  # report, never crash
        outcome, detail = type(e).__name__, str(e)
    print(json.dumps({
        "outcome": outcome,
        "seconds": round(time.monotonic() - start, 3),
        "posts": POSTS,
        "detail": detail[:300],
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
