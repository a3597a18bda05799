#!/usr/bin/env bash
# The cost of [cluster] (issue 15): exgate standalone and exgate sharing lockout, spray
# and policy state through a real redis-server, side by side, on loopback only. Same
# configuration and policy for both; the only difference is the [cluster] section.
#
#   benches/fleet.sh                        # DURATION=5 CONNS=32 ROUNDS=1
#   DURATION=5 ROUNDS=2 flock /tmp/exgate-build.lock benches/fleet.sh
#   CONNS=1 benches/fleet.sh               # one connection: the round trip's latency unloaded
#   REDIS_CORE=0 benches/fleet.sh          # Redis beside exgate instead of beside wrk
#
# On a shared machine run it under the build lock, as above: it builds exgate only when
# target/release/exgate is older than the sources (cargo build --release), and holding
# the lock keeps other builds from running during the measurement. EXGATE=/path/to/exgate
# measures that binary instead and builds nothing.
#
# Workloads, each against both instances in turn (the order alternates by round):
#   basic-blocked  Basic for user01 on /EWS, refused by policy: the check round trip
#                  (spray bookkeeping) and no forward
#   mix            80/20 bearer+MFA / blocked Basic across /mapi /ews /autodiscover /oab
#                  (as compare.sh)
#   bearer         bearer+MFA on /mapi (300 distinct RS256 tokens): no Redis call
#   anonymous      GET /owa/ without credentials, forwarded: no Redis call
#   basic-allowed  Basic for user02 on /EWS, which user02's policy allows; the upstream
#                  answers 200 (the right password): the check round trip, then the
#                  forward; the success update is sent only the first time (it then
#                  changes nothing: the address is familiar and no count is left)
# Placement: both exgates on core 0; wrk, the fast upstream (a HAProxy `return 200`) and
# redis-server on core 1 (REDIS_CORE), so Redis competes with wrk and the upstream, not
# with exgate, and its CPU is reported on its own. For each run: requests/s and p50/p99 (wrk),
# exgate's CPU per request and, for the cluster run, redis-server's (both from
# /proc/PID/stat), the Lua scripts Redis ran per request (INFO commandstats: the round
# trips, counted rather than assumed) and the cluster errors exgate counted (a timeout
# means local state decided: none expected).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-1}
REDIS_CORE=${REDIS_CORE:-1}

for tool in haproxy wrk taskset python3 curl redis-server redis-cli; do
    command -v "$tool" >/dev/null || {
        apt-get update -qq && apt-get install -y -qq haproxy wrk util-linux python3 curl redis-server >/dev/null
        break
    }
done
if [ -z "${EXGATE:-}" ]; then
    EXGATE=$PWD/target/release/exgate
    if [ ! -x "$EXGATE" ] || [ -n "$(find src Cargo.toml Cargo.lock -type f -newer "$EXGATE" | head -1)" ]; then
        cargo build --release --quiet
    fi
fi
# shellcheck source=benches/common.sh
. benches/common.sh
TENANT=6f3b5b2a-1c4d-4e8f-9a0b-7c6d5e4f3a2b
export ISSUER="https://sts.windows.net/$TENANT/" AUDIENCE="https://outlook.office365.com"

# Keys and a pool of tokens, minted in process by exgate's lab code.
"$EXGATE" token --dir "$WORK/keys" --new-keys --jwks > "$WORK/jwks.json"
"$EXGATE" token --dir "$WORK/keys" --count 300 > "$WORK/tokens.txt"
export TOKENS="$WORK/tokens.txt"

declare -A PID
start() { # name core command…
    local name=$1 core=$2
    shift 2
    taskset -c "$core" "$@" > "$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    PID[$name]=$!
}
wait_for() { # what command…: retried for up to 10 s
    local what=$1
    shift
    for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "fleet.sh: $what did not come up; its log:" >&2
    return 1
}

UP_PORT=$(free_port); export UP_PORT
FE_PORT=$UP_PORT start upstream 1 haproxy -f benches/peers/haproxy-upstream.cfg
REDIS_PORT=$(free_port)
start redis "$REDIS_CORE" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK"
wait_for redis-server redis-cli -p "$REDIS_PORT" ping || { cat "$WORK/redis.log" >&2; exit 1; }

