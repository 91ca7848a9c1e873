#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this kind: installs what the tests need (Debian
# packages), checks formatting and lints, runs every test, and stops whatever it started, even
# on failure. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

started=()   # pids of daemons this script starts; stopped by cleanup
cleanup() {
  local pid
  for pid in "${started[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${started[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

# Debian packages the tests use, by the command each provides.
declare -A packages=([dot]=graphviz)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages the tests use: the official Prometheus parser checks /metrics.
if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "== installing: prometheus-client (PyPI)"
  python3 -m pip install -q --disable-pip-version-check prometheus-client 2>&1 | grep -v "^WARNING: Running pip as" || true
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
set +e
cargo test --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# one closing line for the whole suite
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
