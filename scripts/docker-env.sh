#!/usr/bin/env bash
# A private Docker test environment under one directory: a dockerd of our own (its own socket,
# data root and exec root, no iptables, no default bridge) beside any other dockerd on the
# host, and Debian's docker-registry on a free 127.0.0.1 port. Never touches
# /var/run/docker.sock.
#
#   scripts/docker-env.sh start DIR            start both, write DIR/env (export lines)
#   scripts/docker-env.sh images DIR BINDIR    build the FROM-scratch images from the static
#                                              binaries in BINDIR, push them, add their
#                                              digests to DIR/env
#   scripts/docker-env.sh restart-daemon DIR   stop dockerd (its containers stop) and start it
#                                              again on the same directories
#   scripts/docker-env.sh stop DIR             remove everything started under DIR
#
# `stop` is idempotent and safe after a partial `start`: it acts only on what DIR records.
# Source DIR/env for DOCKER_HOST, TITAN_TEST_DOCKER_HOST, TITAN_TEST_REGISTRY,
# TITAN_TEST_IMAGE and TITAN_TEST_PID1_IMAGE.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

# Debian's 20.10 CLI with the legacy builder: the one on PATH may be a newer CLI without buildx.
DOCKER_CLI=/usr/bin/docker
# How long the daemon and the registry get to answer, and dockerd to stop.
START_LIMIT=30
STOP_LIMIT=20
# Marks a directory as ours: `stop` removes only a directory that has it.
MARKER=.titan-docker-env

die() {
  echo "docker-env: $*" >&2
  exit 1
}

# The Debian CLI against the private daemon only, with a config dir of its own (no credential
# helpers or contexts from ~/.docker).
dk() {
  DOCKER_HOST="unix://$dir/docker.sock" DOCKER_CONFIG="$dir/cli" DOCKER_BUILDKIT=0 "$DOCKER_CLI" "$@"
}

# Polls `$@` every 50 ms until it succeeds or `limit` seconds pass.
wait_until() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# The pid recorded in a file, if that process still runs and mentions DIR in its command line
# (so a recycled pid is never signalled).
live_pid() {
  local file=$1 pid
  [[ -s "$file" ]] || return 1
  pid=$(tr -dc 0-9 <"$file")
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
  echo "$pid"
}

# Whether a process is gone; a zombie counts as gone (nobody may be reaping the daemons once
# the shell that started them has exited).
gone() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  [[ "${stat##*) }" == Z* ]]
}

# SIGTERM, wait up to `limit` seconds, then SIGKILL.
stop_pid() {
  local pid=$1 limit=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  wait_until "$limit" gone "$pid" || {
    echo "docker-env: pid $pid ignored SIGTERM for ${limit}s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 gone "$pid" || true
  }
}

