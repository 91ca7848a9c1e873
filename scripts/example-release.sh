#!/usr/bin/env bash
# Regenerates the example release under releases/ from the repo's services.toml, as CI would
# make one: digests.json for every container service (releases/digests.example.json, made-up
# but well-formed digests), then `release create`, signed with the committed TEST KEY
# (releases/test-key.sec). The old example directory is replaced. tests/example_release.rs
# fails when services.toml and the example drift apart; this script is its fix.
#
# `release create` validates the source config, and services.toml names the production env_file
# (/opt/titan/compose/.env.prod), which is not on a developer's machine. So create runs on a
# copy whose env_file is the sample of tests/fixtures/titan.env.sample (mode 0600, as the
# supervisor demands), and the pinned services.toml gets the production path back: only its
# image lines differ from services.toml. Secrets stay ${VAR} references (pinning changes
# nothing else), and only digests.json is signed, so restoring the path leaves the signature valid.
set -euo pipefail
cd "$(dirname "$0")/.."

# a fixed, made-up commit: the example is not built from any commit of this repository
SHA=0123456789abcdef0123456789abcdef01234567
ENV_FILE=/opt/titan/compose/.env.prod

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# digests.json as CI writes it: {"<service>": "<repo>@sha256:<64 hex>"} for every container
# service, the repository as services.toml names it without its tag. The digest is the sha256
# of the image reference as written, so services that run one image share one digest.
python3 - services.toml releases/digests.example.json <<'EOF'
import hashlib, json, sys
try:
    import tomllib
except ImportError:
    sys.exit("example-release: python3 >= 3.11 is needed (tomllib)")
with open(sys.argv[1], "rb") as f:
    services = tomllib.load(f).get("services", {})
def repository(image):
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name
digests = {
    name: f"{repository(svc['image'])}@sha256:{hashlib.sha256(svc['image'].encode()).hexdigest()}"
    for name, svc in services.items()
    if "image" in svc
}
with open(sys.argv[2], "w") as f:
    f.write(json.dumps(digests, indent=2, sort_keys=True) + "\n")
EOF

install -m 0600 tests/fixtures/titan.env.sample "$tmp/env.prod"
line="env_file = \"$ENV_FILE\""
[ "$(grep -cxF "$line" services.toml)" = 1 ] || {
  echo "example-release: services.toml has no line $line" >&2
  exit 1
}
sed "s|^env_file = \"$ENV_FILE\"\$|env_file = \"$tmp/env.prod\"|" services.toml >"$tmp/services.toml"

dir=$(cargo run --quiet --locked --bin titan-supervisor -- release create \
  --config "$tmp/services.toml" --digests releases/digests.example.json --sha "$SHA" \
  --sign releases/test-key.sec --out "$tmp/out")
sed -i "s|^env_file = \"$tmp/env.prod\"\$|$line|" "$dir/services.toml"
grep -qxF "$line" "$dir/services.toml" || {
  echo "example-release: $dir/services.toml: env_file not restored" >&2
  exit 1
}

# the old example out, the new one in
find releases -mindepth 1 -maxdepth 1 -type d -name '[0-9]*T[0-9]*Z-*' -exec rm -rf {} +
mv "$dir" releases/
echo "releases/$(basename "$dir")"
