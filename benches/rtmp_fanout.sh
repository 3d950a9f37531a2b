#!/usr/bin/env bash
# Fan-out bench: a 50 Mbit/s MPEG-TS pushed over SRT into `lunora`, which sends it to 4 RTMP
# destinations (nginx-rtmp on loopback) and offers it on its SRT output, against
# ffmpeg doing the same with `-c copy` (4 FLV/RTMP outputs + an SRT listener output) in the
# same run. Prints CPU seconds and peak RSS of each, and the ratios lunora / ffmpeg
# (targets: CPU <= 0.8, RSS <= 0.5). Loopback only; every process is stopped on exit.
#   bash benches/rtmp_fanout.sh [seconds]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED=${1:-20}
. benches/common.sh
make_source $((SECONDS_MEASURED + 10))

start_nginx 64

IN=$(port); OUT=$(port); HTTP=$(port)
{
  printf '[http]\nlisten = "127.0.0.1:%s"\n[[channels]]\nid = "bench"\nmode = "single"\n' "$HTTP"
  printf '[[channels.inputs]]\nid = "in"\ntype = "srt"\nlisten = "127.0.0.1:%s"\nlatency_ms = 200\n' "$IN"
  printf '[[channels.outputs]]\nid = "out"\ntype = "srt"\nmode = "listener"\nlisten = "127.0.0.1:%s"\nlatency_ms = 200\n' "$OUT"
  for n in 1 2 3 4; do
    printf '[[channels.outputs]]\nid = "rtmp%s"\ntype = "rtmp"\nurl = "rtmp://127.0.0.1:%s/live"\nstream_key = "lunora%s"\nautostart = true\n' "$n" "$RTMP" "$n"
  done
} > "$WORK/lunora.toml"
LUNORA_STATE_DIR="$WORK/state" "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
PIDS+=($!); LUNORA_PID=$!
sleep 1
read -r LUNORA_CPU LUNORA_RSS < <(measure lunora "$LUNORA_PID" "$IN" "$OUT")
api_get /api/v1/channels/bench | python3 -c '
import json, sys
c = json.load(sys.stdin)
for o in c["outputs"]:
    print("  lunora %s: %s, %.0f Mbit sent, dropped frames %d" % (o["id"], o["state"], o["bytes_total"] * 8 / 1e6, o["dropped_frames_total"]), file=sys.stderr)
i = c["inputs"][0]
print("  lunora input: %s, %d video frames" % (i["state"], i["frames_total"]["video"]), file=sys.stderr)'
grep -E "WARN|ERROR" "$WORK/lunora.log" | head -5 >&2 || true
kill -9 "$LUNORA_PID"

IN=$(port); OUT=$(port)
# ffmpeg's tee muxer cannot stream-copy H.264 from MPEG-TS into FLV (5.1 keeps the TS codec tag
# and every FLV slave fails its header), so ffmpeg gets five outputs of its own: the same work.
OUTPUTS=()
for n in 1 2 3 4; do OUTPUTS+=(-map 0 -c copy -f flv "rtmp://127.0.0.1:$RTMP/live/ffmpeg$n"); done
OUTPUTS+=(-map 0 -c copy -f mpegts "srt://127.0.0.1:$OUT?mode=listener&latency=200000&pkt_size=1316")
ffmpeg -v error -i "srt://127.0.0.1:$IN?mode=listener&latency=200000" "${OUTPUTS[@]}" 2>"$WORK/ffmpeg.log" &
PIDS+=($!); FFMPEG_PID=$!
sleep 0.5
read -r FFMPEG_CPU FFMPEG_RSS < <(measure ffmpeg "$FFMPEG_PID" "$IN" "$OUT")
if [ -s "$WORK/ffmpeg.log" ]; then sed 's/^/  ffmpeg: /' "$WORK/ffmpeg.log" | head -5 >&2; fi

python3 - "$LUNORA_CPU" "$FFMPEG_CPU" "$LUNORA_RSS" "$FFMPEG_RSS" <<'PY'
import sys
lc, fc, lr, fr = map(float, sys.argv[1:])
print(f"CPU time ratio lunora / ffmpeg: {lc / fc:.2f} (target <= 0.8)" if fc > 0 else "ffmpeg used no measurable CPU")
print(f"peak RSS ratio lunora / ffmpeg: {lr / fr:.2f} (target <= 0.5): lunora {lr/1024:.1f} MiB, ffmpeg {fr/1024:.1f} MiB")
PY
