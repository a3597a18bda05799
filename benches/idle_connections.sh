#!/usr/bin/env bash
# Memory per idle keep-alive client connection (issue 16): HAProxy 2.6 pass-through and
# exgate (anonymous pass-through), one after the other in the same run, each a fresh
# process in front of the same fast upstream. N client connections (default 10,000) each
# send one anonymous request (GET /owa/, forwarded, answered 200) and then stay open and
# idle. For each proxy: RSS before (after one warm-up request), RSS holding the N
# connections, RSS after a settle of SETTLE seconds (default 2), (settled − before) per
# connection held, and how many upstream connections the proxy holds while its clients
# are idle (`ss`, established towards the upstream port). Both proxies run under the same
# open-file limit: the machine's hard limit (20,000 in this container), so a proxy that
# keeps one upstream connection per client connection holds fewer than 10,000 (exgate's
# default server.max_connections is (limit − 137) / 2); "held" says how many.
# Loopback only; stops by itself. Output: a markdown table.
#
#   benches/idle_connections.sh                  # N=10000, upstream keep-alive, then closing
#   N=1000 benches/idle_connections.sh
#   UPSTREAM_CLOSE=0 benches/idle_connections.sh # only the keep-alive upstream
#   UPSTREAM_CLOSE=1 benches/idle_connections.sh # only the upstream that closes after
#                                                # each answer (Connection: close)
#   MAXCONN=10000 benches/idle_connections.sh    # exgate's server.max_connections
#   EXGATE=/tmp/other/exgate benches/idle_connections.sh   # another build, same config
#   EXGATE_ENV="MALLOC_ARENA_MAX=1" benches/idle_connections.sh   # exgate's environment
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
SETTLE=${SETTLE:-2}
case ${UPSTREAM_CLOSE:-both} in
    0) MODES="keepalive" ;;
    1) MODES="close" ;;
    *) MODES="keepalive close" ;;
esac
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=65536
LIMIT=$(( HARD > 65536 ? 65536 : HARD ))   # the systemd unit's LimitNOFILE at most
ulimit -n "$LIMIT"                         # the client holds N descriptors itself
(( N + 100 <= LIMIT )) || { echo "N=$N needs more than the open-file limit $LIMIT" >&2; exit 1; }

for tool in haproxy python3 curl ss prlimit; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy python3 curl iproute2 util-linux >/dev/null; break; }
done
if [ -z "${EXGATE:-}" ]; then
    cargo build --release --quiet
    EXGATE=$PWD/target/release/exgate
fi
. benches/common.sh
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

# The upstream: HAProxy answering 200 at once (benches/peers/haproxy-upstream.cfg), with
# room for one connection per client connection, and keep-alive or Connection: close.
# HAProxy sizes its descriptors for two per connection; `no strict-limits` lets it run
# under a lower limit (it needs one per connection here).
upstream_config() { # port close
    cat <<EOF
global
    nbthread 1
    no strict-limits
    maxconn $(( LIMIT - 200 ))
defaults
    mode http
    timeout client 10m
    timeout http-keep-alive 10m
    $([ "$2" = 1 ] && echo "option httpclose" || echo "option http-keep-alive")
frontend upstream
    bind 127.0.0.1:$1
    maxconn $(( LIMIT - 200 ))
    http-request return status 200 content-type text/plain string "ok"
EOF
}
# The pass-through HAProxy (benches/peers/haproxy-plain.cfg), with room for N client
# connections and timeouts longer than the run.
haproxy_config() { # port upstream_port
    cat <<EOF
global
    nbthread 1
    no strict-limits
    maxconn $(( N + 100 ))
defaults
    mode http
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    timeout http-keep-alive 10m
    option http-keep-alive
frontend plain
    bind 127.0.0.1:$1
    maxconn $(( N + 100 ))
    default_backend exchange
backend exchange
    server exchange1 127.0.0.1:$2
EOF
}
# exgate as in compare.sh, anonymous pass-through: no issuer, an empty policy script.
exgate_config() { pass_through_config "$1" 0 "$2"; } # port upstream_port
printf '' > "$WORK/policies.ps1"

wait_for() { # url
    for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "no answer from $1" >&2; exit 1
}

