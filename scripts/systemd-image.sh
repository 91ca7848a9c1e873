#!/usr/bin/env bash
# The test image with a real systemd as PID 1 (tests/systemd_unit.rs): a Debian rootfs of the
# host's own release, made by mmdebstrap from the host's apt mirror and cached (the build takes
# about 20 s), imported into the private dockerd of scripts/docker-env.sh; its name is added to
# DIR/env as TITAN_TEST_SYSTEMD_IMAGE. The host's release, so the test binaries (linked against
# the host's glibc) run inside.
#
#   scripts/systemd-image.sh DIR        DIR: the one `scripts/docker-env.sh start` set up
#
# TITAN_TEST_CACHE sets the cache directory (default /var/tmp/titan-test-cache).
set -euo pipefail

dir=${1:?usage: scripts/systemd-image.sh DIR}
packages=systemd,systemd-sysv,dbus,procps
# shellcheck source=/dev/null
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
cache=${TITAN_TEST_CACHE:-/var/tmp/titan-test-cache}
tar="$cache/systemd-$suite-$(printf '%s' "$packages" | sha256sum | cut -c1-12).tar"

# The first Debian mirror apt uses here (deb822 sources, else the one-line format).
mirror() {
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "systemd-image: no Debian mirror in the apt sources" >&2; return 1; }
  echo "$uri"
}

if [ ! -s "$tar" ]; then
  mkdir -p "$cache"
  # the output's name must end in .tar: mmdebstrap picks the format from it
  partial="$cache/partial-$$.tar"
  trap 'rm -f "$partial"' EXIT
  mmdebstrap --quiet --variant=apt --include="$packages" "$suite" "$partial" "$(mirror)"
  mv "$partial" "$tar"
fi
image="titan-systemd-test:$suite"
DOCKER_HOST="unix://$dir/docker.sock" DOCKER_CONFIG="$dir/cli" /usr/bin/docker import "$tar" "$image" >/dev/null
echo "export TITAN_TEST_SYSTEMD_IMAGE=$image" >>"$dir/env"
