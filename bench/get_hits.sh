#!/usr/bin/env bash
# bench/get_hits.sh: GET hits on a warmed keyspace, side by side in one run
# (issue 7, Targets): the redis-server luacached stores into, nutcracker
# (twemproxy) in front of that same redis-server, luacached with hits from
# Redis (l1 off), and luacached with hits from its in-process tier (l1).
# Prints medians over RUNS rounds and ratios, and each server's CPU time
# per request (utime + stime from /proc/PID/stat around each run): the
# capacity per core, comparable even where redis-benchmark caps the rate.
#
#   bench/get_hits.sh [RUNS=5] [REQUESTS=200000]
#
# Environment: LUACACHED_BIN (default build-rel/luacached, -O2 -g, built
# here), SCENARIOS ("50 1,50 16,1 1": clients and pipeline per scenario).
# Each round runs the same redis-benchmark call against the four targets,
# in an order that rotates from round to round; before each scenario every
# target gets the same unrecorded warm-up run (REQUESTS/10). Uses free
# ports; everything it starts stops on exit. Needs redis-server,
# redis-benchmark, redis-cli, nutcracker, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
N=${2:-200000}
[[ $RUNS =~ ^[1-9][0-9]*$ && $N =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS] [REQUESTS]" >&2; exit 2; }
IFS=, read -r -a SCEN <<<"${SCENARIOS:-50 1,50 16,1 1}"
KEYS=1000
VALUE_SIZE=100
. bench/lib.sh
bench_need redis-server redis-benchmark redis-cli nutcracker python3
BIN=$(bench_bin)

read -r RPORT NPORT NSTATS LPORT < <(free_ports 4)
bench_start redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
RPID=$BENCH_PID
wait_ping "$RPORT" redis-server

# One pool, one server; never eject it (a slow round must not turn into
# errors), connect before the first client does. server_connections stays
# at its default of 1: nutcracker pipelines every client onto one link, as
# luacached does.
cat >"$TMP/nutcracker.yml" <<YML
bench:
  listen: 127.0.0.1:$NPORT
  redis: true
  hash: fnv1a_64
  distribution: ketama
  preconnect: true
  auto_eject_hosts: false
  server_connections: 1
  servers:
    - 127.0.0.1:$RPORT:1
YML
nutcracker -t -c "$TMP/nutcracker.yml" >"$TMP/nutcracker-check.log" 2>&1 ||
    { cat "$TMP/nutcracker-check.log" >&2; exit 1; }
bench_start nutcracker nutcracker -c "$TMP/nutcracker.yml" -a 127.0.0.1 -s "$NSTATS" -v 4
NPID=$BENCH_PID

mkdir -p "$TMP/policies"
cat >"$TMP/policies/bench.lua" <<'LUA'
return { ttl = 3600, l1_ttl = 0, fetch = function(id) return string.rep("x", 100) end }
LUA
cat >"$TMP/policies/benchl1.lua" <<'LUA'
return { ttl = 3600, l1_ttl = 3600, fetch = function(id) return string.rep("x", 100) end }
LUA
bench_start luacached "$BIN" --port "$LPORT" --redis "redis://127.0.0.1:$RPORT/0" \
    --policies "$TMP/policies" --metrics-port 0 --log-level warn
LPID=$BENCH_PID
wait_ping "$LPORT" luacached
# nutcracker answers no PING of its own before a GET went through it.
for _ in $(seq 200); do
    [[ $(redis-cli -p "$NPORT" set bench:probe 1 2>/dev/null) == OK ]] && break
    sleep 0.05
done
[[ $(redis-cli -p "$NPORT" get bench:probe 2>/dev/null) == 1 ]] ||
    { echo "error: nutcracker on port $NPORT does not reach redis-server" >&2; exit 1; }

# redis-benchmark's -r N turns __rand_int__ into a 12-digit number below N:
# warm exactly those keys. Plain Redis by SET; luacached by a GET of each
# (a miss filled by the policy's fetch), not by SET: after a SET the key
# stays out of the in-process tier for 2 * backend timeout + 1 s (cache.c,
# cache_invalidate_local), so a SET-warmed l1 run would start on Redis.
value=$(head -c $VALUE_SIZE /dev/zero | tr '\0' x)
for i in $(seq 0 $((KEYS - 1))); do printf 'SET bench:%012d %s\n' "$i" "$value"; done |
    redis-cli -p "$RPORT" >/dev/null
for i in $(seq 0 $((KEYS - 1))); do printf 'GET bench:%012d\nGET benchl1:%012d\n' "$i" "$i"; done |
    redis-cli -p "$LPORT" >/dev/null
l1n=$(lc_metric "$LPORT" 'luacached_l1_entries ')
[[ $l1n == "$KEYS" ]] || { echo "error: the in-process tier holds $l1n items after warming, not $KEYS" >&2; exit 1; }
# Every target must answer a warmed key with the value (not nil, not an error).
for t in "$RPORT bench" "$NPORT bench" "$LPORT bench" "$LPORT benchl1"; do
    set -- $t
    [[ $(redis-cli -p "$1" get "$2:000000000007") == "$value" ]] ||
        { echo "error: port $1 does not answer $2:000000000007 with the warmed value" >&2; exit 1; }
done

# Targets: file tag, port, namespace, the server process measured, and
# the redis-server behind it (- for redis direct).
TARGETS=("r $RPORT bench $RPID -" "n $NPORT bench $NPID $RPID" "l $LPORT bench $LPID $RPID"
    "m $LPORT benchl1 $LPID $RPID")
# port clients pipeline namespace requests pid redis_pid (bench/lib.sh bench_get)
run() { bench_get "$1" "$2" "$3" "$4" "$5" $KEYS "$6" "$7"; }

hits() { lc_metric "$LPORT" "luacached_hits_total{ns=\"$1\",tier=\"$2\"} "; }
before=("$(hits bench redis)" "$(hits bench l1)" "$(hits benchl1 redis)" "$(hits benchl1 l1)")
header
echo "# luacached $BIN; nutcracker $(nutcracker --version 2>&1 | sed -n 's/.*nutcracker-//p'), 1 server link"
echo "# $N GETs per round, $KEYS keys of $VALUE_SIZE bytes, median of $RUNS rounds"
echo "# r = redis-server direct, nc = nutcracker -> same redis, lc = luacached (Redis-backed hits), l1 = luacached in-process tier"
echo "# cpu us/req: CPU (user+sys, /proc/PID/stat) per GET of the server itself: redis-server for r, nutcracker for nc, luacached for lc/l1; +redis: of the redis-server behind nc/lc/l1; sys: the system part of cpu (r/l1)"
fmt='%-12s %10s %10s %10s %10s   %-27s %-27s %6s %6s %6s %6s   %-23s %-17s %-11s\n'
printf "$fmt" scenario r_rps nc_rps lc_rps l1_rps "p50 ms r/nc/lc/l1" "p99 ms r/nc/lc/l1" nc/r lc/r lc/nc l1/r "cpu us/req r/nc/lc/l1" "+redis nc/lc/l1" "sys r/l1"
for scenario in "${SCEN[@]}"; do
    set -- $scenario
    c=$1 p=$2
    for t in "${TARGETS[@]}"; do
        set -- $t
        : >"$TMP/$1"
        run "$2" "$c" "$p" "$3" $((N / 10)) "$4" "$5" >/dev/null
    done
    for round in $(seq 0 $((RUNS - 1))); do
        for k in 0 1 2 3; do
            set -- ${TARGETS[(round + k) % 4]}
            run "$2" "$c" "$p" "$3" "$N" "$4" "$5" >>"$TMP/$1"
        done
    done
    col() { cut -d' ' -f"$2" "$TMP/$1" | median; }
    rr=$(col r 1) nr=$(col n 1) lr=$(col l 1) mr=$(col m 1)
    printf "$fmt" "-c $c -P $p" "$(printf %.0f "$rr")" "$(printf %.0f "$nr")" "$(printf %.0f "$lr")" "$(printf %.0f "$mr")" \
        "$(col r 2)/$(col n 2)/$(col l 2)/$(col m 2)" "$(col r 3)/$(col n 3)/$(col l 3)/$(col m 3)" \
        "$(ratio "$nr" "$rr")" "$(ratio "$lr" "$rr")" "$(ratio "$lr" "$nr")" "$(ratio "$mr" "$rr")" \
        "$(col r 4)/$(col n 4)/$(col l 4)/$(col m 4)" "$(col n 5)/$(col l 5)/$(col m 5)" \
        "$(col r 6)/$(col m 6)"
    if [[ -n ${RAW:-} ]]; then
        for t in r n l m; do echo "#   $t rps per round: $(cut -d' ' -f1 "$TMP/$t" | xargs)"; done
    fi
done
after=("$(hits bench redis)" "$(hits bench l1)" "$(hits benchl1 redis)" "$(hits benchl1 l1)")
d=()
for i in 0 1 2 3; do d+=($((after[i] - before[i]))); done
echo "# check (luacached counters over the run): lc $((d[0])) Redis hits, ${d[1]} l1 hits; l1 ${d[3]} l1 hits, ${d[2]} Redis hits"
