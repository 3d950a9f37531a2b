#!/usr/bin/env bash
# Content-alignment bench: the same 1080i29.97 10 Mbit/s H.264 + AAC feed pushed over SRT into
# a main/backup channel twice, once with `aligned_clock = "content"` (every picture of both
# inputs decoded and fingerprinted) and once with `switch = "cut"` (relay only). Prints the CPU
# alignment adds (the difference) against ffmpeg decoding the same two feeds to 160x90 in real
# time in the same run (`ffmpeg -re -i … -vf scale=160:90 -f null -`, two at once).
#   bash benches/content_alignment.sh [seconds]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED=${1:-20}
. benches/common.sh

echo "generating a 1080i29.97 10 Mbit/s source ..." >&2
ffmpeg -v error -f lavfi -i "testsrc2=size=1920x1080:rate=30000/1001" -f lavfi -i "sine=frequency=1000:sample_rate=48000" \
  -t 10 -c:v libx264 -preset ultrafast -flags +ildct+ilme -x264opts tff=1 -b:v 10M -g 30 \
  -c:a aac -f mpegts "$WORK/src.ts"

# measure FAILOVER_LINES: lunora's CPU seconds per second over the measured stretch.
measure() {
  local main backup http pid start end
  main=$(port); backup=$(port); http=$(port)
  cat > "$WORK/lunora.toml" <<CONF
[http]
listen = "127.0.0.1:$http"
[slate]
enabled = false
[[channels]]
id = "bench"
mode = "main-backup"
[channels.failover]
$1
[[channels.inputs]]
id = "main"
role = "main"
type = "srt"
listen = "127.0.0.1:$main"
latency_ms = 200
[[channels.inputs]]
id = "backup"
role = "backup"
type = "srt"
listen = "127.0.0.1:$backup"
latency_ms = 200
CONF
  rm -rf "$WORK/state"
  LUNORA_STATE_DIR="$WORK/state" "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
  pid=$!; PIDS+=($pid)
  sleep 1
  for p in "$main" "$backup"; do
    ffmpeg -v error -re -stream_loop -1 -i "$WORK/src.ts" -c copy -f mpegts "srt://127.0.0.1:$p?pkt_size=1316&latency=200000" &
    PIDS+=($!)
  done
  sleep 6
  start=$(cpu_ticks "$pid")
  sleep "$SECONDS_MEASURED"
  end=$(cpu_ticks "$pid")
  kill -9 "$pid" "${PIDS[@]: -2}" 2>/dev/null || true
  wait 2>/dev/null || true
  python3 -c "print(f'{($end - $start) / $TICKS / $SECONDS_MEASURED:.3f}')"
}

RELAY=$(measure 'switch = "cut"')
ALIGNED=$(measure $'switch = "aligned"\naligned_clock = "content"')
grep -q "content alignment" "$WORK/lunora.log" || { echo "the pictures never related the inputs:" >&2; tail -5 "$WORK/lunora.log" >&2; exit 1; }

for _ in 1 2; do
  /usr/bin/time -f "%U %S" -o "$WORK/ffmpeg.$_.time" ffmpeg -y -v error -re -t "$SECONDS_MEASURED" -i "$WORK/src.ts" \
    -an -vf scale=160:90 -f null - &
done
wait
FFMPEG=$(cat "$WORK"/ffmpeg.*.time | awk -v s="$SECONDS_MEASURED" '{t += $1 + $2} END {printf "%.3f", t / s}')
python3 - "$RELAY" "$ALIGNED" "$FFMPEG" <<'PY'
import sys
relay, aligned, ffmpeg = (float(v) for v in sys.argv[1:])
print(f"lunora relaying two 1080i 10 Mbit/s inputs: {relay:.3f} CPU s/s")
print(f"lunora with aligned_clock = content:         {aligned:.3f} CPU s/s (alignment adds {aligned - relay:.3f})")
print(f"ffmpeg decoding both to 160x90:              {ffmpeg:.3f} CPU s/s")
print(f"ratio (what alignment adds / ffmpeg):        {(aligned - relay) / ffmpeg:.2f}")
PY