cat > "$WORK/policies.ps1" <<'EOF'
New-AuthenticationPolicy BlockLegacy
Set-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacy
New-AuthenticationPolicy AllowEws -AllowBasicAuthWebServices
Set-User user02 -AuthenticationPolicy AllowEws
EOF
exgate_config() { # port admin_port [cluster section…]
    local port=$1 admin=$2
    shift 2
    bench_config "$port" "$admin" "$UP_PORT" '[[users]]' 'upn = "user01@contoso.com"' \
        '[[users]]' 'upn = "user02@contoso.com"' "$(token_lines)" "$@"
}
SOLO_PORT=$(free_port); SOLO_ADMIN=$(free_port)
FLEET_PORT=$(free_port); FLEET_ADMIN=$(free_port)
exgate_config "$SOLO_PORT" "$SOLO_ADMIN" > "$WORK/solo.toml"
exgate_config "$FLEET_PORT" "$FLEET_ADMIN" "[cluster]" "redis_url = \"redis://127.0.0.1:$REDIS_PORT/0\"" > "$WORK/fleet.toml"
RUST_LOG=error start solo 0 "$EXGATE" serve --config "$WORK/solo.toml"
RUST_LOG=error start fleet 0 "$EXGATE" serve --config "$WORK/fleet.toml"
for t in solo fleet; do
    admin_var=${t^^}_ADMIN
    wait_for "exgate ($t)" curl -sf "http://127.0.0.1:${!admin_var}/readyz" || { cat "$WORK/$t.log" >&2; exit 1; }
done
port_of() { case $1 in solo) echo "$SOLO_PORT" ;; fleet) echo "$FLEET_PORT" ;; esac; }
admin_of() { case $1 in solo) echo "$SOLO_ADMIN" ;; fleet) echo "$FLEET_ADMIN" ;; esac; }

BLOCKED="Authorization: Basic $(printf 'user01@contoso.com:Summer2026!' | base64)"
ALLOWED="Authorization: Basic $(printf 'user02@contoso.com:Pilot-Passw0rd-02' | base64)"
TOKEN=$(head -1 "$TOKENS")
NO_MFA=$("$EXGATE" token --dir "$WORK/keys" --no-mfa)
# Both instances must answer alike before anything is measured.
check() { # target path header expected
    local got
    got=$(curl -s -o /dev/null -w '%{http_code}' -H "$3" "http://127.0.0.1:$(port_of "$1")$2")
    [ "$got" = "$4" ] || { echo "sanity: $1 $2 answered $got, expected $4" >&2; exit 1; }
}
for t in solo fleet; do
    check "$t" /owa/ "X-Nothing: 1" 200
    check "$t" /mapi/emsmdb/ "Authorization: Bearer $TOKEN" 200
    check "$t" /mapi/emsmdb/ "Authorization: Bearer $NO_MFA" 401
    check "$t" /EWS/Exchange.asmx "$BLOCKED" 401
    check "$t" /EWS/Exchange.asmx "$ALLOWED" 200
done
# …and the cluster instance must really be using Redis: the check left spray state there.
[ "$(redis-cli -p "$REDIS_PORT" --scan --pattern 'exgate:spray:*' | wc -l)" -ge 1 ] ||
    { echo "sanity: no exgate:spray:* key in Redis after legacy requests" >&2; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Script invocations (EVAL, EVALSHA) Redis served: each is one round trip of the request
# path (every request-path operation is a script; the policy task's LLEN is not counted).
scripts() { redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:=,]' '$1 ~ /^cmdstat_eval(sha)?$/ {n += $3} END {print n + 0}'; }
cluster_errors() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^exgate_cluster_errors_total/ {n += $2} END {print n + 0}'; }
CLK_TCK=$(getconf CLK_TCK)
RESULTS="$WORK/results.tsv"
run() { # workload target
    local workload=$1 target=$2 pid=${PID[$2]} args=() url
    url="http://127.0.0.1:$(port_of "$2")"
    case $workload in
        anonymous) args=("$url/owa/") ;;
        bearer) args=(-s benches/peers/bearer.lua "$url"); export PATHS=/mapi/emsmdb/ BASIC_EVERY=0 ;;
        basic-blocked) args=(-H "$BLOCKED" "$url/EWS/Exchange.asmx") ;;
        basic-allowed) args=(-H "$ALLOWED" "$url/EWS/Exchange.asmx") ;;
        mix) args=(-s benches/peers/bearer.lua "$url"); export PATHS=/mapi/emsmdb/,/EWS/Exchange.asmx,/autodiscover/autodiscover.xml,/OAB/x/oab.xml BASIC_EVERY=5 ;;
    esac
    local before after r_before r_after c_before c_after e_before e_after
    e_before=$(cluster_errors "$(admin_of "$target")")
    c_before=$(scripts)
    before=$(ticks "$pid")
    r_before=$(ticks "${PID[redis]}")
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency "${args[@]}" > "$WORK/wrk.out"
    r_after=$(ticks "${PID[redis]}")
    after=$(ticks "$pid")
    c_after=$(scripts)
    e_after=$(cluster_errors "$(admin_of "$target")")
    python3 - "$workload" "$target" "$before" "$after" "$r_before" "$r_after" "$c_before" "$c_after" \
        "$((e_after - e_before))" "$CLK_TCK" "$WORK/wrk.out" >> "$RESULTS" <<'PY'