# Polls `$@` every 50 ms until it succeeds; fails at once if process `pid` dies, or after
# START_LIMIT seconds.
wait_up() {
  local pid=$1
  shift
  local deadline=$((SECONDS + START_LIMIT))
  until "$@" >/dev/null 2>&1; do
    ! gone "$pid" && ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_dockerd() {
  local driver=$1
  mkdir -p "$dir/data"
  echo '{}' >"$dir/daemon.json" # no /etc/docker/daemon.json: its hosts or bridge would clash
  # setsid: a Ctrl-C to the test command reaches our cleanup, which stops dockerd in order
  setsid dockerd -H "unix://$dir/docker.sock" --config-file "$dir/daemon.json" \
    --data-root "$dir/data" --exec-root "$exec_root" --pidfile "$dir/dockerd.pid" \
    --storage-driver "$driver" --iptables=false --ip-masq=false --bridge=none \
    >>"$dir/dockerd.log" 2>&1 </dev/null &
  echo $! >"$dir/dockerd.launched"
  echo "$driver" >"$dir/driver"
  wait_up $! curl -fsS --unix-socket "$dir/docker.sock" http://d/_ping
}

start_registry() {
  local port attempt
  for attempt in 1 2 3; do
    port=$(free_port)
    mkdir -p "$dir/registry"
    cat >"$dir/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    setsid docker-registry serve "$dir/registry.yml" >>"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/registry.pid"
    if wait_up $! curl -fsS "http://127.0.0.1:$port/v2/"; then
      echo "$port" >"$dir/registry.port"
      return 0
    fi
    # the port was taken between our probe and its bind: stop it and try another
    local pid
    pid=$(live_pid "$dir/registry.pid" "$dir") && stop_pid "$pid" 5
  done
  return 1
}

cmd_start() {
  [[ -e "$dir/$MARKER" ]] && die "$dir already holds an environment: stop it first"
  mkdir -p "$dir/cli"
  touch "$dir/$MARKER"
  # containerd's socket lives under the exec root: Unix socket paths are limited to 108 bytes
  ((${#dir} < 80)) || die "$dir is too long for the daemon's socket path"
  exec_root=$(mktemp -d /tmp/tdXXXX)
  echo "$exec_root" >"$dir/exec-root"
  if ! start_dockerd overlay2; then
    echo "docker-env: dockerd did not start with overlay2, trying vfs (see $dir/dockerd.log)" >&2
    stop_daemon
    unmount_under "$dir/data"
    unmount_under "$exec_root"
    rm -rf "$dir/data" "$dir/docker.sock"
    start_dockerd vfs || die "dockerd did not answer /_ping within ${START_LIMIT}s: $(tail -5 "$dir/dockerd.log")"
  fi
  start_registry || die "docker-registry did not answer /v2/: $(tail -5 "$dir/registry.log")"
  local port
  port=$(cat "$dir/registry.port")
  cat >"$dir/env" <<EOF
export DOCKER_HOST=unix://$dir/docker.sock
export DOCKER_CONFIG=$dir/cli
export TITAN_TEST_DOCKER_HOST=unix://$dir/docker.sock
export TITAN_TEST_REGISTRY=127.0.0.1:$port
EOF
  echo "docker-env: dockerd $(dk version -f '{{.Server.Version}}') ($(dk info -f '{{.Driver}}')) on $dir/docker.sock, registry on 127.0.0.1:$port"
}

# Builds docker/DOCKERFILE with `files` copied from BINDIR as the only context, tags it
# REGISTRY/NAME:test, pushes it and prints the pinned reference REGISTRY/NAME@sha256:...
build_push() {
  local name=$1 dockerfile=$2 bindir=$3
  shift 3
  local ctx="$dir/ctx-$name" ref digest f
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$repo/docker/$dockerfile" "$ctx/Dockerfile"
  for f in "$@"; do
    cp "$bindir/$f" "$ctx/$f"
  done
  ref="$registry/$name:test"
  dk build -q -t "$ref" "$ctx" >/dev/null
  digest=$(dk push "$ref" | sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p')
  [[ -n "$digest" ]] || die "no digest in the output of docker push $ref"
  rm -rf "$ctx"
  echo "$registry/$name@$digest"
}

cmd_images() {
  local bindir=${1:?usage: docker-env.sh images DIR BINDIR}
  [[ -s "$dir/env" ]] || die "$dir has no environment: start it first"
  registry=127.0.0.1:$(cat "$dir/registry.port")
  local testsvc pid1
  testsvc=$(build_push titan-testsvc testsvc.Dockerfile "$bindir" titan-testsvc)
  pid1=$(build_push titan-pid1 pid1.Dockerfile "$bindir" titan-supervisor titan-testsvc)
  cat >>"$dir/env" <<EOF
export TITAN_TEST_IMAGE=$testsvc
export TITAN_TEST_PID1_IMAGE=$pid1
EOF
  echo "docker-env: pushed $testsvc"
  echo "docker-env: pushed $pid1"
}

# Unmounts everything mounted at or below `root`, deepest first.
unmount_under() {
  local mnt
  awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; done
}

# dockerd and the containerd it started, in that order; whatever of them still runs.
stop_daemon() {
  local pid
  if pid=$(live_pid "$dir/dockerd.pid" "$dir") || pid=$(live_pid "$dir/dockerd.launched" "$dir"); then
    stop_pid "$pid" "$STOP_LIMIT"
  fi
  [[ -n "$exec_root" ]] || return 0
  if pid=$(live_pid "$exec_root/containerd/containerd.pid" "$exec_root"); then
    stop_pid "$pid" 5
  fi
  # a daemon that died with containers running leaves them and their shims behind
  local runc_root="$exec_root/runtime-runc/moby" id
  if [[ -d "$runc_root" ]]; then
    for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
      runc --root "$runc_root" delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  for pid in $(pgrep -f -- "containerd-shim.* -address $exec_root/" || true); do
    stop_pid "$pid" 5
  done
}

cmd_stop() {
  [[ -e "$dir" ]] || return 0
  rmdir "$dir" 2>/dev/null && return 0 # empty: `start` never ran
  [[ -e "$dir/$MARKER" ]] || die "$dir was not made by docker-env.sh start: leaving it alone"
  exec_root=""
  [[ -s "$dir/exec-root" ]] && exec_root=$(cat "$dir/exec-root")
  case "$exec_root" in /tmp/td????) ;; *) exec_root="" ;; esac
  if [[ -S "$dir/docker.sock" ]] && curl -fsS -m 5 --unix-socket "$dir/docker.sock" http://d/_ping >/dev/null 2>&1; then
    local ids
    ids=$(dk ps -aq 2>/dev/null || true)
    [[ -z "$ids" ]] || dk rm -f $ids >/dev/null 2>&1 || true
    dk network prune -f >/dev/null 2>&1 || true
    dk volume prune -f >/dev/null 2>&1 || true
  fi
  stop_daemon
  local pid
  if pid=$(live_pid "$dir/registry.pid" "$dir"); then
    stop_pid "$pid" 5
  fi
  # mounts the daemon left behind (netns/default, overlay layers, its data root)
  [[ -z "$exec_root" ]] || unmount_under "$exec_root"
  unmount_under "$dir"
  [[ -n "$exec_root" ]] && rm -rf "$exec_root"
  rm -rf "$dir"
}

# dockerd stopped (as a package upgrade or `systemctl restart docker` would: its containers
# stop with it) and started again on the same directories; the registry keeps running.
cmd_restart_daemon() {
  [[ -e "$dir/$MARKER" && -s "$dir/driver" ]] || die "$dir holds no running environment"
  exec_root=$(cat "$dir/exec-root")
  stop_daemon
  start_dockerd "$(cat "$dir/driver")" || die "dockerd did not come back: $(tail -5 "$dir/dockerd.log")"
}

main() {
  local cmd=${1:-} arg=${2:-}
  [[ -n "$cmd" && -n "$arg" ]] || die "usage: docker-env.sh start|images|restart-daemon|stop DIR [BINDIR]"
  [[ "$arg" = /* ]] || arg="$PWD/$arg"
  dir=$arg
  shift 2
  case "$cmd" in
    start) cmd_start ;;
    images) cmd_images "$@" ;;
    stop) cmd_stop ;;
    restart-daemon) cmd_restart_daemon ;;
    *) die "unknown command $cmd (start, images, stop, restart-daemon)" ;;
  esac
}

main "$@"