for mode in $MODES; do
    UP=$(free_port)
    upstream_config "$UP" "$([ "$mode" = close ] && echo 1 || echo 0)" > "$WORK/upstream-$mode.cfg"
    haproxy -f "$WORK/upstream-$mode.cfg" > "$WORK/upstream-$mode.log" 2>&1 &
    UP_PID=$!
    PIDS+=($UP_PID)
    wait_for "http://127.0.0.1:$UP/"
    for target in haproxy exgate; do
        PORT=$(free_port)
        case $target in
            haproxy)
                haproxy_config "$PORT" "$UP" > "$WORK/haproxy.cfg"
                prlimit --nofile="$LIMIT:$LIMIT" haproxy -f "$WORK/haproxy.cfg" > "$WORK/haproxy-$mode.log" 2>&1 &
                ;;
            exgate)
                exgate_config "$PORT" "$UP" > "$WORK/exgate.toml"
                # shellcheck disable=SC2086
                env RUST_LOG=warn ${EXGATE_ENV:-} prlimit --nofile="$LIMIT:$LIMIT" "$EXGATE" serve --config "$WORK/exgate.toml" > "$WORK/exgate-$mode.log" 2>&1 &
                ;;
        esac
        PID=$!
        PIDS+=($PID)
        wait_for "http://127.0.0.1:$PORT/owa/"
        sleep 0.5
        python3 - "$target" "$mode" "$PORT" "$UP" "$PID" "$N" "$SETTLE" >> "$RESULTS" <<'PY'
import asyncio, collections, subprocess, sys, time
target, mode, port, up, pid, n, settle = sys.argv[1:]
port, n, settle = int(port), int(n), float(settle)
REQ = b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n"

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

def established(dport):
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{dport} )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())

async def open_one(sem):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        except Exception as e:
            return None, type(e).__name__
        try:
            writer.write(REQ)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await asyncio.wait_for(reader.readexactly(length), 30)
            status = int(head.split(b" ")[1])
            if b"connection: close" in head.lower():
                status = f"{status} + close"
            return (reader, writer), status
        except Exception as e:
            return (reader, writer), type(e).__name__

async def main():
    before = rss_kib()
    t0 = time.time()
    sem = asyncio.Semaphore(200)
    conns = await asyncio.gather(*(open_one(sem) for _ in range(n)))
    opened = time.time() - t0
    statuses = collections.Counter(s for _, s in conns)
    held = rss_kib()
    await asyncio.sleep(settle)
    settled = rss_kib()
    # Idle client connections still open (the client's side towards the proxy), and the
    # proxy's connections to the upstream.
    clients = established(port)
    upstream = established(up)
    for c, _ in conns:
        if c:
            c[1].close()
    ok = statuses.get(200, 0)
    fmt = ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items(), key=str))
    print("\t".join(map(str, [target, mode, n, ok, fmt, f"{opened:.1f}", before, held,
                              settled, clients, upstream])))

asyncio.run(main())
PY
        kill "$PID"; wait "$PID" 2>/dev/null || true
    done
    kill "$UP_PID"; wait "$UP_PID" 2>/dev/null || true
done

python3 - "$RESULTS" "$LIMIT" "$SETTLE" <<'PY'
import sys
path, limit, settle = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [line.rstrip("\n").split("\t") for line in open(path)]
names = {"haproxy": "HAProxy 2.6 pass-through", "exgate": "exgate"}
modes = {"keepalive": "keep-alive", "close": "closes after each answer"}
print(f"open-file limit of both proxies and the client: {limit}; settle: {settle} s\n")
print("| proxy | upstream | held idle (answered 200) | answers | RSS before | RSS holding them | "
      f"RSS after {settle} s | KiB per idle connection | vs HAProxy | still open after {settle} s | "
      "upstream connections while idle |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
per = {}
for target, mode, n, ok, fmt, opened, before, held, settled, clients, upstream in rows:
    ok = int(ok)
    kib = (int(settled) - int(before)) / max(ok, 1)
    per[(target, mode)] = kib
    ref = per.get(("haproxy", mode))
    ratio = f"{kib / ref:.2f}×" if target != "haproxy" and ref and ref > 0 else "—"
    mib = lambda k: f"{int(k) / 1024:.1f} MiB"
    print(f"| {names[target]} | {modes[mode]} | {ok:,} of {int(n):,} | {fmt} (opened in {opened} s) | "
          f"{mib(before)} | {mib(held)} | {mib(settled)} | {kib:.1f} | {ratio} | {int(clients):,} | "
          f"{int(upstream):,} |")
PY