import re, sys
workload, target, before, after, r_before, r_after, c_before, c_after, errors, tck, path = sys.argv[1:]
out = open(path).read()
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
socket_errors = re.search(r"Socket errors: (.*)", out)
if socket_errors:
    print(f"{workload} {target}: wrk socket errors: {socket_errors.group(1)}", file=sys.stderr)
def ms(label):
    m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
per_req = lambda a, b: (int(b) - int(a)) * 1e6 / int(tck) / max(reqs, 1)
calls = (int(c_after) - int(c_before)) / max(reqs, 1)
print(f"{workload}\t{target}\t{rps:.0f}\t{ms('50'):.3f}\t{ms('99'):.3f}\t{per_req(before, after):.2f}"
      f"\t{per_req(r_before, r_after):.2f}\t{calls:.3f}\t{errors}\t{bad.group(1) if bad else 0}\t{reqs}")
PY
}

WORKLOADS="basic-blocked mix bearer anonymous basic-allowed"
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS: ${DURATION}s per run, $CONNS connections, Redis on core $REDIS_CORE" >&2
    if [ $((round % 2)) -eq 1 ]; then order="solo fleet"; else order="fleet solo"; fi
    for w in $WORKLOADS; do
        for t in $order; do run "$w" "$t"; done
    done
done
[ -z "${KEEP:-}" ] || echo "raw results: $RESULTS" >&2

python3 - "$RESULTS" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    w, t, *values = line.rstrip("\n").split("\t")
    rows.setdefault((w, t), []).append([float(v) for v in values])
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
total = {k: [sum(c) for c in zip(*v)] for k, v in rows.items()}
names = {"solo": "exgate", "fleet": "exgate + `[cluster]`"}
print("| workload | instance | req/s | p50 ms | p99 ms | exgate CPU µs/req | Redis CPU µs/req | Redis scripts/req | CPU ×, exgate (exgate + Redis) | p99 × (+ms) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for w in ["basic-blocked", "mix", "bearer", "anonymous", "basic-allowed"]:
    ref = med.get((w, "solo"))
    for t in ["solo", "fleet"]:
        if (w, t) not in med:
            continue
        rps, p50, p99, cpu, rcpu, calls, _, _, _ = med[(w, t)]
        if t == "fleet" and ref:
            cpu_x = f"{cpu / ref[3]:.2f}× ({(cpu + rcpu) / ref[3]:.2f}×)" if ref[3] > 0 else "—"
            p99_x = f"{p99 / ref[2]:.2f}× ({p99 - ref[2]:+.3f})" if ref[2] > 0 else "—"
            redis = f"{rcpu:.1f}"
            calls_text = f"{calls:.3f}"
        else:
            cpu_x = p99_x = redis = calls_text = "—"
        print(f"| {w} | {names[t]} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {cpu:.1f} | {redis} | {calls_text} | {cpu_x} | {p99_x} |")
errors = sum(total[k][6] for k in total if k[1] == "fleet")
non2xx = {k: int(total[k][7]) for k in total}
print(f"\nexgate_cluster_errors_total during the cluster runs: {errors:.0f}")
print("non-2xx answers (blocked Basic and the mix's Basic fifth are 401 by design): "
      + ", ".join(f"{w}/{t} {n:,} of {int(total[(w, t)][8]):,}" for (w, t), n in sorted(non2xx.items())))
PY
