#!/usr/bin/env bash
# Regenerates the committed man page and shell completions from the CLI definition (src/cli.rs)
# with the built binary: doc/titan-supervisor.1, completions/titan-supervisor.bash,
# completions/_titan-supervisor (zsh) and completions/titan-supervisor.fish. tests/generated.rs
# fails when a committed copy differs from what the binary prints; run this after changing the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q --bin titan-supervisor

# each file is written whole or not at all: a failed run leaves the committed copy as it was
generate() {
  local out=$1
  shift
  cargo run -q --bin titan-supervisor -- "$@" > "$out.tmp"
  mv "$out.tmp" "$out"
  echo "wrote $out"
}

generate doc/titan-supervisor.1 man
generate completions/titan-supervisor.bash completions bash
generate completions/_titan-supervisor completions zsh
generate completions/titan-supervisor.fish completions fish
