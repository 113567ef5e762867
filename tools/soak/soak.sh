#!/usr/bin/env bash
# Soak test, run by hand (docs/testing.md, "Soak"): a long synthetic y4m stream through one model, the
# process's resident memory sampled as it runs. Memory must stay flat after the warm-up.
#
#   tools/soak/soak.sh MODEL [SECONDS] [-- COINFER-OPTIONS...]
#
# MODEL: a built-in model name. SECONDS: length of the stream in video time (default 3600). Options after
# `--` go to coinfer (e.g. `--weights FILE --threads 1`). Environment: COINFER (the binary, default
# target/release/coinfer), FPS (source frame rate, default 30), SIZE (default 320x240), EVERY (seconds
# between memory samples, default 5), OUT (folder for the outputs, default soak-out/).
#
# Writes OUT/MODEL.rss.csv (wall seconds, VmRSS kB, VmHWM kB), OUT/MODEL.jsonl (the records) and
# OUT/MODEL.summary.txt; prints one line: steps, wall time, RSS after warm-up, at the end and its peak,
# and the growth from warm-up to end in percent. The warm-up ends at the first sample after a tenth of
# the run (the network's state, the pools and the encoders' buffers are all allocated by then).
set -euo pipefail

model=${1:?usage: soak.sh MODEL [SECONDS] [-- COINFER-OPTIONS...]}
shift
seconds=3600
if [[ $# -gt 0 && $1 != -- ]]; then seconds=$1; shift; fi
[[ ${1:-} == -- ]] && shift
coinfer=${COINFER:-target/release/coinfer}
fps=${FPS:-30}
size=${SIZE:-320x240}
every=${EVERY:-5}
out=${OUT:-soak-out}
mkdir -p "$out"

rss_csv="$out/$model.rss.csv"
echo "wall_s,rss_kb,hwm_kb" >"$rss_csv"

# A moving test pattern with noise, so that no two frames are equal (the decoder, the resampler and
# the network all see a real stream).
ffmpeg -v error -f lavfi -i "testsrc2=size=$size:rate=$fps:duration=$seconds,noise=alls=20:allf=t" \
    -pix_fmt yuv420p -f yuv4mpegpipe - |
    "$coinfer" --model "$model" "$@" - >"$out/$model.jsonl" 2>"$out/$model.stderr" &
pipeline=$!

# The coinfer process of the pipeline (the last one started with this model's output).
pid=""
for _ in $(seq 100); do
    pid=$(pgrep -n -f -- "$coinfer --model $model" || true)
    [[ -n $pid ]] && break
    sleep 0.1
done
[[ -n $pid ]] || { echo "soak: coinfer did not start" >&2; exit 1; }

start=$(date +%s.%N)
while kill -0 "$pid" 2>/dev/null; do
    status=$(cat "/proc/$pid/status" 2>/dev/null) || break
    rss=$(awk '/^VmRSS:/ {print $2}' <<<"$status")
    hwm=$(awk '/^VmHWM:/ {print $2}' <<<"$status")
    now=$(date +%s.%N)
    [[ -n $rss ]] && printf '%.1f,%s,%s\n' "$(echo "$now - $start" | bc)" "$rss" "$hwm" >>"$rss_csv"
    sleep "$every"
done
wait "$pipeline" || { echo "soak: the pipeline failed, see $out/$model.stderr" >&2; exit 1; }

awk -F, -v model="$model" -v records="$(grep -c "\"type\":\"step\"" "$out/$model.jsonl" || true)" '
    NR == 1 { next }
    { t[++n] = $1; r[n] = $2; if ($2 > peak) peak = $2 }
    END {
        if (n < 3) { print "soak: too few samples"; exit 1 }
        w = int(n / 10) + 1                      # the first sample after a tenth of the run
        growth = (r[n] - r[w]) * 100 / r[w]
        after = 0; for (i = w; i <= n; i++) if (r[i] > after) after = r[i]
        printf "%s: %d step records in %.0f s wall, %d samples; RSS after warm-up %.1f MB, at end %.1f MB, peak after warm-up %.1f MB (%+.2f %%), peak overall %.1f MB; growth warm-up to end %+.2f %%\n",
            model, records, t[n], n, r[w] / 1024, r[n] / 1024, after / 1024, (after - r[w]) * 100 / r[w], peak / 1024, growth
    }' "$rss_csv" | tee "$out/$model.summary.txt"
