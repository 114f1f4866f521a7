#!/usr/bin/env bash
# bench/write_behind.sh: SET throughput of a write-behind namespace (the
# write queued in a Redis Stream, then cached) against a plain SET of
# luacached and redis-server's own SET, in one run; then how many writes
# reach the origin per 1000 SETs with coalescing (issue 9).
#
#   bench/write_behind.sh [RUNS=3] [REQUESTS=100000]
#
# Environment: LUACACHED_BIN (default build-rel/luacached, built here),
# CLIENTS (50), PIPELINE (16). redis-benchmark SET with 100-byte values on
# keys NS:__rand_int__ (-r 1000000); medians of RUNS, runs alternating.
# write_batch is a Lua function that writes nowhere, so the figures are
# luacached's and Redis's cost, not an origin's. The coalescing figures run
# SETs over a keyspace of K ids (100, 10000) and read
# luacached_writes_total{mode="behind",result="ok"} (writes write_batch
# carried) once the queue is empty. Uses free ports; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
N=${2:-100000}
C=${CLIENTS:-50}
P=${PIPELINE:-16}
[[ $RUNS =~ ^[1-9][0-9]*$ && $N =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS] [REQUESTS]" >&2; exit 2; }
. bench/lib.sh
bench_need redis-server redis-benchmark redis-cli
BIN=$(bench_bin)

read -r RPORT LPORT < <(free_ports 2)
bench_start redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
wait_ping "$RPORT" redis-server
mkdir -p "$TMP/policies"
cat >"$TMP/policies/plain.lua" <<'LUA'
return { ttl = 3600, l1_ttl = 0, fetch = function(id) return nil end }
LUA
cat >"$TMP/policies/wb.lua" <<'LUA'
return {
  ttl = 3600, l1_ttl = 0,
  write_behind = { delay = 0.2, batch = 1000, coalesce = true },
  fetch = function(id) return nil end,
  write_batch = function(items, ctx) end,
}
LUA
bench_start luacached "$BIN" --port "$LPORT" --redis "redis://127.0.0.1:$RPORT/0" \
    --policies "$TMP/policies" --metrics-port 0 --log-level warn
wait_lc "$LPORT" "$BENCH_PID" luacached

rps() { # port key-pattern-or-empty -> requests per second
    local out
    if [[ -n $2 ]]; then
        out=$(redis-benchmark --csv -p "$1" -c "$C" -P "$P" -n "$N" -r 1000000 -d 100 SET "$2" "$(printf 'x%.0s' $(seq 100))" 2>"$TMP/rb.err")
    else
        out=$(redis-benchmark --csv -p "$1" -c "$C" -P "$P" -n "$N" -r 1000000 -d 100 -t set 2>"$TMP/rb.err")
    fi || { echo "error: redis-benchmark failed: $(tail -3 "$TMP/rb.err")" >&2; exit 1; }
    awk -F, 'NR==2 { gsub(/"/, ""); print $2 }' <<<"$out"
}
drain() { # wait until the wb queue is empty (at most 60 s)
    for _ in $(seq 600); do
        [[ $(redis-cli -p "$RPORT" xlen 'lc:{#wb:wb}:q') == 0 ]] && return 0
        sleep 0.1
    done
    echo "error: the write-behind queue did not drain" >&2
    exit 1
}
ok_writes() { lc_metric "$LPORT" 'luacached_writes_total{ns="wb",mode="behind",result="ok"}'; }

header
echo "# luacached $BIN; $N SETs per run, $C clients, pipeline $P, 100-byte values, median of $RUNS"
: >"$TMP/r" && : >"$TMP/p" && : >"$TMP/w"
for round in $(seq 1 "$RUNS"); do
    rps "$RPORT" "" >>"$TMP/r"
    rps "$LPORT" "plain:__rand_int__" >>"$TMP/p"
    rps "$LPORT" "wb:__rand_int__" >>"$TMP/w"
    drain
done
r=$(median <"$TMP/r") p=$(median <"$TMP/p") w=$(median <"$TMP/w")
printf '%-28s %10s\n' "redis-server SET" "$r" "luacached SET (plain)" "$p" "luacached SET (write-behind)" "$w"
echo "# write-behind / plain: $(ratio "$w" "$p"); write-behind / redis-server: $(ratio "$w" "$r")"

echo "# origin writes per 1000 SETs (coalesce, batch 1000, delay 0.2 s)"
for keys in 100 10000; do
    before=$(ok_writes)
    out=$(redis-benchmark --csv -p "$LPORT" -c "$C" -P "$P" -n "$N" -r "$keys" SET "wb:k$keys:__rand_int__" v 2>"$TMP/rb.err") ||
        { echo "error: redis-benchmark failed: $(tail -3 "$TMP/rb.err")" >&2; exit 1; }
    drain
    sleep 0.5
    after=$(ok_writes)
    printf '%-28s %10s\n' "keyspace $keys" "$(awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN { printf "%.1f", (a - b) * 1000 / n }')"
done
