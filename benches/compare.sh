#!/usr/bin/env bash
# exgate against HAProxy 2.6 and Apache 2.4 + mod_auth_openidc (Debian) doing the same
# enforcement, side by side, on loopback only. Proxies run pinned to core 0; wrk and the
# fast upstream to core 1.
#
#   benches/compare.sh                      # DURATION=5 CONNS=32 ROUNDS=1
#   DURATION=10 ROUNDS=2 benches/compare.sh
#   BASELINE=/tmp/exgate-old benches/compare.sh   # also an earlier exgate build, same config
#   EXGATE=/tmp/exgate-new benches/compare.sh     # that build, not the working tree's
#
# Workloads: anonymous pass-through (GET /owa/), bearer+MFA on /mapi/ (a pool of 300
# distinct RS256 tokens), blocked Basic on /ews/, an 80/20 mix (bearer+MFA / blocked
# Basic) across /mapi, /ews, /autodiscover, /oab, and bad signatures on /mapi/ (the same
# 300 tokens, one signature character changed: every one must be refused). Targets: the
# upstream reached directly, a plain HAProxy pass-through, HAProxy enforcing
# (benches/peers/haproxy-enforce.cfg), Apache + mod_auth_openidc enforcing
# (benches/peers/apache.conf), exgate, and exgate with its verified-token cache off. For
# each: requests/s, p50/p99 latency (wrk), and the proxy's CPU per request from
# /proc/PID/stat (for Apache, its parent and every child process).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-1}

for tool in haproxy wrk taskset python3 curl apache2; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy wrk util-linux python3 curl apache2 >/dev/null; break; }
done
[ -e /usr/lib/apache2/modules/mod_auth_openidc.so ] || { apt-get update -qq && apt-get install -y -qq libapache2-mod-auth-openidc >/dev/null; }
# EXGATE names a build to measure instead of building the working tree (which other
# work may be changing while this runs).
if [ -z "${EXGATE:-}" ]; then
    cargo build --release --quiet
    EXGATE=$PWD/target/release/exgate
fi
. benches/common.sh
TENANT=6f3b5b2a-1c4d-4e8f-9a0b-7c6d5e4f3a2b
export ISSUER="https://sts.windows.net/$TENANT/" AUDIENCE="https://outlook.office365.com"

# Keys and a pool of tokens, minted in process by exgate's lab code.
"$EXGATE" token --dir "$WORK/keys" --new-keys --public-key-pem > "$WORK/key.pem"
"$EXGATE" token --dir "$WORK/keys" --jwks > "$WORK/jwks.json"
"$EXGATE" token --dir "$WORK/keys" --count 300 > "$WORK/tokens.txt"
export KEY_PEM="$WORK/key.pem" TOKENS="$WORK/tokens.txt"
KID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["keys"][0]["kid"])' "$WORK/jwks.json")
export KID
# Forged tokens: the same header and claims, one signature character changed to another
# base64url character (not the last, whose low bits are padding), so the signature still
# decodes to 256 bytes and only the RSA verification refuses it.
python3 - "$WORK/tokens.txt" > "$WORK/badsig.txt" <<'PY'
import sys
for line in open(sys.argv[1]):
    head, payload, sig = line.strip().split(".")
    c = "B" if sig[100] != "B" else "C"
    print(".".join([head, payload, sig[:100] + c + sig[101:]]))
PY

UP_PORT=$(free_port); export UP_PORT
start() { # name core command…
    local name=$1 core=$2; shift 2
    taskset -c "$core" "$@" > "$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$name=$!"
}
FE_PORT=$UP_PORT start upstream 1 haproxy -f benches/peers/haproxy-upstream.cfg
PLAIN_PORT=$(free_port); FE_PORT=$PLAIN_PORT start plain 0 haproxy -f benches/peers/haproxy-plain.cfg
ENF_PORT=$(free_port); FE_PORT=$ENF_PORT start haproxy 0 haproxy -f benches/peers/haproxy-enforce.cfg
# Apache's ServerRoot, pid file, runtime dir and error log live in $WORK/apache; the
# parent stays in the foreground as the process started here (it reads the key and opens
# the files; as root, its child drops to www-data). Nothing under /etc/apache2 is used.
APACHE_PORT=$(free_port); APACHE_DIR="$WORK/apache"; mkdir -p "$APACHE_DIR"
APACHE_THREADS=$((CONNS > 64 ? CONNS : 64))
export APACHE_PORT APACHE_DIR APACHE_THREADS
start apache 0 apache2 -f "$PWD/benches/peers/apache.conf" -DFOREGROUND

