#!/usr/bin/env bash
# bench/cluster_hits.sh: Redis-backed GET hits through luacached on a
# 3-master Redis Cluster, side by side in one run with luacached on one
# redis-server (issue 8, Benchmark), and redis-server direct for scale.
# Prints medians over RUNS rounds, ratios, and CPU time per request of
# luacached and of the redis-server(s) behind it (all three masters summed).
#
#   bench/cluster_hits.sh [RUNS=5] [REQUESTS=200000]
#
# Environment: LUACACHED_BIN (default build-rel/luacached, -O2 -g, built
# here), SCENARIOS ("50 16": clients and pipeline per scenario), MASTERS (3).
# Both luacached instances run the same policy (l1 off: every hit is read
# from Redis) on the same warmed keys; each round runs the three targets in
# an order that rotates from round to round, after one unrecorded warm-up
# run each (REQUESTS/10). Uses free ports; everything it starts stops on
# exit. Needs redis-server, redis-benchmark, redis-cli, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
N=${2:-200000}
MASTERS=${MASTERS:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ && $N =~ ^[1-9][0-9]*$ && $MASTERS =~ ^[1-9][0-9]*$ ]] ||
    { echo "usage: [MASTERS=3] $0 [RUNS] [REQUESTS]" >&2; exit 2; }
IFS=, read -r -a SCEN <<<"${SCENARIOS:-50 16}"
KEYS=1000
. bench/lib.sh
bench_need redis-server redis-benchmark redis-cli python3
BIN=$(bench_bin)

redis_args=(--bind 127.0.0.1 --save '' --appendonly no)

# The single node.
read -r RPORT LPORT KPORT < <(free_ports 3)
bench_start redis redis-server --port "$RPORT" "${redis_args[@]}"
RPID=$BENCH_PID
wait_ping "$RPORT" redis-server

# The cluster: MASTERS nodes, no replicas; each needs port + 10000 free too
# (the cluster bus).
read -r -a CPORTS < <(python3 - "$MASTERS" <<'PY'
import socket, sys
out, held = [], []
while len(out) < int(sys.argv[1]):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    held.append(a)
    if p + 10000 > 65535: continue
    b = socket.socket()
    try: b.bind(("127.0.0.1", p + 10000))
    except OSError: continue
    held.append(b); out.append(p)
print(" ".join(map(str, out)))
PY
)
CPIDS=()
seeds=()
for p in "${CPORTS[@]}"; do
    mkdir -p "$TMP/node-$p"
    bench_start "node-$p" redis-server --port "$p" "${redis_args[@]}" --dir "$TMP/node-$p" \
        --cluster-enabled yes --cluster-config-file "$TMP/node-$p/nodes.conf"
    CPIDS+=("$BENCH_PID")
    seeds+=("127.0.0.1:$p")
done
for p in "${CPORTS[@]}"; do wait_ping "$p" "cluster node"; done
redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$TMP/cluster-create.log" 2>&1 ||
    { cat "$TMP/cluster-create.log" >&2; exit 1; }
