#!/usr/bin/env bash
# End-to-end relay bench: a 50 Mbit/s MPEG-TS (H.264 CBR made by ffmpeg) pushed over SRT through
# `lunora` (analyse + demux + re-mux + SRT out) and through `srt-live-transmit` (pure relay) in
# the same run. Prints CPU seconds, the CPU-time ratio lunora/srt-live-transmit (target <= 1.0)
# and the peak RSS of each. Loopback only; every process is stopped on exit.
#   bash benches/srt_relay.sh [seconds]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED=${1:-20}
. benches/common.sh
make_source $((SECONDS_MEASURED + 8))

IN=$(port); OUT=$(port); HTTP=$(port)
cat > "$WORK/lunora.toml" <<TOML
[http]
listen = "127.0.0.1:$HTTP"
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
TOML
LUNORA_STATE_DIR="$WORK/state" "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
PIDS+=($!); LUNORA_PID=$!
sleep 1
read -r LUNORA_CPU LUNORA_RSS < <(measure lunora "$LUNORA_PID" "$IN" "$OUT")
api_get /api/v1/channels/bench | python3 -c '
import json,sys; c=json.load(sys.stdin); i=c["inputs"][0]; o=c["outputs"][0]
print("lunora: input", i["frames_total"], "tr101290 p1 errors:", sum(v for k,v in i["tr101290"].items() if k in ("ts_sync_loss","sync_byte_error","pat_error","continuity_count_error","pmt_error","pid_error")), "| output dropped frames:", o["dropped_frames_total"])' >&2
kill -9 "$LUNORA_PID"

IN=$(port); OUT=$(port)
srt-live-transmit -q "srt://127.0.0.1:$IN?mode=listener&latency=200" "srt://127.0.0.1:$OUT?mode=listener&latency=200" -chunk:1316 2>/dev/null &
PIDS+=($!); SLT_PID=$!
sleep 0.5
read -r SLT_CPU SLT_RSS < <(measure srt-live-transmit "$SLT_PID" "$IN" "$OUT")

python3 - "$LUNORA_CPU" "$SLT_CPU" "$LUNORA_RSS" "$SLT_RSS" <<'PY'
import sys
lc, sc, lr, sr = map(float, sys.argv[1:])
print(f"CPU time ratio lunora / srt-live-transmit: {lc / sc:.2f} (target <= 1.0)" if sc > 0 else "srt-live-transmit used no measurable CPU")
print(f"peak RSS: lunora {lr/1024:.1f} MiB, srt-live-transmit {sr/1024:.1f} MiB")
PY