# The directory holds the Basic workload's user, so a refusal finds the user and their
# effective policy as in production (not the organization default by a directory miss).
exgate_config() { # port cache_entries
    bench_config "$1" 0 "$UP_PORT" '[[users]]' 'upn = "user01@contoso.com"' "$(token_lines)" \
        '[tokens]' "cache_max_entries = $2"
}
printf 'New-AuthenticationPolicy BlockLegacy\nSet-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacy\n' > "$WORK/policies.ps1"
EXG_PORT=$(free_port); exgate_config "$EXG_PORT" 10000 > "$WORK/exgate.toml"
NOCACHE_PORT=$(free_port); exgate_config "$NOCACHE_PORT" 0 > "$WORK/exgate-nocache.toml"
RUST_LOG=error start exgate 0 "$EXGATE" serve --config "$WORK/exgate.toml"
RUST_LOG=error start nocache 0 "$EXGATE" serve --config "$WORK/exgate-nocache.toml"
EXGATES="exgate"
if [ -n "${BASELINE:-}" ]; then
    BASE_PORT=$(free_port); exgate_config "$BASE_PORT" 10000 > "$WORK/exgate-baseline.toml"
    RUST_LOG=error start baseline 0 "$BASELINE" serve --config "$WORK/exgate-baseline.toml"
    EXGATES="exgate baseline"
fi

port_of() { case $1 in upstream) echo "$UP_PORT";; plain) echo "$PLAIN_PORT";; haproxy) echo "$ENF_PORT";; apache) echo "$APACHE_PORT";; exgate) echo "$EXG_PORT";; nocache) echo "$NOCACHE_PORT";; baseline) echo "$BASE_PORT";; esac; }
for t in upstream plain haproxy apache $EXGATES nocache; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$(port_of $t)/owa/" && break; sleep 0.1; done
done

# The enforcers must agree before anything is measured. The forged token is checked right
# after its genuine twin was accepted (and cached, where there is a cache).
TOKEN=$(head -1 "$TOKENS") BADSIG=$(head -1 "$WORK/badsig.txt")
NO_MFA=$("$EXGATE" token --dir "$WORK/keys" --no-mfa)
check() { # target path header expected
    local got
    got=$(curl -s -o /dev/null -w '%{http_code}' -H "$3" "http://127.0.0.1:$(port_of "$1")$2")
    [ "$got" = "$4" ] || { echo "sanity: $1 $2 answered $got, expected $4" >&2; exit 1; }
}
for t in haproxy apache $EXGATES nocache; do
    check "$t" /owa/ "X-Anonymous: 1" 200
    check "$t" /mapi/emsmdb/ "Authorization: Bearer $TOKEN" 200
    check "$t" /mapi/emsmdb/ "Authorization: Bearer $BADSIG" 401
    check "$t" /EWS/Exchange.asmx "Authorization: Basic dXNlcjAxQGNvbnRvc28uY29tOlN1bW1lcjIwMjYh" 401
    check "$t" /mapi/emsmdb/ "Authorization: Bearer $NO_MFA" 401
done

# CPU ticks of a proxy: its own user+system time, that of its live children (Apache's
# event-MPM child; HAProxy and exgate have none) and its reaped children's (cutime+cstime).
ticks() {
    local pid=$1 kids
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    awk 'FNR == 1 { t += $14 + $15; if (FILENAME == ARGV[1]) t += $16 + $17 } END { print t }' \
        "/proc/$pid/stat" $(for k in $kids; do [ -r "/proc/$k/stat" ] && echo "/proc/$k/stat"; done)
}
CLK_TCK=$(getconf CLK_TCK)
RESULTS="$WORK/results.tsv"
run() { # workload target
    local workload=$1 target=$2 pid_var="PID_$2" args=()
    local pid=${!pid_var} url="http://127.0.0.1:$(port_of "$2")"
    case $workload in
        anonymous) args=("$url/owa/") ;;
        bearer) args=(-s benches/peers/bearer.lua "$url") ; export TOKENS="$WORK/tokens.txt" PATHS=/mapi/emsmdb/ BASIC_EVERY=0 ;;
        basic) args=(-H "Authorization: Basic dXNlcjAxQGNvbnRvc28uY29tOlN1bW1lcjIwMjYh" "$url/EWS/Exchange.asmx") ;;
        mix) args=(-s benches/peers/bearer.lua "$url"); export TOKENS="$WORK/tokens.txt" PATHS=/mapi/emsmdb/,/EWS/Exchange.asmx,/autodiscover/autodiscover.xml,/OAB/x/oab.xml BASIC_EVERY=5 ;;
        badsig) args=(-s benches/peers/bearer.lua "$url") ; export TOKENS="$WORK/badsig.txt" PATHS=/mapi/emsmdb/ BASIC_EVERY=0 ;;
    esac
    local before after
    before=$(ticks "$pid")
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${args[@]}" > "$WORK/wrk.out"
    after=$(ticks "$pid")
    python3 - "$workload" "$target" "$before" "$after" "$CLK_TCK" "$WORK/wrk.out" >> "$RESULTS" <<'PY'
