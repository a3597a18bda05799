# Sourced by the load scripts in benches/: a scratch folder removed at exit (kept with
# KEEP=1), the processes to stop at exit (append pids to PIDS), and free loopback ports.
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The anonymous pass-through exgate of connections.sh and idle_connections.sh, on stdout:
# pass_through_config LISTEN_PORT ADMIN_PORT UPSTREAM_PORT (MAXCONN, when set, becomes
# server.max_connections); its policy script is policies.ps1 beside it.
pass_through_config() {
    cat <<EOF
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"
header_read_timeout_seconds = 600
${MAXCONN:+max_connections = $MAXCONN}
[upstream]
servers = ["http://127.0.0.1:$3"]
[exchange]
deployment = "online"
[policy]
script = "policies.ps1"
EOF
}
