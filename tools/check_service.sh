#!/usr/bin/env bash
# check_service.sh: examples/luacached.service is a unit systemd accepts, as
# shipped, with the directives docs and the operators rely on.
#   tools/check_service.sh [BINARY]   (default build/luacached)
# systemd-analyze verify wants ExecStart's binary to exist, so it checks a
# copy whose ExecStart names BINARY; it reports unknown keys and bad values
# as warnings with exit status 0, so any output at all fails the check.
# Every --flag of ExecStart must be one luacached --help lists.
set -euo pipefail
cd "$(dirname "$0")/.."
unit=examples/luacached.service
bin=$(realpath "${1:-build/luacached}")
fail() { echo "check_service: $unit: $*" >&2; exit 1; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (Debian package systemd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/luacached|$bin|" "$unit" >"$tmp/luacached.service"
out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$tmp/luacached.service" 2>&1) ||
    fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"

required=(
    '^ExecReload=/bin/kill -HUP \$MAINPID$'
    '^DynamicUser=yes$'
    '^ProtectSystem=strict$'
    '^ProtectHome=yes$'
    '^PrivateTmp=yes$'
    '^NoNewPrivileges=yes$'
    '^RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX$'
    '^MemoryDenyWriteExecute=yes$'
    '^ReadOnlyPaths=/etc/luacached$'
    '^LoadCredential=redis-url:'
    '^LoadCredential=requirepass:'
)
for re in "${required[@]}"; do
    grep -qE "$re" "$unit" || fail "no line matching $re"
done

# ExecStart with its continuation lines joined
exec_start=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" | tr -d '\\\n')
help=$("$bin" --help)
for flag in $(grep -oE -- '--[a-z0-9-]+' <<<"$exec_start"); do
    grep -qE -- "^\s+$flag\b" <<<"$help" || fail "ExecStart uses $flag, which luacached --help does not list"
done
grep -q -- '--redis-file %d/redis-url' <<<"$exec_start" || fail "ExecStart does not read the Redis URL from its credential"
echo "check_service: $unit OK"
