# Sourced by the load scripts in benches/: a scratch folder removed at exit (kept with
# KEEP=1), the processes to stop at exit (append pids to PIDS), and free loopback ports.
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The exgate the load scripts run, on stdout: bench_config LISTEN_PORT ADMIN_PORT
# UPSTREAM_PORT [TOML line…]. Both listeners on loopback, one upstream server, an Online
# deployment whose policy script is policies.ps1 beside the file; each further argument
# is a line appended after [policy] (users, issuers, [cluster]). SERVER_LINES, when set,
# goes into [server].
bench_config() {
    cat <<EOF
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"
${SERVER_LINES:-}
[upstream]
servers = ["http://127.0.0.1:$3"]
[exchange]
deployment = "online"
[policy]
script = "policies.ps1"
EOF
    shift 3
    [ $# -eq 0 ] || printf '%s\n' "$@"
}
# The lab's Entra issuer (jwks.json beside the file, audience $AUDIENCE) and MFA on the
# four protocols compare.sh and fleet.sh send tokens to: one bench_config argument.
token_lines() {
    cat <<EOF
[[tokens.issuers]]
issuer = "https://sts.windows.net/{tenantid}/"
audiences = ["$AUDIENCE"]
jwks_file = "jwks.json"
[tokens.mfa]
require_for = ["Autodiscover", "Mapi", "OfflineAddressBook", "WebServices"]
EOF
}
# The anonymous pass-through of connections.sh and idle_connections.sh: no issuer, a long
# header timeout for idle clients, MAXCONN (when set) as server.max_connections.
pass_through_config() { # listen_port admin_port upstream_port
    SERVER_LINES="header_read_timeout_seconds = 600${MAXCONN:+
max_connections = $MAXCONN}" bench_config "$1" "$2" "$3"
}
