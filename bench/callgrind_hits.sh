#!/usr/bin/env bash
# bench/callgrind_hits.sh: instructions per GET, counted by valgrind's
# callgrind (repeatable, unlike times on a shared VM; docs/PERFORMANCE.md,
# "Where the time goes"). For each path: start the server under callgrind,
# warm 100 keys, run REQUESTS pipelined GETs (redis-benchmark -c 10 -P 16
# -r 100), stop it; then the same with 0 requests (idle for as long as the
# GETs took, so timer work cancels out); instructions per GET =
# (total - total with 0 requests) / REQUESTS.
#
#   bench/callgrind_hits.sh [REQUESTS=20000] [--top N] [--per-get N]
#
# Paths: redis-server serving GET; luacached serving a hit through Redis
# (l1 off; counts luacached only, not the Redis behind it, which runs
# natively); luacached serving a hit from its in-process tier; and, only
# when asked (PATHS=miss), luacached serving misses of fresh keys, each
# filled by the policy's in-Lua fetch (own only, as lc). "tier hits" is how
# many of the REQUESTS GETs luacached counted as hits of the tier the path
# is about, or fetches for miss (from its metrics): it should be REQUESTS.
# --top N also prints the N functions with most instructions (self cost) of
# each REQUESTS run (startup included, so read shares, not absolutes).
# --per-get N prints the N functions with most own instructions per GET:
# (own instructions with REQUESTS GETs - with 0) / REQUESTS, per path.
# PATHS (default "redis lc l1") picks the paths.
# LUACACHED_BIN defaults to build-rel/luacached (-O2 -g), built here.
# Needs valgrind, callgrind_annotate, redis-server, redis-benchmark, redis-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
N=20000
TOP=0
PER=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --top) TOP=${2:?--top needs a number}; shift 2 ;;
    --per-get) PER=${2:?--per-get needs a number}; shift 2 ;;
    *) N=$1; shift ;;
    esac
done
[[ $N =~ ^[1-9][0-9]*$ && $TOP =~ ^[0-9]+$ && $PER =~ ^[0-9]+$ ]] || { echo "usage: $0 [REQUESTS] [--top N]" >&2; exit 2; }
KEYS=100
VALUE_SIZE=100
. bench/lib.sh
bench_need valgrind callgrind_annotate redis-server redis-benchmark redis-cli python3
BIN=$(bench_bin)
if ! readelf -S "$BIN" | grep -q '\.debug_info'; then
    echo "warning: $BIN has no debug info; --top shows addresses" >&2
fi

read -r RPORT SPORT < <(free_ports 2)
bench_start redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
wait_ping "$RPORT" redis-server
mkdir -p "$TMP/policies"
cat >"$TMP/policies/bench.lua" <<'LUA'
local v = string.rep("x", 100)
return { ttl = 3600, l1_ttl = 0, fetch = function(id) return v end }
LUA
cat >"$TMP/policies/benchl1.lua" <<'LUA'
local v = string.rep("x", 100)
return { ttl = 3600, l1_ttl = 3600, fetch = function(id) return v end }
LUA
value=$(head -c $VALUE_SIZE /dev/zero | tr '\0' x)

total_ir() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" | head -1; }

