#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable on a shared,
# noisy machine where CPU seconds are not. Loopback only; each load is bounded (wrk,
# 10 s, 4 connections).
#
#   benches/instructions.sh                          # this build, and HAProxy
#   benches/instructions.sh /tmp/exgate-old          # this build, an earlier one, HAProxy
#   HAPROXY=0 benches/instructions.sh                # exgate builds only
#
# Workloads: anonymous pass-through (GET /owa/), blocked Basic (EWS, organization
# default blocks legacy), bearer+MFA on /mapi/ (a pool of 300 tokens) and bad signatures
# on /mapi/ (the same pool, one signature character changed), as in compare.sh, each
# proxy forwarding to a HAProxy that answers 200 at once; WORKLOADS picks some. HAProxy
# 2.6 runs the same workloads as in compare.sh: pass-through for anonymous, enforcing
# (benches/peers/haproxy-enforce.cfg) for all four. Proxies run on core 0, as in
# compare.sh (exgate then picks its one-core scheduler), wrk on core 1.
# Prints, per proxy and workload: requests served under callgrind and instructions (Ir)
# per request, counted only while the load runs (callgrind_control toggles), then each
# exgate build's ratio to the HAProxy that compare.sh compares it with.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind haproxy wrk python3 curl; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind haproxy wrk python3 curl >/dev/null; break; }
done
cargo build --release --quiet
. benches/common.sh

UP_PORT=$(free_port); export UP_PORT
FE_PORT=$UP_PORT haproxy -f benches/peers/haproxy-upstream.cfg > "$WORK/up.log" 2>&1 &
PIDS+=($!)
printf 'New-AuthenticationPolicy BlockLegacy\nSet-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacy\n' > "$WORK/policies.ps1"
BASIC="Authorization: Basic dXNlcjAxQGNvbnRvc28uY29tOlN1bW1lcjIwMjYh"

ROWS="$WORK/rows.tsv"
: > "$ROWS"
# One proxy under callgrind: measure LABEL PORT WORKLOADS COMMAND…
measure() {
    local label=$1 port=$2 workloads=$3 vpid cgpid requests ir args
    shift 3
    (cd "$WORK" && RUST_LOG=error exec taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/cg.%p" "$@" > "$WORK/proxy.log" 2>&1) &
    vpid=$!
    PIDS+=($vpid)
    for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/owa/" && break; sleep 0.2; done
    cgpid=$(pgrep -n -f "callgrind.*${*: -1}" || echo "$vpid")
    for workload in $workloads; do
        case $workload in
            anonymous) args=("http://127.0.0.1:$port/owa/") ;;
            basic) args=(-H "$BASIC" "http://127.0.0.1:$port/EWS/Exchange.asmx") ;;
            bearer) args=(-s benches/peers/bearer.lua "http://127.0.0.1:$port") ; export TOKENS="$WORK/tokens.txt" ;;
            badsig) args=(-s benches/peers/bearer.lua "http://127.0.0.1:$port") ; export TOKENS="$WORK/badsig.txt" ;;
        esac
        taskset -c 1 wrk -t1 -c4 -d2s "${args[@]}" > /dev/null   # warm up
        callgrind_control -z "$cgpid" > /dev/null 2>&1
        callgrind_control -i on "$cgpid" > /dev/null 2>&1
        requests=$(taskset -c 1 wrk -t1 -c4 -d10s "${args[@]}" | grep -oE '[0-9]+ requests in' | grep -oE '^[0-9]+')
        callgrind_control -i off "$cgpid" > /dev/null 2>&1
        rm -f "$WORK"/cg.*.*
        callgrind_control -d "$workload" "$cgpid" > /dev/null 2>&1
        sleep 1
        ir=$(grep -hE '^totals:' "$WORK"/cg.*.* | awk '{print $2}')
        echo "| $label | $workload | $requests | $((ir / requests)) |"
        printf '%s\t%s\t%s\n' "$label" "$workload" "$((ir / requests))" >> "$ROWS"
    done
    kill "$cgpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    rm -f "$WORK"/cg.*
}

# Keys, the JWKS beside exgate's config, a pool of tokens and their forgeries (as in
# compare.sh); haproxy-enforce.cfg verifies tokens with the key it loads at start.
TENANT=6f3b5b2a-1c4d-4e8f-9a0b-7c6d5e4f3a2b
export ISSUER="https://sts.windows.net/$TENANT/" AUDIENCE="https://outlook.office365.com"
"$PWD/target/release/exgate" token --dir "$WORK/keys" --new-keys --public-key-pem > "$WORK/key.pem"
"$PWD/target/release/exgate" token --dir "$WORK/keys" --jwks > "$WORK/jwks.json"
"$PWD/target/release/exgate" token --dir "$WORK/keys" --count 300 > "$WORK/tokens.txt"
python3 - "$WORK/tokens.txt" > "$WORK/badsig.txt" <<'PY'
import sys
for line in open(sys.argv[1]):
    head, payload, sig = line.strip().split(".")
    c = "B" if sig[100] != "B" else "C"
    print(".".join([head, payload, sig[:100] + c + sig[101:]]))
PY
export KEY_PEM="$WORK/key.pem" PATHS=/mapi/emsmdb/ BASIC_EVERY=0
WORKLOADS=${WORKLOADS:-anonymous basic bearer badsig}

echo "| proxy | workload | requests | instructions per request |"
echo "|---|---|---|---|"
for bin in "$PWD/target/release/exgate" "$@"; do
    port=$(free_port)
    bench_config "$port" 0 "$UP_PORT" '[[users]]' 'upn = "user01@contoso.com"' "$(token_lines)" \
        > "$WORK/exgate.toml"
    measure "$bin" "$port" "$WORKLOADS" "$bin" serve --config exgate.toml
done
if [ "${HAPROXY:-1}" != 0 ]; then
    port=$(free_port)
    FE_PORT=$port measure "HAProxy pass-through" "$port" anonymous haproxy -f "$PWD/benches/peers/haproxy-plain.cfg"
    port=$(free_port)
    FE_PORT=$port measure "HAProxy enforcing" "$port" "$WORKLOADS" haproxy -f "$PWD/benches/peers/haproxy-enforce.cfg"
    echo
    echo "| exgate build | anonymous vs HAProxy pass-through | blocked Basic vs HAProxy enforcing | bearer vs HAProxy enforcing | bad signatures vs HAProxy enforcing |"
    echo "|---|---|---|---|---|"
    awk -F'\t' '{ ir[$1 FS $2] = $3; if ($1 ~ /exgate/) builds[$1] = 1 }
        function ratio(a, b) { return (a && b) ? sprintf("%.2f×", a / b) : "—" }
        END { for (b in builds) printf "| %s | %s | %s | %s | %s |\n", b,
              ratio(ir[b FS "anonymous"], ir["HAProxy pass-through" FS "anonymous"]),
              ratio(ir[b FS "basic"], ir["HAProxy enforcing" FS "basic"]),
              ratio(ir[b FS "bearer"], ir["HAProxy enforcing" FS "bearer"]),
              ratio(ir[b FS "badsig"], ir["HAProxy enforcing" FS "badsig"]) }' "$ROWS"
fi
