#!/usr/bin/env bash
# Slate bench: a 1080i29.97 (59.94 fields) H.264 + AAC feed over SRT into `lunora`, which
# loses it: the slate (a card at the feed's format, silence) goes on air. Prints the CPU the
# slate costs over a measured stretch against ffmpeg encoding the same picture (a still card,
# 1080i, x264 veryfast, 1.5 Mbit/s, AAC silence) in real time in the same run, and lunora's RSS
# before the slate, while it runs and after the feed is back (the pipeline freed).
#   bash benches/engine_slate.sh [seconds]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED=${1:-20}
. benches/common.sh

echo "generating a 1080i29.97 source ..." >&2
ffmpeg -v error -f lavfi -i "testsrc2=size=1920x1080:rate=30000/1001" -f lavfi -i "sine=frequency=1000:sample_rate=48000" \
  -t 12 -c:v libx264 -preset ultrafast -flags +ildct+ilme -x264opts tff=1 -b:v 8M -g 30 \
  -c:a aac -f mpegts "$WORK/src.ts"

IN=$(port); OUT=$(port); HTTP=$(port)
cat > "$WORK/lunora.toml" <<CONF
[http]
listen = "127.0.0.1:$HTTP"
[slate]
after_ms = 1000
[[channels]]
id = "bench"
mode = "single"
[[channels.inputs]]
id = "in"
type = "srt"
listen = "127.0.0.1:$IN"
latency_ms = 200
[[channels.outputs]]
id = "out"
type = "srt"
mode = "listener"
listen = "127.0.0.1:$OUT"
latency_ms = 200
CONF
LUNORA_STATE_DIR="$WORK/state" "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
PIDS+=($!); LUNORA_PID=$!
sleep 1
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
threads() { ls "/proc/$1/task" | wc -l; }
push() {
  ffmpeg -v error -re -i "$WORK/src.ts" -c copy -f mpegts "srt://127.0.0.1:$IN?pkt_size=1316&latency=200000"
}
srt-live-transmit -q "srt://127.0.0.1:$OUT?latency=200" file:///dev/null 2>/dev/null &
PIDS+=($!)
push
RSS_BEFORE=$(rss_kib "$LUNORA_PID"); THREADS_BEFORE=$(threads "$LUNORA_PID")
# input_loss (500 ms) + after_ms + the pipeline's start.
sleep 4
grep -q "slate on air" "$WORK/lunora.log" || { echo "the slate did not go on air:" >&2; tail -5 "$WORK/lunora.log" >&2; exit 1; }
START=$(cpu_ticks "$LUNORA_PID")
sleep "$SECONDS_MEASURED"
END=$(cpu_ticks "$LUNORA_PID")
RSS_SLATE=$(rss_kib "$LUNORA_PID"); THREADS_SLATE=$(threads "$LUNORA_PID")
# The feed back: the slate's pipeline should be gone, its CPU with it.
push &
PIDS+=($!); PUSHER=$!
sleep 4
RELAY_START=$(cpu_ticks "$LUNORA_PID")
sleep 5
RELAY_END=$(cpu_ticks "$LUNORA_PID")
wait "$PUSHER"
sleep 1
RSS_AFTER=$(rss_kib "$LUNORA_PID"); THREADS_AFTER=$(threads "$LUNORA_PID")
grep -q "slate off air" "$WORK/lunora.log" || { echo "the slate did not leave the air" >&2; exit 1; }
kill -9 "$LUNORA_PID"

/usr/bin/time -f "%U %S" -o "$WORK/ffmpeg.time" ffmpeg -y -v error -re \
  -f lavfi -i "color=c=0x1d2733:size=1920x1080:rate=30000/1001" -f lavfi -i "anullsrc=r=48000:cl=stereo" \
  -t "$SECONDS_MEASURED" -c:v libx264 -preset veryfast -tune zerolatency -b:v 1500k -g 60 \
  -flags +ildct+ilme -x264opts tff=1 -pix_fmt yuv420p -c:a aac -b:a 128k -f mpegts /dev/null

echo "lunora threads: $THREADS_BEFORE before the slate, $THREADS_SLATE with it, $THREADS_AFTER after" >&2
echo "lunora CPU relaying the feed after the slate: $(python3 -c "print(f'{($RELAY_END-$RELAY_START)/$TICKS/5:.2f}')") s per s" >&2
python3 - "$START" "$END" "$TICKS" "$SECONDS_MEASURED" "$WORK/ffmpeg.time" "$RSS_BEFORE" "$RSS_SLATE" "$RSS_AFTER" <<'PY'
import sys
start, end, ticks, seconds = (float(v) for v in sys.argv[1:5])
user, system = (float(v) for v in open(sys.argv[5]).read().split()[-2:])
before, slate, after = (int(v) / 1024 for v in sys.argv[6:9])
lunora = (end - start) / ticks
ffmpeg = user + system
print(f"slate 1080i29.97: lunora {lunora:.2f} s CPU over {seconds:.0f} s, ffmpeg {ffmpeg:.2f} s: ratio {lunora / ffmpeg:.2f}")
print(f"lunora RSS: {before:.1f} MiB before the slate, {slate:.1f} MiB with it, {after:.1f} MiB after the feed is back")
PY
