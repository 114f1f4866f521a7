#!/usr/bin/env bash
# bench/get_hits.sh: GET hits on a warmed keyspace, luacached side by side
# with the redis-server it stores into, in one run (SPEC: "serve hits as
# fast as Redis serves a GET"). Prints medians over RUNS rounds and ratios.
#
#   bench/get_hits.sh [RUNS=5] [REQUESTS=200000]
#
# Needs build/luacached (./dev start or ./dev test builds it), redis-server
# and redis-benchmark. Uses free ports; everything it starts stops on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
N=${2:-200000}
KEYS=1000
VALUE_SIZE=100
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RPORT=$(free_port)
LPORT=$(free_port)
BIN=${LUACACHED_BIN:-build/luacached}
TMP=$(mktemp -d)
pids=()
cleanup() {
    local rc=$?
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ $rc -ne 0 ]; then for f in "$TMP"/*.log; do echo "== $f" >&2; tail -n 20 "$f" >&2; done; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
pids+=($!)
mkdir -p "$TMP/policies"
cat >"$TMP/policies/bench.lua" <<'LUA'
return { ttl = 3600, fetch = function(id) return string.rep("x", 100) end }
LUA
cat >"$TMP/policies/benchl1.lua" <<'LUA'
return { ttl = 3600, l1_ttl = 3600, fetch = function(id) return string.rep("x", 100) end }
LUA
until redis-cli -p $RPORT ping >/dev/null 2>&1; do sleep 0.05; done
"$BIN" --port $LPORT --redis redis://127.0.0.1:$RPORT/0 --policies "$TMP/policies" \
    --metrics-port 0 --log-level warn >"$TMP/luacached.log" 2>&1 &
pids+=($!)
until redis-cli -p $LPORT ping >/dev/null 2>&1; do sleep 0.05; done

# redis-benchmark's -r N turns __rand_int__ into a 12-digit number below N:
# warm exactly those keys, in luacached (through SET) and in plain Redis.
value=$(head -c $VALUE_SIZE /dev/zero | tr '\0' x)
for i in $(seq 0 $((KEYS - 1))); do
    k=$(printf 'bench:%012d' "$i")
    echo "SET $k $value"
    echo "SET bench$k $value" | sed 's/^SET benchbench:/SET benchl1:/'
done >"$TMP/warm.txt"
redis-cli -p $LPORT <"$TMP/warm.txt" >/dev/null
redis-cli -p $RPORT <"$TMP/warm.txt" >/dev/null
# The tier fills on the first GET of each key after SET.
sed 's/^SET \(benchl1:[0-9]*\) .*/GET \1/;/^SET /d' "$TMP/warm.txt" | redis-cli -p $LPORT >/dev/null

run() { # port clients pipeline [namespace] -> "rps p50 p99"
    redis-benchmark -p "$1" -c "$2" -P "$3" -n "$N" -r $KEYS --csv GET "${4:-bench}:__rand_int__" 2>/dev/null |
        awk -F, 'NR==2 { gsub(/"/, ""); print $2, $5, $7 }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $N GETs per round, $KEYS keys of $VALUE_SIZE bytes, median of $RUNS rounds"
printf '%-12s %11s %11s %11s %9s %9s %9s %9s %9s %9s %7s %7s\n' scenario redis_rps lc_rps lc_l1_rps \
    redis_p50 lc_p50 l1_p50 redis_p99 lc_p99 l1_p99 lc/r l1/r
for scenario in "50 1" "50 16" "1 1"; do
    set -- $scenario
    : >"$TMP/r" && : >"$TMP/l" && : >"$TMP/m"
    for _ in $(seq "$RUNS"); do
        run $RPORT "$1" "$2" >>"$TMP/r"
        run $LPORT "$1" "$2" >>"$TMP/l"
        run $LPORT "$1" "$2" benchl1 >>"$TMP/m"
    done
    col() { cut -d' ' -f"$2" "$TMP/$1" | median; }
    rr=$(col r 1); lr=$(col l 1); mr=$(col m 1)
    printf '%-12s %11s %11s %11s %9s %9s %9s %9s %9s %9s %7s %7s\n' "-c $1 -P $2" "$rr" "$lr" "$mr" \
        "$(col r 2)" "$(col l 2)" "$(col m 2)" "$(col r 3)" "$(col l 3)" "$(col m 3)" \
        "$(awk -v a="$lr" -v b="$rr" 'BEGIN { printf "%.2f", a / b }')" \
        "$(awk -v a="$mr" -v b="$rr" 'BEGIN { printf "%.2f", a / b }')"
done
