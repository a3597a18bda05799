#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable on a shared,
# noisy machine where CPU seconds are not. Loopback only; each load is bounded (wrk,
# 10 s, 4 connections).
#
#   benches/instructions.sh                          # this build
#   benches/instructions.sh /tmp/exgate-old          # this build and an earlier one
#
# Workloads: anonymous pass-through (GET /owa/) and blocked Basic (EWS, organization
# default blocks legacy), exgate forwarding to a HAProxy that answers 200 at once.
# Prints, per build and workload: requests served under callgrind and instructions
# (Ir) per request, counted only while the load runs (callgrind_control toggles).
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

echo "| build | workload | requests | instructions per request |"
echo "|---|---|---|---|"
for bin in "$PWD/target/release/exgate" "$@"; do
    port=$(free_port)
    bench_config "$port" 0 "$UP_PORT" > "$WORK/exgate.toml"
    (cd "$WORK" && RUST_LOG=error exec valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/cg.%p" "$bin" serve --config exgate.toml > "$WORK/exgate.log" 2>&1) &
    vpid=$!
    PIDS+=($vpid)
    for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/owa/" && break; sleep 0.2; done
    cgpid=$(pgrep -n -f "callgrind.*$bin serve" || echo "$vpid")
    for workload in anonymous basic; do
        case $workload in
            anonymous) args=("http://127.0.0.1:$port/owa/") ;;
            basic) args=(-H "$BASIC" "http://127.0.0.1:$port/EWS/Exchange.asmx") ;;
        esac
        wrk -t1 -c4 -d2s "${args[@]}" > /dev/null   # warm up
        callgrind_control -z "$cgpid" > /dev/null 2>&1
        callgrind_control -i on "$cgpid" > /dev/null 2>&1
        requests=$(wrk -t1 -c4 -d10s "${args[@]}" | grep -oE '[0-9]+ requests in' | grep -oE '^[0-9]+')
        callgrind_control -i off "$cgpid" > /dev/null 2>&1
        rm -f "$WORK"/cg.*.*
        callgrind_control -d "$workload" "$cgpid" > /dev/null 2>&1
        sleep 1
        ir=$(grep -hE '^totals:' "$WORK"/cg.*.* | awk '{print $2}')
        echo "| $bin | $workload | $requests | $((ir / requests)) |"
    done
    kill "$cgpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
done
