#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable on a shared,
# noisy machine where CPU seconds are not. Loopback only; each load is bounded (wrk,
# 10 s, 4 connections).
#
#   benches/instructions.sh                          # this build, and HAProxy
#   benches/instructions.sh /tmp/exgate-old          # this build, an earlier one, HAProxy
#   HAPROXY=0 benches/instructions.sh                # exgate builds only
#
# Workloads: anonymous pass-through (GET /owa/) and blocked Basic (EWS, organization
# default blocks legacy), each proxy forwarding to a HAProxy that answers 200 at once.
# HAProxy 2.6 runs the same workloads as in compare.sh: pass-through for anonymous,
# enforcing (benches/peers/haproxy-enforce.cfg) for both. Proxies run on core 0, as in
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

echo "| proxy | workload | requests | instructions per request |"
echo "|---|---|---|---|"
for bin in "$PWD/target/release/exgate" "$@"; do
    port=$(free_port)
    bench_config "$port" 0 "$UP_PORT" > "$WORK/exgate.toml"
    measure "$bin" "$port" "anonymous basic" "$bin" serve --config exgate.toml
done
if [ "${HAPROXY:-1}" != 0 ]; then
    # haproxy-enforce.cfg verifies tokens with a key it loads at start.
    "$PWD/target/release/exgate" token --dir "$WORK/keys" --new-keys --public-key-pem > "$WORK/key.pem"
    export KEY_PEM="$WORK/key.pem" ISSUER="https://sts.windows.net/x/" AUDIENCE="https://outlook.office365.com"
    port=$(free_port)
    FE_PORT=$port measure "HAProxy pass-through" "$port" anonymous haproxy -f "$PWD/benches/peers/haproxy-plain.cfg"
    port=$(free_port)
    FE_PORT=$port measure "HAProxy enforcing" "$port" "anonymous basic" haproxy -f "$PWD/benches/peers/haproxy-enforce.cfg"
    echo
    echo "| exgate build | anonymous vs HAProxy pass-through | blocked Basic vs HAProxy enforcing |"
    echo "|---|---|---|"
    awk -F'\t' '{ ir[$1 FS $2] = $3; if ($1 ~ /exgate/) builds[$1] = 1 }
        END { for (b in builds) printf "| %s | %.2f× | %.2f× |\n", b,
              ir[b FS "anonymous"] / ir["HAProxy pass-through" FS "anonymous"],
              ir[b FS "basic"] / ir["HAProxy enforcing" FS "basic"] }' "$ROWS"
fi
