#!/usr/bin/env bash
# Installs the benchmark peers into bench/.peers (git-ignored), touching nothing else on the
# system but the Debian packages they need: PM2 from npm, supervisord from PyPI in a venv, and
# Debian's docker.io, docker-registry and docker-compose for the container workloads.
# Idempotent: a peer already installed is left alone. Writes bench/.peers/versions.txt.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
peers="$here/.peers"
mkdir -p "$peers"
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

apt_install() {
    # Debian packages, only those missing; `apt-get update` once, only if something is needed.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "setup: apt-get install ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
    fi
}

# node + npm for PM2; a Python with venv for supervisord and the harness.
need=()
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
((${#need[@]})) && apt_install "${need[@]}"

# Docker for the container workloads (C1, C2): Debian's dockerd and 20.10 CLI (/usr/bin/docker),
# its registry, docker-compose 1.29 (the peer), curl (scripts/docker-env.sh). docker.io and
# docker-registry start system services when installed unless policy-rc.d forbids it: the
# benchmarks want only the private daemon that scripts/docker-env.sh starts.
need=()
declare -A docker_pkgs=([dockerd]=docker.io [docker-registry]=docker-registry
  [docker-compose]=docker-compose [curl]=curl)
for cmd in "${!docker_pkgs[@]}"; do
    command -v "$cmd" >/dev/null || need+=("${docker_pkgs[$cmd]}")
done
[[ -x /usr/bin/docker ]] || need+=(docker.io)
if ((${#need[@]})); then
    policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
    fi
    apt_install "${need[@]}" || { [[ -z "$policy" ]] || $SUDO rm -f "$policy"; exit 1; }
    [[ -z "$policy" ]] || $SUDO rm -f "$policy"
fi

# PM2 into a local prefix.
if [[ ! -x "$peers/node_modules/.bin/pm2" ]]; then
    echo "setup: npm install pm2 -> $peers"
    npm install --prefix "$peers" --no-audit --no-fund --loglevel=error pm2
fi

# pm2-logrotate (W5) beside it: each session starts it from here as a PM2 module, so no session
# runs `pm2 install` (which would fetch it from npm into every private PM2_HOME).
if [[ ! -f "$peers/node_modules/pm2-logrotate/package.json" ]]; then
    echo "setup: npm install pm2-logrotate -> $peers"
    npm install --prefix "$peers" --no-audit --no-fund --loglevel=error pm2-logrotate
fi

# supervisord into a venv.
if [[ ! -x "$peers/venv/bin/supervisord" ]]; then
    echo "setup: pip install supervisor -> $peers/venv"
    python3 -m venv "$peers/venv"
    "$peers/venv/bin/pip" install --quiet --disable-pip-version-check supervisor
fi

# Record versions (read by bench/run.py).
pm2_version="$(node -p "require('$peers/node_modules/pm2/package.json').version")"
sv_version="$("$peers/venv/bin/supervisord" --version)"
{
    echo "pm2 $pm2_version (node $(node --version))"
    echo "pm2-logrotate $(node -p "require('$peers/node_modules/pm2-logrotate/package.json').version")"
    echo "supervisord $sv_version (python $("$peers/venv/bin/python" -c 'import platform; print(platform.python_version())'))"
    echo "dockerd $(dockerd --version | awk '{print $3}' | tr -d ,)"
    echo "$(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"
} > "$peers/versions.txt"
cat "$peers/versions.txt"
