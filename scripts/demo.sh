#!/usr/bin/env bash
# The first thing to run: install what is missing, build, and stream the bundled sample through the
# default model. JSON Lines go to stdout; extra arguments are passed to coinfer (e.g. -k 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release
exec cargo run --release --quiet -- samples/sports2d-demo.mp4 "$@"
