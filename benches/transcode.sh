#!/usr/bin/env bash
# Transcode bench: a broadcast encoder's 1080i59.94 (29.97 interlaced frames/s, H.264 + AAC
# 44.1 kHz) pushed over SRT into `lunora`, whose one RTMP destination to nginx-rtmp sends
# `transcode = "youtube"` (deinterlaced, 720p29.97, keyframe every 2 s, AAC 48 kHz stereo),
# against ffmpeg doing the same transcode (yadif, scale, x264 veryfast/zerolatency, AAC) in the
# same run. Both are measured whole by `/usr/bin/time -v` over the same push; prints CPU
# seconds and peak RSS of each and the CPU ratio lunora / ffmpeg (target <= 1.1), and whether
# each kept up with real time. Loopback only; every process is stopped on exit.
#   bash benches/transcode.sh [seconds]      (default 30)
#   PROFILE=studio-1080 bash benches/transcode.sh   (1080p29.97 instead of 720p)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED=${1:-30}
PROFILE=${PROFILE:-youtube}
. benches/common.sh
case "$PROFILE" in
  youtube) SIZE=1280:720; KBPS=4000 ;;
  studio-1080) SIZE=1920:1080; KBPS=6000 ;;
  *) echo "PROFILE must be youtube or studio-1080" >&2; exit 1 ;;
esac

echo "generating $SECONDS_MEASURED s of 1080i59.94 H.264 (field-coded, TFF) + AAC ..." >&2
ffmpeg -v error -f lavfi -i "testsrc2=size=1920x1080:rate=30000/1001" \
  -f lavfi -i "sine=frequency=1000:sample_rate=44100" -t "$SECONDS_MEASURED" \
  -c:v libx264 -preset ultrafast -flags +ildct+ilme -x264opts tff=1 -pix_fmt yuv420p \
  -g 60 -b:v 12M -c:a aac -ac 2 -f mpegts "$WORK/src.ts"

start_nginx 16

# push PORT: the source in real time to an SRT listener on PORT; waits for the end.
push() { ffmpeg -v error -re -i "$WORK/src.ts" -c copy -f mpegts "srt://127.0.0.1:$1?pkt_size=1316&latency=200000"; }

# report NAME TIME_FILE: "cpu_seconds peak_rss_kib" from /usr/bin/time -v's output.
report() {
  python3 - "$1" "$2" "$SECONDS_MEASURED" <<'PY'
import re, sys
name, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
text = open(path).read()
value = lambda key: float(re.search(re.escape(key) + r": ([0-9.]+)", text).group(1))
cpu = value("User time (seconds)") + value("System time (seconds)")
rss = value("Maximum resident set size (kbytes)")
print(f"{name}: cpu {cpu:.1f} s for {seconds:.0f} s of 1080i ({cpu / seconds:.2f} cores), peak RSS {rss / 1024:.0f} MiB", file=sys.stderr)
print(f"{cpu} {rss}")
PY
}

IN=$(port); HTTP=$(port)
{
  printf '[http]\nlisten = "127.0.0.1:%s"\n' "$HTTP"
  printf '[[channels]]\nid = "bench"\nmode = "single"\n'
  printf '[[channels.inputs]]\nid = "in"\ntype = "srt"\nlisten = "127.0.0.1:%s"\nlatency_ms = 200\n' "$IN"
  printf '[[channels.outputs]]\nid = "yt"\ntype = "rtmp"\npreset = "youtube"\nurl = "rtmp://127.0.0.1:%s/live"\n' "$RTMP"
  printf 'stream_key = "lunora"\nautostart = true\ntranscode = "%s"\n' "$PROFILE"
  printf '[profiles.studio-1080]\nwidth = 1920\nheight = 1080\nvideo_bitrate_kbps = 6000\n'
} > "$WORK/lunora.toml"
LUNORA_STATE_DIR="$WORK/state" /usr/bin/time -v -o "$WORK/lunora.time" \
  "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
TIME_PID=$!; PIDS+=($TIME_PID)
sleep 1
LUNORA_PID=$(pgrep -P "$TIME_PID")
push "$IN"
sleep 2
api_get /api/v1/channels/bench | python3 -c '
import json, sys
c = json.load(sys.stdin)
for t in c["transcodes"]:
    print("  lunora transcode %s: %d frames in, %d out, %d dropped (behind)" % (t["profile"], t["frames_in_total"], t["frames_out_total"], t["frames_dropped_total"]), file=sys.stderr)
o = c["outputs"][0]
print("  lunora destination: %s, %.1f Mbit/s sent" % (o["state"], o["bytes_total"] * 8 / 1e6 / float(sys.argv[1])), file=sys.stderr)' "$SECONDS_MEASURED"
kill -TERM "$LUNORA_PID"; wait "$TIME_PID" || true
read -r LUNORA_CPU _ < <(report lunora "$WORK/lunora.time")

IN=$(port)
# yadif=0: one frame per frame, like the engine's `deinterlace fields=top` at 29.97.
/usr/bin/time -v -o "$WORK/ffmpeg.time" ffmpeg -v error -i "srt://127.0.0.1:$IN?mode=listener&latency=200000" \
  -vf "yadif=0,scale=$SIZE" -r 30000/1001 -c:v libx264 -preset veryfast -tune zerolatency \
  -b:v "${KBPS}k" -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p \
  -c:a aac -b:a 128k -ar 48000 -ac 2 -f flv "rtmp://127.0.0.1:$RTMP/live/ffmpeg" 2>"$WORK/ffmpeg.log" &
TIME_PID=$!; PIDS+=($TIME_PID)
sleep 1
push "$IN"
wait "$TIME_PID" || true
if [ -s "$WORK/ffmpeg.log" ]; then sed 's/^/  ffmpeg: /' "$WORK/ffmpeg.log" | head -5 >&2; fi
read -r FFMPEG_CPU _ < <(report ffmpeg "$WORK/ffmpeg.time")

python3 -c "import sys; l, f = map(float, sys.argv[1:]); print(f'CPU ratio lunora / ffmpeg: {l / f:.2f} (target <= 1.1)')" "$LUNORA_CPU" "$FFMPEG_CPU"
