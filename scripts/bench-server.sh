#!/usr/bin/env bash
# pickleshelf serve against redis-server, side by side, with redis-benchmark:
#
#   scripts/bench-server.sh [RUNS]        default 3
#
# Each run does `redis-benchmark -t set,get -n 200000 -r 100000 -c 50 -q`, unpipelined and
# with -P 16, against both servers (their order alternating between runs):
#   - pickleshelf-server (the `pickleshelf serve` command) on a fresh store, --appendfsync everysec;
#   - redis-server --save '' --appendonly yes --appendfsync everysec.
# Both listen on loopback ports picked at run time; stores and logs live in a temporary
# directory removed at the end. Prints every run's requests per second, the ratio
# pickleshelf / redis-server per run, and the range over runs; also each server's CPU time
# per request (user + system, from /proc), which depends less on what else the machine runs.
# Goal: >= 1x redis-server unpipelined, >= 0.5x at -P 16.
# On a 2-core machine the server and redis-benchmark share the cores: figures measure the
# pair, and vary with whatever else runs.
# Linux only (/proc). Needs redis-server and redis-benchmark (scripts/setup-test-deps.sh installs them).
set -euo pipefail
runs="${1:-3}"
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh
cargo build --release -q -p pickleshelf-server
bin=target/release/pickleshelf-server

tmp=$(mktemp -d)
ps_pid=""
redis_pid=""
cleanup() {
    [ -n "$ps_pid" ] && kill "$ps_pid" 2>/dev/null || true
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ps_port=$(free_port)
"$bin" "$tmp/store" --bind "127.0.0.1:$ps_port" --appendfsync everysec --quiet 2>"$tmp/ps.log" &
ps_pid=$!
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no &
redis_pid=$!
for port in "$ps_port" "$redis_port"; do
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
done

# CPU time a process has used, in clock ticks (user + system).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# bench PORT PID [ARGS...]: "SET-rps GET-rps server-CPU-microseconds-per-request".
bench() {
    local port=$1 pid=$2; shift 2
    local before after
    before=$(ticks "$pid")
    redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n 200000 -r 100000 -c 50 -q "$@" 2>&1 |
        tr '\r' '\n' | awk '/requests per second/ { sub(":", "", $1); rps[$1] = $2 } END { printf "%s %s ", rps["SET"], rps["GET"] }'
    after=$(ticks "$pid")
    echo "$after $before $hz" | awk '{ printf "%.1f\n", ($1 - $2) / $3 * 1e6 / 400000 }'
}

results="$tmp/results"
: >"$results"
for run in $(seq "$runs"); do
    for mode in "1" "16"; do
        if [ $((run % 2)) -eq 1 ]; then order="ps redis"; else order="redis ps"; fi
        for who in $order; do
            port=$ps_port; pid=$ps_pid
            [ "$who" = redis ] && { port=$redis_port; pid=$redis_pid; }
            read -r set get cpu < <(bench "$port" "$pid" -P "$mode")
            echo "$run $mode $who $set $get $cpu" >>"$results"
            printf 'run %d  -P %-2s  %-12s SET %10.0f  GET %10.0f  server CPU %5.1f us/request\n' "$run" "$mode" \
                "$([ "$who" = ps ] && echo pickleshelf || echo redis-server)" "$set" "$get" "$cpu"
        done
    done
done

echo
echo "ratios pickleshelf / redis-server (per run; range over $runs runs):"
awk '
{ rps[$1 " " $2 " " $3 " SET"] = $4; rps[$1 " " $2 " " $3 " GET"] = $5; runs[$1] = 1; modes[$2] = 1 }
END {
    split("SET GET", tests, " ")
    for (m = 1; m <= 16; m += 15) {
        for (t = 1; t <= 2; t++) {
            lo = 1e18; hi = 0; list = ""
            for (r in runs) {
                a = rps[r " " m " ps " tests[t]]; b = rps[r " " m " redis " tests[t]]
                if (b > 0) { x = a / b; list = list sprintf(" %.2f", x); if (x < lo) lo = x; if (x > hi) hi = x }
            }
            goal = (m == 1) ? 1.0 : 0.5
            printf "  -P %-2d %s: %.2f-%.2fx (runs:%s)  goal >= %.1fx: %s\n", m, tests[t], lo, hi, list, goal, (lo >= goal ? "met" : (hi >= goal ? "met in some runs" : "missed"))
        }
    }
}' "$results"
echo "server CPU per request, microseconds (per run):"
for mode in 1 16; do
    for who in ps redis; do
        printf '  -P %-2s %-12s %s\n' "$mode" "$([ "$who" = ps ] && echo pickleshelf || echo redis-server)" \
            "$(awk -v m="$mode" -v w="$who" '$2 == m && $3 == w { printf "%s ", $6 }' "$results")"
    done
done
redis-cli -p "$ps_port" shutdown >/dev/null 2>&1 || true
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
