#!/usr/bin/env bash
# bench/miss_fill.sh: misses filled by an in-Lua fetch (the policy's fetch
# returns a 100-byte string, no HTTP), every GET a new key, side by side in
# one run with the SET rate of the redis-server luacached stores into
# (issue 7, Targets: miss + fill >= 0.5x redis-server's SET rate).
#
#   bench/miss_fill.sh [RUNS=5] [REQUESTS=100000]
#
# Environment: LUACACHED_BIN (default build-rel/luacached, -O2 -g, built
# here), SCENARIOS ("50 1,50 16": clients and pipeline per scenario).
# luacached: redis-benchmark GET fill:rROUND:__rand_int__ -r 1e9, a new key
# prefix per run, so (apart from a few random repeats) every GET is a miss:
# lock, fetch, store, broadcast. Redis: redis-benchmark -t set -d 100 -r 1e9
# with the same clients and pipeline. Redis is flushed (FLUSHALL) before
# every run of either, so both write into an empty Redis. Runs alternate
# (the order swaps each round); before each scenario both get the same
# unrecorded warm-up run (REQUESTS/10). The luacached counters over the run
# are printed so a run that was not all misses shows. Uses free ports;
# everything it starts stops on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
N=${2:-100000}
[[ $RUNS =~ ^[1-9][0-9]*$ && $N =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS] [REQUESTS]" >&2; exit 2; }
IFS=, read -r -a SCEN <<<"${SCENARIOS:-50 1,50 16}"
KEYSPACE=1000000000
. bench/lib.sh
bench_need redis-server redis-benchmark redis-cli python3
BIN=$(bench_bin)

read -r RPORT LPORT < <(free_ports 2)
bench_start redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
RPID=$BENCH_PID
wait_ping "$RPORT" redis-server
mkdir -p "$TMP/policies"
cat >"$TMP/policies/fill.lua" <<'LUA'
local v = string.rep("x", 100)
return { ttl = 3600, l1_ttl = 0, fetch = function(id) return v end }
LUA
bench_start luacached "$BIN" --port "$LPORT" --redis "redis://127.0.0.1:$RPORT/0" \
    --policies "$TMP/policies" --metrics-port 0 --log-level warn
LPID=$BENCH_PID
wait_ping "$LPORT" luacached
[[ $(redis-cli -p "$LPORT" get fill:probe) == "$(printf 'x%.0s' $(seq 100))" ]] ||
    { echo "error: luacached does not answer a miss with the fetched value" >&2; exit 1; }

csv_rps() { awk -F, 'NR==2 { gsub(/"/, ""); print $2, $5, $7 }'; }
bench_run() { # what args... -> "rps p50 p99"
    local what=$1 out
    shift
    redis-cli -p "$RPORT" flushall >/dev/null
    out=$(redis-benchmark --csv "$@" 2>"$TMP/rb.err") ||
        { echo "error: redis-benchmark ($what) failed: $(tail -3 "$TMP/rb.err")" >&2; exit 1; }
    csv_rps <<<"$out"
}
seq_no=0
# CPU (user + sys) of luacached and of redis-server over the luacached
# runs, and Redis's time per store-script call (INFO commandstats).
lc_ticks=0 rd_ticks=0
run_lc() { # clients pipeline requests
    seq_no=$((seq_no + 1))
    local a0 b0 out
    a0=$(cpu_ticks "$LPID") b0=$(cpu_ticks "$RPID")
    out=$(bench_run luacached -p "$LPORT" -c "$1" -P "$2" -n "$3" -r $KEYSPACE GET "fill:r$seq_no:__rand_int__") || exit 1
    lc_ticks=$((lc_ticks + $(cpu_ticks "$LPID") - a0)) rd_ticks=$((rd_ticks + $(cpu_ticks "$RPID") - b0))
    echo "$out"
}
evalsha_us() {
    redis-cli -p "$RPORT" info commandstats | tr -d '\r' |
        awk -F'usec_per_call=' '/^cmdstat_evalsha:/ { split($2, a, ","); print a[1]; f = 1 } END { if (!f) print "-" }'
}
run_set() { # clients pipeline requests
    bench_run redis -p "$RPORT" -c "$1" -P "$2" -n "$3" -r $KEYSPACE -d 100 -t set
}
ctr() { lc_metric "$LPORT" "$1"; }
counters() {
    echo "$(ctr 'luacached_misses_total{ns="fill"} ') $(ctr 'luacached_fetches_total{ns="fill",result="ok"} ') $(ctr 'luacached_hits_total{ns="fill",') $(ctr 'luacached_coalesced_total{ns="fill"} ')"
}

header
echo "# luacached $BIN; $N requests per run, keyspace $KEYSPACE, 100-byte values, median of $RUNS rounds"
echo "# cpu us/miss: CPU (user+sys, /proc/PID/stat) per GET over the luacached rounds, of luacached and of the redis-server behind it; script us: Redis's time per store-script call (INFO commandstats, a batch of up to 16 fills)"
fmt='%-12s %10s %10s   %-15s %-15s %7s   %-18s %9s   %s\n'
printf "$fmt" scenario set_rps fill_rps "p50 ms set/lc" "p99 ms set/lc" lc/set "cpu us/miss lc/r" "script us" "luacached over the runs: GETs, misses, fetches ok, hits, coalesced"
for scenario in "${SCEN[@]}"; do
    set -- $scenario
    c=$1 p=$2
    run_set "$c" "$p" $((N / 10)) >/dev/null
    run_lc "$c" "$p" $((N / 10)) >/dev/null
    : >"$TMP/s" && : >"$TMP/l"
    read -r m0 f0 h0 k0 < <(counters)
    lc_ticks=0 rd_ticks=0
    redis-cli -p "$RPORT" config resetstat >/dev/null
    for round in $(seq 0 $((RUNS - 1))); do
        # (run_lc in this shell, not a subshell: it adds up the CPU)
        if ((round % 2 == 0)); then
            run_set "$c" "$p" "$N" >>"$TMP/s"
            run_lc "$c" "$p" "$N" >>"$TMP/l"
        else
            run_lc "$c" "$p" "$N" >>"$TMP/l"
            run_set "$c" "$p" "$N" >>"$TMP/s"
        fi
    done
    read -r m1 f1 h1 k1 < <(counters)
    col() { cut -d' ' -f"$2" "$TMP/$1" | median; }
    sr=$(col s 1) lr=$(col l 1)
    printf "$fmt" "-c $c -P $p" "$(printf %.0f "$sr")" "$(printf %.0f "$lr")" \
        "$(col s 2)/$(col l 2)" "$(col s 3)/$(col l 3)" "$(ratio "$lr" "$sr")" \
        "$(per_req_us "$lc_ticks" $((RUNS * N)))/$(per_req_us "$rd_ticks" $((RUNS * N)))" "$(evalsha_us)" \
        "$((RUNS * N)), $((m1 - m0)), $((f1 - f0)), $((h1 - h0)), $((k1 - k0))"
    if [[ -n ${RAW:-} ]]; then
        echo "#   set rps per round: $(cut -d' ' -f1 "$TMP/s" | xargs)"
        echo "#   fill rps per round: $(cut -d' ' -f1 "$TMP/l" | xargs)"
    fi
done
