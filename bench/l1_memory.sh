#!/usr/bin/env bash
# bench/l1_memory.sh: memory per item of the in-process tier (l1), measured
# (issue 7, Targets: <= 64 B overhead per entry).
#
#   bench/l1_memory.sh [KEYS=200000] [VALUE_BYTES=32] [ROUNDS=3]
#
# Each round starts a fresh luacached (l1_ttl = 3600, --l1-max-bytes 1 GiB
# so nothing is evicted) in front of a fresh redis-server, reads its RSS
# (/proc/PID/status VmRSS), fills the tier with KEYS distinct keys by GET
# (each a miss filled by an in-Lua fetch of a VALUE_BYTES value, pipelined
# through redis-cli --pipe), waits until the tier holds them all, reads RSS
# again, and prints
#   overhead per entry = (dRSS - payload) / KEYS   ("raw")
# where payload = the bytes of each key as the client names it (NS:ID)
# plus its value: everything else (the tier's own key form "lc:{NS:ID}",
# the item header, the hash table, malloc's rounding and headers, memory
# the fill path kept) counts as overhead. It also prints the tier's own
# accounting (luacached_l1_bytes) per entry, and sizeof the item header
# from the unit test (build/test_l1 --sizes). Each round also runs the same
# fills with l1_ttl = 0: "net" subtracts that dRSS, the memory the fill
# path itself keeps (Lua heap, buffers, malloc's free lists), which is no
# part of the tier. Medians of ROUNDS.
# LUACACHED_BIN defaults to build-rel/luacached (-O2 -g), built here.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
VLEN=${2:-32}
ROUNDS=${3:-3}
[[ $N =~ ^[1-9][0-9]*$ && $VLEN =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] ||
    { echo "usage: $0 [KEYS] [VALUE_BYTES] [ROUNDS]" >&2; exit 2; }
. bench/lib.sh
bench_need redis-server redis-cli python3
BIN=$(bench_bin)

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

mkdir -p "$TMP/policies"
cat >"$TMP/m.lua.in" <<LUA
local v = string.rep("v", $VLEN)
return { ttl = 3600, l1_ttl = L1TTL, fetch = function(id) return v end }
LUA
# The GETs, in RESP, for redis-cli --pipe; and the payload they bring.
python3 - "$N" >"$TMP/gets" <<'PY'
import sys
out = sys.stdout
for i in range(int(sys.argv[1])):
    k = "m:%d" % i
    out.write("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
PY
payload=$(python3 -c "import sys; n=int(sys.argv[1]); print(sum(len('m:%d' % i) for i in range(n)) + n * int(sys.argv[2]))" "$N" "$VLEN")

one_round() { # l1_ttl -> "dRSS_kB entries l1_bytes"
    local ttl=$1 RPORT LPORT rpid lpid before after deadline
    sed "s/L1TTL/$ttl/" "$TMP/m.lua.in" >"$TMP/policies/m.lua"
    read -r RPORT LPORT < <(free_ports 2)
    bench_start redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
    rpid=$BENCH_PID
    wait_ping "$RPORT" redis-server
    bench_start luacached "$BIN" --port "$LPORT" --redis "redis://127.0.0.1:$RPORT/0" \
        --policies "$TMP/policies" --metrics-port 0 --log-level warn --l1-max-bytes 1073741824
    lpid=$BENCH_PID
    wait_ping "$LPORT" luacached
    [[ $(redis-cli -p "$LPORT" get m:probe) == "$(printf 'v%.0s' $(seq "$VLEN"))" ]] ||
        { echo "error: luacached does not answer a miss with the fetched value" >&2; exit 1; }
    redis-cli -p "$LPORT" del m:probe >/dev/null
    before=$(rss_kb "$lpid")
    redis-cli -p "$LPORT" --pipe <"$TMP/gets" >"$TMP/pipe.out" 2>&1 ||
        { echo "error: redis-cli --pipe failed: $(tail -3 "$TMP/pipe.out")" >&2; exit 1; }
    deadline=$((SECONDS + 60))
    until [[ $(lc_metric "$LPORT" 'luacached_fetches_total{ns="m",result="ok"}') -ge $((N + 1)) ]]; do
        [[ $SECONDS -ge $deadline ]] && { echo "error: not all $N keys were fetched" >&2; exit 1; }
        sleep 0.1
    done
    until [[ $ttl == 0 || $(lc_metric "$LPORT" luacached_l1_entries) -ge $N ]]; do
        [[ $SECONDS -ge $deadline ]] && { echo "error: the tier holds $(lc_metric "$LPORT" luacached_l1_entries) of $N keys" >&2; exit 1; }
        sleep 0.1
    done
    after=$(rss_kb "$lpid")
    echo "$((after - before)) $(lc_metric "$LPORT" luacached_l1_entries) $(lc_metric "$LPORT" luacached_l1_bytes)"
    bench_stop "$lpid" "$rpid"
    bench_pids=()
}

header
echo "# luacached $BIN; $N keys, $VLEN-byte values, payload $payload bytes (keys as NS:ID + values), median of $ROUNDS rounds"
echo "# raw = (dRSS - payload) / keys; net = the same less the dRSS of the same fills with l1_ttl = 0 (what the fill path keeps, not the tier)"
fmt='%-6s %12s %13s %8s %9s %9s %14s\n'
printf "$fmt" round "dRSS l1 on" "dRSS l1 off" entries "raw B/e" "net B/e" "l1_bytes B/e"
: >"$TMP/raw"
: >"$TMP/net"
: >"$TMP/acc"
for r in $(seq "$ROUNDS"); do
    read -r d_on entries l1b < <(one_round 3600)
    read -r d_off _ _ < <(one_round 0)
    [[ $entries -eq $N ]] || { echo "error: the tier held $entries items, not $N" >&2; exit 1; }
    raw=$(awk -v d="$d_on" -v p="$payload" -v n="$N" 'BEGIN { printf "%.1f", (d * 1024 - p) / n }')
    net=$(awk -v d="$d_on" -v c="$d_off" -v p="$payload" -v n="$N" 'BEGIN { printf "%.1f", ((d - c) * 1024 - p) / n }')
    acc=$(awk -v l="$l1b" -v n="$entries" 'BEGIN { printf "%.1f", l / n }')
    printf "$fmt" "$r" "$d_on kB" "$d_off kB" "$entries" "$raw" "$net" "$acc"
    echo "$raw" >>"$TMP/raw"
    echo "$net" >>"$TMP/net"
    echo "$acc" >>"$TMP/acc"
done
echo "median overhead per entry: raw $(median <"$TMP/raw") B, net of the fill path $(median <"$TMP/net") B (target <= 64); the tier's own accounting: $(median <"$TMP/acc") B per item, key and value included"
if [[ -x build/test_l1 ]]; then
    build/test_l1 --sizes 2>/dev/null || true
fi
