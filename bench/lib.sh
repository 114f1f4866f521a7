# shellcheck shell=bash
# bench/lib.sh: what the bench/*.sh scripts share (sourced, not run).
# The caller has done `cd` to the repository root and `set -euo pipefail`.
#
#   bench_need TOOL...     install the bench packages if a tool is missing
#                          (./dev bench-deps), then fail clearly if still missing
#   bench_bin              print the luacached to measure: $LUACACHED_BIN, or
#                          build-rel/luacached (-O2 -g), configured/rebuilt here
#   bench_start NAME CMD.. start CMD in the background, logs in $TMP/NAME.log;
#                          everything started this way stops on exit
#   free_ports N, wait_ping PORT WHAT [SECONDS], lc_metric PORT PREFIX, median,
#   ratio A B, header
#   wait_lc PORT PID NAME [SECONDS]  wait for a luacached started by bench_start
#                          NAME; if it exits first, fail with its own error line
#   bench_get PORT CLIENTS PIPELINE NS REQUESTS KEYS PID REDIS_PIDS
#                          one redis-benchmark GET run on NS:__rand_int__ ->
#                          "rps p50_ms p99_ms cpu_us_per_req redis_cpu_us_per_req"

PATH=$PATH:/usr/sbin:/sbin # nutcracker lives in /usr/sbin

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
bench_pids=()
bench_stop() { # pid... : TERM, wait up to 30 s (valgrind writes its output), then KILL
    local p alive
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 300); do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    ((${#bench_pids[@]})) && bench_stop "${bench_pids[@]}"
    if [[ $rc -ne 0 ]]; then
        for f in "$TMP"/*.log; do [[ -s $f ]] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }; done
    fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "work folder kept: $TMP" >&2; else rm -rf "$TMP"; fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_start() { # name cmd... ; sets BENCH_PID
    local name=$1
    shift
    "$@" >>"$TMP/$name.log" 2>&1 &
    BENCH_PID=$!
    bench_pids+=("$BENCH_PID")
}

bench_need() { # tool...
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
    ((${#missing[@]})) || return 0
    echo "missing ${missing[*]}: installing the bench packages (./dev bench-deps)" >&2
    ./dev bench-deps >&2 || true
    for t in "${missing[@]}"; do
        command -v "$t" >/dev/null || {
            echo "error: needs $t (Debian packages: nutcracker, valgrind, redis-server, redis-tools, python3)" >&2
            exit 2
        }
    done
}

bench_bin() {
    if [[ -n ${LUACACHED_BIN:-} ]]; then
        [[ -x $LUACACHED_BIN ]] || { echo "error: LUACACHED_BIN=$LUACACHED_BIN is not executable" >&2; exit 2; }
        echo "$LUACACHED_BIN"
        return
    fi
    # Always rebuild (incremental): the figures are for the tree as it is.
    if [[ ! -f build-rel/CMakeCache.txt ]]; then
        echo "configuring build-rel (RelWithDebInfo: -O2 -g)" >&2
        cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    fi
    grep -qE '^CMAKE_BUILD_TYPE:[A-Z]+=(RelWithDebInfo|Release)$' build-rel/CMakeCache.txt ||
        { echo "error: build-rel is not a RelWithDebInfo/Release build" >&2; exit 2; }
    grep -qE '^LUACACHED_SANITIZE:BOOL=ON$' build-rel/CMakeCache.txt &&
        { echo "error: build-rel has sanitizers on" >&2; exit 2; }
    cmake --build build-rel -j2 --target luacached >/dev/null
    echo build-rel/luacached
}

free_ports() { # n -> n distinct free TCP ports on 127.0.0.1
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

wait_ping() { # port what [seconds=10]
    local deadline=$((SECONDS + ${3:-10}))
    until [[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]]; do
        [[ $SECONDS -ge $deadline ]] && { echo "error: $2 on port $1 did not come up" >&2; return 1; }
        sleep 0.05
    done
}

wait_lc() { # port pid name [seconds=10]
    local deadline=$((SECONDS + ${4:-10})) line
    until [[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]]; do
        if ! kill -0 "$2" 2>/dev/null; then
            line=$(grep -h ' error ' "$TMP/$3.log" 2>/dev/null | tail -1 | sed 's/^[^ ]* error //')
            echo "error: luacached (port $1) exited at start: ${line:-see its log}" >&2
            exit 1
        fi
        [[ $SECONDS -ge $deadline ]] && { echo "error: luacached on port $1 did not come up" >&2; exit 1; }
        sleep 0.05
    done
}

BENCH_TICK=$(getconf CLK_TCK)
cpu_ticks() { # pid[,pid...] | - -> their utime + stime in clock ticks (/proc/PID/stat fields 14, 15)
    [[ $1 == - ]] && { echo 0; return; }
    local p t=0
    for p in ${1//,/ }; do t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }'))); done
    echo "$t"
}
sys_ticks() { # pid -> its stime alone (field 15): the kernel's share, sockets and polling
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $13 }'
}
per_req_us() { # ticks requests -> microseconds of CPU per request
    awk -v t="$1" -v n="$2" -v hz="$BENCH_TICK" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }'
}

# port clients pipeline namespace requests keys pid redis_pids -> "rps p50
# p99 cpu redis_cpu sys": cpu is the measured server's CPU time (user +
# system) per request in microseconds, sys its system part alone (the
# kernel's socket work, the same for any server answering the same
# pipelines), redis_cpu that of the redis-server(s) behind
# it (comma-separated pids; - for none): capacity per core, which
# redis-benchmark's own ceiling does not cap. -r keys: the GETs spread over
# NS:000000000000 .. NS:(keys - 1), 12 digits.
bench_get() {
    local out a0 b0 a1 b1 s0 s1
    a0=$(cpu_ticks "$7") b0=$(cpu_ticks "$8") s0=$(sys_ticks "$7")
    out=$(redis-benchmark -p "$1" -c "$2" -P "$3" -n "$5" -r "$6" --csv GET "$4:__rand_int__" 2>"$TMP/rb.err") ||
        { echo "error: redis-benchmark against port $1 failed: $(tail -3 "$TMP/rb.err")" >&2; exit 1; }
    a1=$(cpu_ticks "$7") b1=$(cpu_ticks "$8") s1=$(sys_ticks "$7")
    echo "$(awk -F, 'NR==2 { gsub(/"/, ""); print $2, $5, $7 }' <<<"$out") $(per_req_us $((a1 - a0)) "$5") $(per_req_us $((b1 - b0)) "$5") $(per_req_us $((s1 - s0)) "$5")"
}

lc_metric() { # port prefix -> the sum of the values of the METRICS lines starting with prefix
    redis-cli -p "$1" metrics | awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { printf "%d", s }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

header() { # the machine and the tree, for the record
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "# tree $(git rev-parse --short HEAD 2>/dev/null) (src/ last changed in $(git log -1 --format=%h -- src 2>/dev/null))$(git diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src changes'), redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
