#!/usr/bin/env bash
# The README's quick-start demo command, exactly as printed there, as a newcomer runs it:
# started in a process group of its own (as a terminal would), left to run its deploy tour (a
# good release verified, a bad one rolled back), interrupted once with SIGINT (Ctrl-C) when the
# tour is over, and expected to stop everything and exit 0. A quick start that no longer works
# fails the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

# the first line of the quick start's code block that runs the demo, its comment dropped
cmd=$(awk '/^## Quick start/ { q = 1 } q && /^```/ { if (b) exit; b = 1; next } b && / demo/ { print; exit }' README.md)
cmd=${cmd%%#*}
cmd=$(echo "$cmd" | sed 's/[[:space:]]*$//')
[ -n "$cmd" ] || { echo "readme-demo: no demo command in README.md's quick start" >&2; exit 1; }
echo "== README quick start: $cmd"

# alive and not a zombie (a child that exited but is not waited for yet)
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

out=$(mktemp)
pid=""
stop() {
  [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$out"
}
trap stop EXIT

# a build of the release profile on a fresh clone, then the demo itself
limit=900
setsid bash -c "exec $cmd" >"$out" 2>&1 &
pid=$!
deadline=$((SECONDS + limit))
until grep -q "^The deploy tour is over" "$out"; do
  if grep -q "^The deploy tour failed" "$out"; then
    cat "$out" >&2
    echo "readme-demo: the demo's deploy tour failed" >&2
    exit 1
  fi
  if ! alive "$pid"; then
    cat "$out" >&2
    echo "readme-demo: '$cmd' ended before its deploy tour was over" >&2
    exit 1
  fi
  if ((SECONDS > deadline)); then
    tail -50 "$out" >&2
    echo "readme-demo: the deploy tour was not over within ${limit}s" >&2
    exit 1
  fi
  sleep 0.2
done
kill -INT -- "-$pid"
status=0
deadline=$((SECONDS + 60))
while alive "$pid"; do
  if ((SECONDS > deadline)); then
    echo "readme-demo: the demo did not stop within 60s of SIGINT" >&2
    exit 1
  fi
  sleep 0.1
done
wait "$pid" || status=$?
pid=""
if [ "$status" -ne 0 ] || ! grep -q "Stopped in reverse dependency order" "$out"; then
  cat "$out" >&2
  echo "readme-demo: exit $status after SIGINT, or no stop summary" >&2
  exit 1
fi
grep -E "^(verified|rolled_back|Stopped in reverse|Restarts:|Ran for)" "$out"
echo "readme-demo: ok"
