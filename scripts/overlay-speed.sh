#!/usr/bin/env bash
# The overlay's speed against the ffmpeg CLI re-encoding the same clip (docs/visual.md, "Speed"):
# wall time of `coinfer CLIP --overlay OUT.mp4` (model and overlay together), of `coinfer CLIP` (the model
# alone) and of `ffmpeg -i CLIP -c:v libx264 -preset veryfast OUT.mp4`, alternated RUNS times on the bundled
# sample and on a 1080p30 H.264 clip made from it. Prints one line per clip: the median of each and the
# ratios of the overlay run to ffmpeg and to the model alone.
#
# The binary is $COINFER if set, else target/release/coinfer. RUNS defaults to 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COINFER:-target/release/coinfer}
runs=${RUNS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ffmpeg -hide_banner -loglevel error -nostdin -y -i samples/sports2d-demo.mp4 \
  -vf scale=1920:1080 -c:v libx264 -preset veryfast -c:a copy "$tmp/clip1080.mp4"

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for clip in samples/sports2d-demo.mp4 "$tmp/clip1080.mp4"; do
  : >"$tmp/c"
  : >"$tmp/m"
  : >"$tmp/f"
  for _ in $(seq "$runs"); do
    seconds "$bin" --no-progress "$clip" --overlay "$tmp/o.mp4" >>"$tmp/c"
    seconds "$bin" --no-progress "$clip" >>"$tmp/m"
    seconds ffmpeg -nostdin -y -loglevel error -i "$clip" -c:v libx264 -preset veryfast "$tmp/f.mp4" >>"$tmp/f"
  done
  c=$(median <"$tmp/c")
  m=$(median <"$tmp/m")
  f=$(median <"$tmp/f")
  printf '%s: coinfer --overlay %.2f s, coinfer alone %.2f s, ffmpeg libx264 veryfast %.2f s; overlay/ffmpeg %.2f, overlay/alone %.2f (median of %d)\n' \
    "$(basename "$clip")" "$c" "$m" "$f" "$(echo "$c / $f" | bc -l)" "$(echo "$c / $m" | bc -l)" "$runs"
done
