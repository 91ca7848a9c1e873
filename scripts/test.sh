#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this kind: installs what the tests need (Debian
# packages), checks formatting and lints, runs every test, and stops whatever it started, even
# on failure. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

started=()   # pids of daemons this script starts; stopped by cleanup
docker_dir="" # the private Docker environment (scripts/docker-env.sh); stopped by cleanup
policy_made="" # a policy-rc.d this script wrote for the install below; removed by cleanup
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
cleanup() {
  local pid
  for pid in "${started[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${started[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$docker_dir" ]; then
    scripts/docker-env.sh stop "$docker_dir" || true
  fi
  if [ -n "$policy_made" ]; then
    $sudo rm -f "$policy_made"
  fi
}
# exit on a signal, so cleanup runs once, through the EXIT trap, and nothing after it runs
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Debian packages the tests use, by the command each provides (dockerd comes with Debian's
# docker CLI, /usr/bin/docker: the tests use that one, whatever else is on PATH).
declare -A packages=([dot]=graphviz [curl]=curl [dockerd]=docker.io [docker-registry]=docker-registry
  [docker-compose]=docker-compose [minisign]=minisign [nats-server]=nats-server
  [prometheus]=prometheus [promtool]=prometheus [systemd-analyze]=systemd [mmdebstrap]=mmdebstrap [zsh]=zsh [fish]=fish)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
[ -x /usr/bin/docker ] || missing+=(docker.io)
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # docker.io, docker-registry and prometheus start system services when installed, unless
  # policy-rc.d forbids it (it does on these machines): the tests want only their private
  # daemons (and no recommends: prometheus would bring prometheus-node-exporter)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_made=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy_made" >/dev/null
    $sudo chmod +x "$policy_made"
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy_made" ]; then
    $sudo rm -f "$policy_made"
    policy_made=""
  fi
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
# The test images: statically linked binaries FROM scratch (docker/), built with the `static`
# profile (unoptimized: about 45 s here, against 2 min 40 s with the release profile).
echo "== static build for the test images"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --profile static \
  --target x86_64-unknown-linux-gnu --bin titan-testsvc --bin titan-supervisor
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

# The unit file. systemd-analyze exits 0 even for unknown keys, so any output fails; it also
# wants ExecStart's binary to exist: a copy of the unit runs the one just built.
echo "== systemd-analyze verify systemd/titan-supervisor.service"
unit_dir=$(mktemp -d)
built="$target_dir/x86_64-unknown-linux-gnu/static/titan-supervisor"
sed "s#^ExecStart=/usr/local/bin/titan-supervisor #ExecStart=$built #" systemd/titan-supervisor.service \
  >"$unit_dir/titan-supervisor.service"
set +e
verified=$(grep -q "^ExecStart=$built " "$unit_dir/titan-supervisor.service" 2>&1 &&
  systemd-analyze verify "$unit_dir/titan-supervisor.service" 2>&1)
verify=$?
set -e
rm -rf "$unit_dir"
if [ "$verify" -ne 0 ] || [ -n "$verified" ]; then
  echo "systemd-analyze verify failed (exit $verify):"
  echo "$verified"
  exit 1
fi

# A private dockerd and registry for the tests, with the test images pushed (DOCKER_HOST,
# TITAN_TEST_DOCKER_HOST, TITAN_TEST_REGISTRY, TITAN_TEST_IMAGE, TITAN_TEST_PID1_IMAGE).
echo "== private docker environment"
docker_dir=$(mktemp -d /tmp/titan-docker.XXXXXX)
scripts/docker-env.sh start "$docker_dir"
scripts/docker-env.sh images "$docker_dir" "$target_dir/x86_64-unknown-linux-gnu/static"
# a real systemd as PID 1 for the unit's test (TITAN_TEST_SYSTEMD_IMAGE), its rootfs cached
scripts/systemd-image.sh "$docker_dir"
# shellcheck source=/dev/null
. "$docker_dir/env"

echo "== cargo test"
log=$(mktemp)
set +e
cargo test --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# one closing line for the whole suite
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"

# The README's first command, exactly as printed there: a quick start that does not work on a
# fresh clone must not pass.
set +e
scripts/readme-demo.sh
demo=$?
set -e
[ "$status" -ne 0 ] && exit "$status"
exit "$demo"