import re, sys
workload, target, before, after, tck, path = sys.argv[1:]
out = open(path).read()
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
def ms(label):
    m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
cpu_us = (int(after) - int(before)) * 1e6 / int(tck) / max(reqs, 1)
# Every answer must be what the workload expects: 2xx for anonymous and bearer, none for
# blocked Basic and bad signatures, one in five refused in the mix.
m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
refused = int(m.group(1)) if m else 0
expected = {"anonymous": 0, "bearer": 0, "basic": reqs, "badsig": reqs, "mix": reqs / 5}[workload]
if abs(refused - expected) > max(0.01 * reqs, 2):
    print(f"warning: {workload} on {target}: {refused} of {reqs} answers were not 2xx, expected {expected:.0f}", file=sys.stderr)
m = re.search(r"Socket errors: .*", out)
if m:
    print(f"warning: {workload} on {target}: {m.group(0)}", file=sys.stderr)
print(f"{workload}\t{target}\t{rps:.0f}\t{ms('50'):.3f}\t{ms('99'):.3f}\t{cpu_us:.1f}")
PY
}

# The targets of one workload in round R, starting R places along: each takes every place
# in turn, so whatever the place in the order does to a run (what the run before left in
# the caches, the machine's load drifting over a round) is spread over all targets instead
# of landing on the same one every round.
in_turn() { # round target…
    local round=$1 i
    shift
    for i in $(seq 0 $(($# - 1))); do
        local at=$(((i + round) % $# + 1))
        echo "${!at}"
    done
}
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS: ${DURATION}s per run, $CONNS connections" >&2
    for t in $(in_turn "$round" upstream plain haproxy apache $EXGATES); do run anonymous "$t"; done
    for t in $(in_turn "$round" haproxy apache $EXGATES nocache); do run bearer "$t"; done
    for t in $(in_turn "$round" haproxy apache $EXGATES); do run basic "$t"; done
    for t in $(in_turn "$round" haproxy apache $EXGATES nocache); do run mix "$t"; done
    for t in $(in_turn "$round" haproxy apache $EXGATES nocache); do run badsig "$t"; done
done

python3 - "$RESULTS" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    w, t, rps, p50, p99, cpu = line.split("\t")
    rows.setdefault((w, t), []).append((float(rps), float(p50), float(p99), float(cpu)))
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
names = {"upstream": "upstream direct", "plain": "HAProxy pass-through", "haproxy": "HAProxy enforcing",
         "apache": "Apache + mod_auth_openidc", "exgate": "exgate", "nocache": "exgate, token cache off",
         "baseline": "exgate, baseline build"}
print("| workload | target | req/s | p50 ms | p99 ms | CPU µs/req | CPU vs HAProxy | req/s vs HAProxy | CPU vs Apache |")
print("|---|---|---|---|---|---|---|---|---|")
for w in ["anonymous", "bearer", "basic", "mix", "badsig"]:
    ref = med.get((w, "plain" if w == "anonymous" else "haproxy"))
    apache = med.get((w, "apache"))
    for t in ["upstream", "plain", "haproxy", "apache", "exgate", "baseline", "nocache"]:
        if (w, t) not in med:
            continue
        rps, p50, p99, cpu = med[(w, t)]
        cpu_ratio = f"{cpu / ref[3]:.2f}×" if ref and ref[3] > 0 and t != "upstream" else "—"
        rps_ratio = f"{rps / ref[0]:.2f}×" if ref and t != "upstream" else "—"
        apache_ratio = f"{cpu / apache[3]:.2f}×" if apache and apache[3] > 0 and t != "upstream" else "—"
        print(f"| {w} | {names[t]} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {cpu:.1f} | {cpu_ratio} | {rps_ratio} | {apache_ratio} |")
PY
