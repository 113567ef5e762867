#!/usr/bin/env bash
# Regenerate the README's pictures from a real run on the bundled sample: one frame of the labelled
# video (`--overlay`) and the timeline (`--timeline`), so the README shows what the tool draws, never a
# mock-up. Writes docs/img/overlay-frame.jpg and docs/img/timeline.svg (and .png).
#
# The binary is $COINFER if set, else target/release/coinfer (built here if missing). Needs the ffmpeg
# CLI to pick the frame.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${COINFER:-target/release/coinfer}
if [ -z "${COINFER:-}" ] && [ ! -x "$bin" ]; then
  cargo build --release >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p docs/img

# One run makes the video and the SVG timeline; the sample's second label, late in the clip, is on frame 200.
COINFER_WEIGHTS_DIR=weights "$bin" --no-progress samples/sports2d-demo.mp4 \
  --overlay "$tmp/labelled.mp4" --timeline docs/img/timeline.svg --jsonl "$tmp/records.jsonl" >/dev/null
# The PNG timeline, from a second run (one picture per run).
COINFER_WEIGHTS_DIR=weights "$bin" --no-progress samples/sports2d-demo.mp4 --timeline docs/img/timeline.png >/dev/null
# Half size keeps the picture small in the repository; the panel scales with the frame, so it reads the same.
ffmpeg -hide_banner -loglevel error -nostdin -y -i "$tmp/labelled.mp4" \
  -vf "select=eq(n\,200),scale=iw/2:-2" -frames:v 1 -q:v 3 docs/img/overlay-frame.jpg
echo "readme-pictures: wrote docs/img/overlay-frame.jpg, docs/img/timeline.svg, docs/img/timeline.png" >&2
