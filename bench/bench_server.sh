#!/usr/bin/env bash
# make bench-server: labhttp against a Go net/http server of the same behaviour, under wrk.
#
# Builds bench/goserver into a temp dir, then one server at a time (so they never compete for
# CPU): the Go server, labhttp in one process, and labhttp --workers N (N = nproc by default).
# Each gets a warm-up, then the same load on GET / over loopback (127.0.0.1 only), and the
# script prints a markdown table of req/s and p99 latency with ratios to Go, plus the machine
# and date. Raw wrk output and the table also go to bench/out/ (git-ignored).
#
# A benchmark, not a test: nothing is asserted. wrk runs on the same machine as the server,
# so on a small machine they share the cores; say so when quoting the figures.
#
# Tunables (env): WRK_THREADS=2 WRK_CONNECTIONS=64 WRK_DURATION=10s WARMUP=2s WORKERS=$(nproc)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
WARMUP=${WARMUP:-2s}
WORKERS=${WORKERS:-$(nproc)}
OUT=$ROOT/bench/out

die() { echo "bench-server: $*" >&2; exit 1; }

command -v wrk >/dev/null || die "wrk is not installed; install it (Debian/Ubuntu: sudo apt-get install -y wrk) and rerun"
command -v go >/dev/null || die "go is not installed; it is needed to build bench/goserver"
[[ -x $PY ]] || die "$PY not found; run 'make venv' first"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d)
SERVER_PID=""  # one server at a time; the one running now, if any
cleanup() {
	if [[ -n $SERVER_PID ]]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# Wait (up to 30 s) for a line matching a regex in a log file; print its first match.
wait_for_line() {
	local file=$1 regex=$2 line
	for _ in $(seq 300); do
		if line=$(grep -m1 -oE "$regex" "$file" 2>/dev/null); then
			echo "$line"
			return 0
		fi
		sleep 0.1
	done
	echo "--- $file:" >&2
	cat "$file" >&2
	die "no line matching '$regex' in $file after 30 s"
}

# Start a server in the background; $1 names it (and its log), the rest is the command.
start_server() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	SERVER_PID=$!
}

stop_server() {
	local pid=$SERVER_PID status=0
	SERVER_PID=""
	kill -TERM "$pid"
	wait "$pid" || status=$?
	[[ $status -eq 0 ]] || die "server $pid exited with status $status on SIGTERM"
}

start_go() {
	start_server go "$TMP/goserver" -listen 127.0.0.1:0
	ADDRESS=$(wait_for_line "$TMP/go.log" 'listening on [0-9.]+:[0-9]+' | sed 's/listening on //')
}

# labhttp on port 0; the bound address comes from its "serving" log line.
start_labhttp() {
	local name=$1
	shift
	start_server "$name" env PYTHONPATH="$ROOT/servers" "$PY" -m labhttp \
		--listen api=127.0.0.1:0 --listen metrics=127.0.0.1:0 "$@"
	ADDRESS=$(wait_for_line "$TMP/$name.log" 'event=serving .*listeners="api=[0-9.]+:[0-9]+' |
		grep -oE 'api=[0-9.]+:[0-9]+' | cut -d= -f2)
}

# Convert wrk's latency (e.g. 850.00us, 3.21ms, 1.02s) to milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
		printf "%.2f", n
	}'
}

# Run the measured load against $ADDRESS; sets RPS and P99_MS, keeps wrk's output.
measure() {
	local name=$1 report="$OUT/wrk-$1.txt"
	wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WARMUP" "http://$ADDRESS/" >/dev/null
	wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WRK_DURATION" --latency "http://$ADDRESS/" >"$report"
	RPS=$(awk '/^Requests\/sec:/ {print $2}' "$report")
	P99_MS=$(to_ms "$(awk '$1 == "99%" {print $2}' "$report")")
	if grep -qE 'Non-2xx|Socket errors' "$report"; then
		echo "bench-server: $name: $(grep -E 'Non-2xx|Socket errors' "$report" | tr -s ' ')" >&2
	fi
}

mkdir -p "$OUT"
echo "bench-server: building bench/goserver" >&2
(cd "$ROOT/bench/goserver" && go build -trimpath -o "$TMP/goserver" .)

declare -A RPS_OF P99_OF
ROWS=("Go net/http, 1 process (GOMAXPROCS=$(nproc))" "labhttp, 1 process" "labhttp --workers $WORKERS")

run() {
	local row=$1 name=$2
	shift 2
	echo "bench-server: $row" >&2
	"$@"
	measure "$name"
	stop_server
	RPS_OF[$row]=$RPS
	P99_OF[$row]=$P99_MS
}
run "${ROWS[0]}" go start_go
run "${ROWS[1]}" labhttp start_labhttp labhttp
run "${ROWS[2]}" labhttp-workers start_labhttp labhttp-workers --workers "$WORKERS"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }

CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
GO_RPS=${RPS_OF[${ROWS[0]}]}
GO_P99=${P99_OF[${ROWS[0]}]}
{
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) × ${CPU:-unknown CPU}, Linux $(uname -r)," \
		"load average before the run: $LOAD_BEFORE."
	echo "$("$PY" -c 'import sys, aiohttp; print(f"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}")'), $(go version | awk '{print $3}')."
	echo "Load: \`wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency\` on GET / over 127.0.0.1," \
		"after a $WARMUP warm-up; wrk shares the machine with the server."
	echo
	echo "| Server | Requests/s | p99 latency | req/s vs Go | p99 vs Go |"
	echo "|---|---:|---:|---:|---:|"
	for row in "${ROWS[@]}"; do
		printf '| %s | %.0f | %s ms | %s | %s |\n' "$row" "${RPS_OF[$row]}" "${P99_OF[$row]}" \
			"$(ratio "${RPS_OF[$row]}" "$GO_RPS")" "$(ratio "${P99_OF[$row]}" "$GO_P99")"
	done
} | tee "$OUT/bench_server.md"
