#!/usr/bin/env bash
# The first thing to run: install what is missing, build, and stream the bundled sample through the
# default model. Only the JSON Lines go to stdout (so `scripts/demo.sh | jq .` works on a fresh machine);
# apt-get's and cargo's chatter goes to stderr. Extra arguments are passed to coinfer (e.g. -k 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >&2
cargo build --release >&2
exec cargo run --release --quiet -- samples/sports2d-demo.mp4 "$@"
