#!/usr/bin/env bash
# Holds N concurrent client connections on exgate (default 10,000), each forwarding one
# request to a healthy upstream (then a second request on a sample of them), under the systemd unit's open-file limit (LimitNOFILE=
# 65536, applied with prlimit; where this machine's hard limit is lower, that limit, said
# in the output). Then opens EXTRA more (default 100) to show what a connection beyond
# server.max_connections gets. Reports answers, exgate's memory, and the overload and
# upstream-error counters. Loopback only; stops by itself.
#
#   benches/connections.sh                  # N=10000
#   N=5000 EXTRA=50 benches/connections.sh
#   UPSTREAM_CLOSE=1 benches/connections.sh # the upstream closes after each answer, so
#                                           # exgate needs one descriptor per connection
#   MAXCONN=8000 benches/connections.sh     # server.max_connections (default: exgate's)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
EXTRA=${EXTRA:-100}
UNIT_LIMIT=$(awk -F= '/^LimitNOFILE=/ {print $2}' deploy/systemd/exgate.service)
HARD=$(ulimit -Hn)
LIMIT=$(( HARD == 0 || UNIT_LIMIT < HARD ? UNIT_LIMIT : HARD ))
ulimit -n "$HARD"
cargo build --release --quiet
. benches/common.sh

UP=$(free_port); PROXY=$(free_port); ADMIN=$(free_port)
# The upstream: asyncio, one descriptor per connection, answers 200 (keep-alive unless
# UPSTREAM_CLOSE=1).
python3 - "$UP" "${UPSTREAM_CLOSE:-0}" > "$WORK/upstream.log" 2>&1 <<'PY' &
import asyncio, sys
port, close = int(sys.argv[1]), sys.argv[2] == "1"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
          + (b"Connection: close\r\n" if close else b"") + b"\r\nok")
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()
asyncio.run(main())
PY
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/" && break; sleep 0.1; done
printf '' > "$WORK/policies.ps1"
pass_through_config "$PROXY" "$ADMIN" "$UP" > "$WORK/exgate.toml"
RUST_LOG=info prlimit --nofile="$LIMIT:$LIMIT" target/release/exgate serve --config "$WORK/exgate.toml" > "$WORK/exgate.log" 2>&1 &
EXGATE_PID=$!
PIDS+=($EXGATE_PID)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PROXY/owa/" && break; sleep 0.1; done
MAX=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^exgate_client_connections_limit / {print $2}')
echo "| open-file limit (unit: $UNIT_LIMIT, machine hard limit: $HARD) | $LIMIT |"
echo "| server.max_connections in effect | $MAX |"

python3 - "$PROXY" "$N" "$EXTRA" "$EXGATE_PID" "$ADMIN" <<'PY'
import asyncio, collections, random, sys, time, urllib.request
port, n, extra, pid, admin = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                              sys.argv[4], int(sys.argv[5]))
REQ = b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n"

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

async def exchange(reader, writer):
    writer.write(REQ)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return int(head.split(b" ")[1]), head

async def open_one(sem):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status, head = await asyncio.wait_for(exchange(reader, writer), 30)
            return reader, writer, status, head
        except Exception as e:
            return None, None, type(e).__name__, b""

async def main():
    before = rss()
    t0 = time.time()
    sem = asyncio.Semaphore(200)
    conns = await asyncio.gather(*(open_one(sem) for _ in range(n)))
    opened = time.time() - t0
    statuses = collections.Counter(c[2] for c in conns)
    await asyncio.sleep(1)
    held = rss()
    # The held connections are alive: a sample sends a second request on each.
    served = [c for c in conns if c[2] == 200]
    sample = random.sample(served, min(200, len(served)))
    second = collections.Counter([s for s, _ in await asyncio.gather(*(exchange(r, w) for r, w, _, _ in sample))])
    beyond = await asyncio.gather(*(open_one(sem) for _ in range(extra)))
    beyond_statuses = collections.Counter(c[2] for c in beyond)
    retry_after = sum(1 for c in beyond if b"Retry-After: 1" in c[3])
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    pick = lambda prefix: [l for l in metrics.splitlines() if l.startswith(prefix)]
    fmt = lambda c: ", ".join(f"{k}: {v:,}" for k, v in sorted(c.items(), key=str))
    print(f"| concurrent client connections, one request each | {n:,} ({fmt(statuses)}; opened in {opened:.1f} s) |")
    print(f"| connections beyond them | {extra} ({fmt(beyond_statuses)}; {retry_after} with Retry-After: 1) |")
    print(f"| second request on {len(sample)} sampled held connections | {fmt(second)} |")
    print(f"| exgate RSS before / holding them | {before / 1024:.1f} MiB / {held / 1024:.1f} MiB ({(held - before) / n:.1f} KiB per connection) |")
    for line in pick("exgate_overload_total") + pick("exgate_upstream_errors_total") + pick("exgate_client_connections "):
        print(f"| `{line.rsplit(' ', 1)[0]}` | {line.rsplit(' ', 1)[1]} |")
    if not pick("exgate_upstream_errors_total"):
        print("| `exgate_upstream_errors_total` | no series (never incremented) |")
    for c in conns + beyond:
        if c[1]:
            c[1].close()

asyncio.run(main())
PY
{ grep -c "upstream server ejected" "$WORK/exgate.log" || true; } | sed 's/^/| upstream ejections in the log | /; s/$/ |/'