for _ in $(seq 200); do
    ok=0
    for p in "${CPORTS[@]}"; do
        redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' && ok=$((ok + 1))
    done
    [[ $ok -eq ${#CPORTS[@]} ]] && break
    sleep 0.1
done
[[ $ok -eq ${#CPORTS[@]} ]] || { echo "error: the cluster did not reach cluster_state:ok" >&2; exit 1; }
CLUSTER_URL="redis+cluster://$(IFS=,; echo "${seeds[*]}")"
CLUSTER_PIDS=$(IFS=,; echo "${CPIDS[*]}")

mkdir -p "$TMP/policies"
cat >"$TMP/policies/bench.lua" <<'LUA'
return { ttl = 3600, l1_ttl = 0, fetch = function(id) return string.rep("x", 100) end }
LUA
bench_start luacached-single "$BIN" --port "$LPORT" --redis "redis://127.0.0.1:$RPORT/0" \
    --policies "$TMP/policies" --metrics-port 0 --log-level warn
LPID=$BENCH_PID
bench_start luacached-cluster "$BIN" --port "$KPORT" --redis "$CLUSTER_URL" \
    --policies "$TMP/policies" --metrics-port 0 --log-level warn
KPID=$BENCH_PID
wait_lc "$LPORT" "$LPID" luacached-single
wait_lc "$KPORT" "$KPID" luacached-cluster

# Warm the keys redis-benchmark's -r picks (12 digits below KEYS): Redis
# direct by SET, each luacached by a GET of each key (a miss filled by the
# policy), then check each target answers a warmed key with the value.
value=$(head -c 100 /dev/zero | tr '\0' x)
for i in $(seq 0 $((KEYS - 1))); do printf 'SET bench:%012d %s\n' "$i" "$value"; done |
    redis-cli -p "$RPORT" >/dev/null
for port in "$LPORT" "$KPORT"; do
    for i in $(seq 0 $((KEYS - 1))); do printf 'GET bench:%012d\n' "$i"; done | redis-cli -p "$port" >/dev/null
done
for port in "$RPORT" "$LPORT" "$KPORT"; do
    [[ $(redis-cli -p "$port" get bench:000000000007) == "$value" ]] ||
        { echo "error: port $port does not answer bench:000000000007 with the warmed value" >&2; exit 1; }
done
# The cluster must really hold the entries, on every master.
for p in "${CPORTS[@]}"; do
    n=$(redis-cli -p "$p" dbsize)
    [[ $n -gt 0 ]] || { echo "error: cluster master on port $p holds no entry after warming" >&2; exit 1; }
done

# file tag, port, measured pid, redis pids behind it
TARGETS=("r $RPORT $RPID -" "l $LPORT $LPID $RPID" "k $KPORT $KPID $CLUSTER_PIDS")
hits() { lc_metric "$1" 'luacached_hits_total{ns="bench",tier="redis"} '; }
# GETs that were not Redis hits: misses (a fetch, fail-open included) and backend errors
nonhits() { echo $(($(lc_metric "$1" 'luacached_misses_total{ns="bench"') + $(lc_metric "$1" 'luacached_backend_errors_total'))); }
before=("$(hits "$LPORT")" "$(hits "$KPORT")" "$(nonhits "$LPORT")" "$(nonhits "$KPORT")")
header
echo "# luacached $BIN; cluster of $MASTERS masters, no replicas, on this machine"
echo "# $N GETs per round, $KEYS keys of 100 bytes, median of $RUNS rounds"
echo "# r = redis-server direct, lc = luacached on that redis-server, lk = luacached on the cluster (l1 off for both)"
echo "# cpu us/req: CPU (user+sys) per GET of redis-server for r, luacached for lc/lk; +redis: of the redis-server(s) behind lc/lk"
fmt='%-12s %10s %10s %10s   %-20s %-20s %6s %6s %6s   %-17s %-12s\n'
printf "$fmt" scenario r_rps lc_rps lk_rps "p50 ms r/lc/lk" "p99 ms r/lc/lk" lc/r lk/r lk/lc "cpu us/req r/lc/lk" "+redis lc/lk"
for scenario in "${SCEN[@]}"; do
    set -- $scenario
    c=$1 p=$2
    for t in "${TARGETS[@]}"; do
        set -- $t
        : >"$TMP/$1"
        bench_get "$2" "$c" "$p" bench $((N / 10)) $KEYS "$3" "$4" >/dev/null
    done
    for round in $(seq 0 $((RUNS - 1))); do
        for k in 0 1 2; do
            set -- ${TARGETS[(round + k) % 3]}
            bench_get "$2" "$c" "$p" bench "$N" $KEYS "$3" "$4" >>"$TMP/$1"
        done
    done
    col() { cut -d' ' -f"$2" "$TMP/$1" | median; }
    rr=$(col r 1) lr=$(col l 1) kr=$(col k 1)
    printf "$fmt" "-c $c -P $p" "$(printf %.0f "$rr")" "$(printf %.0f "$lr")" "$(printf %.0f "$kr")" \
        "$(col r 2)/$(col l 2)/$(col k 2)" "$(col r 3)/$(col l 3)/$(col k 3)" \
        "$(ratio "$lr" "$rr")" "$(ratio "$kr" "$rr")" "$(ratio "$kr" "$lr")" \
        "$(col r 4)/$(col l 4)/$(col k 4)" "$(col l 5)/$(col k 5)"
    if [[ -n ${RAW:-} ]]; then
        for t in r l k; do echo "#   $t rps per round: $(cut -d' ' -f1 "$TMP/$t" | xargs)"; done
    fi
done
after=("$(hits "$LPORT")" "$(hits "$KPORT")" "$(nonhits "$LPORT")" "$(nonhits "$KPORT")")
want=$(((N / 10 + RUNS * N) * ${#SCEN[@]}))
echo "# check (counted by luacached over the run, at least $want GETs each): lc $((after[0] - before[0])) Redis hits, $((after[2] - before[2])) misses + backend errors; lk $((after[1] - before[1])) Redis hits, $((after[3] - before[3])) misses + backend errors"
# A GET that was not a Redis hit (a fetch, an error) makes a row something
# else than hit throughput.
for i in 0 1; do
    name=$([[ $i == 0 ]] && echo lc || echo lk)
    [[ $((after[i] - before[i])) -ge $want && $((after[i + 2] - before[i + 2])) -eq 0 ]] ||
        { echo "error: $name did not answer every GET as a Redis hit: its figures above are not hit throughput" >&2; exit 1; }
done
