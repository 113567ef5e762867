#!/usr/bin/env bash
# Regenerate the README's example records from a real run on the bundled sample, so the README never
# shows made-up output. Rewrites the block between the readme-example markers in README.md in place;
# with --print, writes the block to stdout instead.
#
# The run is `coinfer samples/sports2d-demo.mp4` from the repository root, with COINFER_WEIGHTS_DIR=weights
# so that the weights path in the meta record is relative rather than this machine's checkout path.
# The binary is $COINFER if set, else target/release/coinfer (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${COINFER:-target/release/coinfer}
if [ -z "${COINFER:-}" ] && [ ! -x "$bin" ]; then
  cargo build --release >&2
fi

records=$(COINFER_WEIGHTS_DIR=weights "$bin" --no-progress samples/sports2d-demo.mp4)
n=$(printf '%s\n' "$records" | wc -l)
steps=$((n - 2))
if [ "$steps" -lt 5 ]; then
  echo "readme-example: expected at least 5 step records, got $steps" >&2
  exit 1
fi

# The meta record, the first two and the last two step records, and the summary; the step records in
# between are replaced by one "…" line.
block=$(
  printf '%s\n' "$records" | awk -v n="$n" -v left=$((steps - 4)) '
    NR <= 3 || NR >= n - 2 { print; next }
    NR == 4 { print "… (" left " more step records)" }'
)

if [ "${1:-}" = "--print" ]; then
  printf '%s\n' "$block"
  exit 0
fi

start='<!-- readme-example:start -->'
end='<!-- readme-example:end -->'
grep -qF "$start" README.md && grep -qF "$end" README.md || { echo "readme-example: markers missing in README.md" >&2; exit 1; }
tmp=$(mktemp)
BLOCK="$block" awk -v start="$start" -v end="$end" '
  $0 == start { print; print "```json"; print ENVIRON["BLOCK"]; print "```"; skip = 1; next }
  $0 == end { skip = 0 }
  !skip { print }' README.md > "$tmp"
mv "$tmp" README.md
echo "readme-example: README.md updated ($steps step records, $((steps - 4)) elided)" >&2
