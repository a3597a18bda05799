#!/usr/bin/env bash
# Holds N idle keep-alive client connections on exgate (default 10,000), each having
# completed one request, and reports exgate's resident memory before and after.
# Loopback only; stops by itself.
#
#   benches/idle_connections.sh            # N=10000
#   N=20000 benches/idle_connections.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
# The fast upstream (HAProxy, maxconn 4096) needs 8206 descriptors whatever N is.
ulimit -n $((N * 2 + 1024 > 16384 ? N * 2 + 1024 : 16384)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
. benches/common.sh

UP=$(free_port); PROXY=$(free_port)
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
UP_PORT=$UP haproxy -f benches/peers/haproxy-upstream.cfg > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$UP/owa/" && break; sleep 0.1; done
printf '' > "$WORK/policies.ps1"
cat > "$WORK/exgate.toml" <<EOF2
[server]
listen = "127.0.0.1:$PROXY"
admin_listen = "127.0.0.1:0"
header_read_timeout_seconds = 600
[upstream]
servers = ["http://127.0.0.1:$UP"]
[exchange]
deployment = "online"
[policy]
script = "policies.ps1"
EOF2
RUST_LOG=error target/release/exgate serve --config "$WORK/exgate.toml" > "$WORK/exgate.log" 2>&1 &
EXGATE_PID=$!
PIDS+=($EXGATE_PID)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PROXY/owa/" && break; sleep 0.1; done

rss() { awk '/^VmRSS/ {print $2}' "/proc/$EXGATE_PID/status"; }
BEFORE=$(rss)
python3 - "$PROXY" "$N" "$EXGATE_PID" "$BEFORE" <<'PY'
import asyncio, random, sys, time
port, n, pid, before = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
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
    return int(head.split(b" ")[1])

async def open_one(sem):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        status = await exchange(reader, writer)
        return reader, writer, status

async def main():
    t0 = time.time()
    sem = asyncio.Semaphore(200)
    conns = await asyncio.gather(*(open_one(sem) for _ in range(n)))
    ok = sum(1 for c in conns if c[2] == 200)
    if ok < n:
        from collections import Counter
        print("statuses:", Counter(c[2] for c in conns), file=sys.stderr)
    opened = time.time() - t0
    await asyncio.sleep(2)
    held = rss()
    # The connections are alive: a sample sends a second request on each.
    sample = random.sample(conns, min(200, len(conns)))
    alive = sum([1 for s in await asyncio.gather(*(exchange(r, w) for r, w, _ in sample)) if s == 200])
    print(f"| idle keep-alive connections | {n:,} ({ok:,} answered 200, opened in {opened:.1f} s) |")
    print(f"| exgate RSS before | {before / 1024:.1f} MiB |")
    print(f"| exgate RSS holding them | {held / 1024:.1f} MiB |")
    print(f"| per connection | {(held - before) / n:.1f} KiB |")
    print(f"| second request on {len(sample)} sampled connections | {alive} answered 200 |")
    for _, w, _ in conns:
        w.close()

asyncio.run(main())
PY