# measure PATH REQUESTS IDLE_SECONDS: sets IR (total instructions) and, for
# REQUESTS > 0, GET_SECONDS (how long the GETs took under callgrind). Not
# run in a subshell, so what it starts is stopped by the EXIT trap.
measure() {
    local path=$1 n=$2 idle=$3 ns=bench out="$TMP/cg.$1.$2" pid t0
    # Every run starts from an empty Redis: warming is the same misses each time.
    redis-cli -p "$RPORT" flushall >/dev/null
    local vg=(valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no)
    case $path in
    redis) bench_start "vg-$path-$n" "${vg[@]}" redis-server --port "$SPORT" --bind 127.0.0.1 \
        --save '' --appendonly no ;;
    l1) ns=benchl1 ;&
    lc | miss) bench_start "vg-$path-$n" "${vg[@]}" "$BIN" --port "$SPORT" \
        --redis "redis://127.0.0.1:$RPORT/0" --policies "$TMP/policies" --metrics-port 0 \
        --log-level warn ;;
    esac
    pid=$BENCH_PID
    wait_ping "$SPORT" "$path under callgrind" 120
    # Plain Redis by SET; luacached by a GET of each key (a miss filled by the
    # policy's fetch): after a SET the key stays out of the in-process tier
    # for 2 * backend timeout + 1 s (cache.c, cache_invalidate_local).
    local warm=GET
    [[ $path == redis ]] && warm=SET
    for i in $(seq 0 $((KEYS - 1))); do printf '%s %s:%012d %s\n' $warm "$ns" "$i" "$value"; done |
        sed 's/^\(GET [^ ]*\) .*/\1/' | redis-cli -p "$SPORT" >/dev/null
    [[ $(redis-cli -p "$SPORT" get "$ns:000000000007") == "$value" ]] ||
        { echo "error: $path does not answer a warmed key" >&2; exit 1; }
    local range=$KEYS key="$ns:__rand_int__"
    [[ $path == miss ]] && range=1000000000 key="$ns:m:__rand_int__"
    if ((n > 0)); then
        t0=$(date +%s.%N)
        redis-benchmark -p "$SPORT" -c 10 -P 16 -n "$n" -r $range -q GET "$key" \
            >"$TMP/rb.out" 2>&1 || { echo "error: redis-benchmark failed: $(tail -3 "$TMP/rb.out")" >&2; exit 1; }
        GET_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    else
        sleep "$idle"
    fi
    # Both runs read the counters, so that costs the same in each.
    HITS=-
    case $path in
    lc | l1) HITS=$(lc_metric "$SPORT" "luacached_hits_total{ns=\"$ns\",tier=\"${path/lc/redis}\"} ") ;;
    miss) HITS=$(lc_metric "$SPORT" "luacached_fetches_total{ns=\"$ns\",result=\"ok\"} ") ;;
    esac
    bench_stop "$pid"
    IR=$(total_ir "$out")
    [[ -n $IR ]] || { echo "error: callgrind wrote no totals to $out" >&2; exit 1; }
}

header
echo "# luacached $BIN, $(valgrind --version); $N GETs (-c 10 -P 16 -r $KEYS), $KEYS keys of $VALUE_SIZE bytes"
printf '%-40s %14s %14s %10s %12s\n' path "Ir (N GETs)" "Ir (0 GETs)" "Ir/GET" "tier hits"
for path in ${PATHS:-redis lc l1}; do
    measure $path "$N" 0
    full=$IR
    hits=$HITS
    measure $path 0 "$GET_SECONDS"
    idle=$IR
    cp "$TMP/cg.$path.0" "$TMP/idle.$path"
    [[ $hits != - ]] && hits=$((hits - HITS))
    case $path in
    redis) what="redis-server, GET" ;;
    lc) what="luacached, hit through Redis (own only)" ;;
    l1) what="luacached, hit from the in-process tier" ;;
    miss) what="luacached, miss + in-Lua fetch (own only)" ;;
    esac
    printf '%-40s %14s %14s %10s %12s\n' "$what" "$full" "$idle" \
        "$(awk -v a="$full" -v b="$idle" -v n="$N" 'BEGIN { printf "%.0f", (a - b) / n }')" "$hits"
done
if ((TOP > 0)); then
    for path in ${PATHS:-redis lc l1}; do
        echo
        echo "## $path: top $TOP functions by own instructions ($N GETs run, startup included)"
        callgrind_annotate --inclusive=no "$TMP/cg.$path.$N" 2>/dev/null |
            awk -v top="$TOP" '/^ *[0-9,]+ \([ 0-9.]+%\) / && n++ < top'
    done
fi
if ((PER > 0)); then
    own() { callgrind_annotate --inclusive=no --auto=no --threshold=100 "$1" 2>/dev/null |
        sed -nE 's/^ *([0-9,]+) \([ 0-9.]+%\) +(.*)$/\1\t\2/p' | tr -d ,; }
    for path in ${PATHS:-redis lc l1}; do
        echo
        echo "## $path: top $PER functions by own instructions per GET"
        join -t $'\t' -1 2 -2 2 -a 1 -e 0 -o 1.1,2.1,0 \
            <(own "$TMP/cg.$path.$N" | sort -t $'\t' -k2,2) \
            <(own "$TMP/idle.$path" | sort -t $'\t' -k2,2) |
            awk -F '\t' -v n="$N" '{ printf "%8.1f  %s\n", ($1 - $2) / n, $3 }' | sort -rn | head -"$PER" || true
    done
fi
