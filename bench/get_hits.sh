#!/usr/bin/env bash
# bench/get_hits.sh: GET hits on a warmed keyspace, luacached side by side
# with the redis-server it stores into, in one run (SPEC: "serve hits as
# fast as Redis serves a GET"). Prints medians over RUNS rounds and ratios.
#
#   bench/get_hits.sh [RUNS=5] [REQUESTS=200000]
#
# Needs build/luacached (./dev start or ./dev test builds it), redis-server
# and redis-benchmark. Uses ports from 17379 up; everything it starts stops
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
N=${2:-200000}
KEYS=1000
VALUE_SIZE=100
RPORT=17380
LPORT=17379
BIN=${LUACACHED_BIN:-build/luacached}
TMP=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
pids+=($!)
mkdir -p "$TMP/policies"
cat >"$TMP/policies/bench.lua" <<'LUA'
return { ttl = 3600, fetch = function(id) return string.rep("x", 100) end }
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
done >"$TMP/warm.txt"
redis-cli -p $LPORT <"$TMP/warm.txt" >/dev/null
redis-cli -p $RPORT <"$TMP/warm.txt" >/dev/null

run() { # port clients pipeline -> "rps p50 p99"
    redis-benchmark -p "$1" -c "$2" -P "$3" -n "$N" -r $KEYS --csv GET 'bench:__rand_int__' 2>/dev/null |
        awk -F, 'NR==2 { gsub(/"/, ""); print $2, $5, $7 }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $N GETs per round, $KEYS keys of $VALUE_SIZE bytes, median of $RUNS rounds"
printf '%-18s %14s %14s %10s %10s %10s %10s %8s\n' scenario redis_rps luacached_rps \
    redis_p50 lc_p50 redis_p99 lc_p99 ratio
for scenario in "50 1" "50 16" "1 1"; do
    set -- $scenario
    : >"$TMP/r" && : >"$TMP/l"
    for _ in $(seq "$RUNS"); do
        run $RPORT "$1" "$2" >>"$TMP/r"
        run $LPORT "$1" "$2" >>"$TMP/l"
    done
    rr=$(cut -d' ' -f1 "$TMP/r" | median); lr=$(cut -d' ' -f1 "$TMP/l" | median)
    r50=$(cut -d' ' -f2 "$TMP/r" | median); l50=$(cut -d' ' -f2 "$TMP/l" | median)
    r99=$(cut -d' ' -f3 "$TMP/r" | median); l99=$(cut -d' ' -f3 "$TMP/l" | median)
    ratio=$(awk -v a="$lr" -v b="$rr" 'BEGIN { printf "%.2f", a / b }')
    printf '%-18s %14s %14s %10s %10s %10s %10s %8s\n' "-c $1 -P $2" "$rr" "$lr" "$r50" "$l50" \
        "$r99" "$l99" "$ratio"
done
