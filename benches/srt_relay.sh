#!/usr/bin/env bash
# End-to-end SRT relay bench, loopback only; every process is stopped on exit.
#
# 1. Cost against srt-live-transmit: a 50 Mbit/s MPEG-TS (H.264 CBR made by ffmpeg) pushed over
#    SRT (ffmpeg) through `lunora` (analyse + demux + re-mux + SRT listener out) and through
#    `srt-live-transmit` (pure relay, listener -> listener), pulled by srt-live-transmit, in
#    $ROUNDS paired rounds (lunora then srt-live-transmit, alternating, so that whatever else
#    the machine does hits both alike). Prints each pair's CPU-time ratio lunora/srt-live-transmit,
#    the median ratio (target <= 0.8) and the peak RSS (VmHWM while relaying; target <= 16 MiB)
#    of each, the largest over the rounds.
# 2. Added latency through the box, input datagram to output datagram (benches/srt_latency.py:
#    AF_PACKET capture on `lo` with kernel timestamps, so root or CAP_NET_RAW; skipped
#    otherwise). lunora re-muxes (TS bytes change, PTS keep a constant offset), so frames are
#    matched by PTS; the source has irregular frame intervals so exactly one offset matches.
#    Every SRT latency is $LATENCY_MS (input, output, pusher, puller): the input's receiver
#    holds each packet that long (TSBPD, inherent to SRT), so the figures are printed raw and
#    minus that latency. "start": the frame's first datagram in -> its first datagram out;
#    "after frame end": from the datagram that starts the next frame (a demuxer only knows a
#    video PES of unbounded length has ended then; a packet relay such as srt-live-transmit
#    shows about minus one frame interval there). srt-live-transmit is measured alike as the
#    baseline. Targets: p50 <= 1 ms, p99 <= 5 ms added.
# 3. Cost per channel: 1, 2 and 4 channels each relaying $CHANNEL_MBIT Mbit/s (SRT in -> SRT
#    listener out, one puller each): lunora's CPU (% of one core) and peak RSS.
#
#   bash benches/srt_relay.sh [seconds]     seconds measured per run (default 15)
#   env: ROUNDS (5), LATENCY_MS (20), LATENCY_SECONDS (15), CHANNEL_MBIT (15), LUNORA (binary)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED=${1:-15}
ROUNDS=${ROUNDS:-5}
LATENCY_MS=${LATENCY_MS:-20}
LATENCY_SECONDS=${LATENCY_SECONDS:-15}
CHANNEL_MBIT=${CHANNEL_MBIT:-15}
. benches/common.sh
make_source $((SECONDS_MEASURED + 8))

# The part 2/3 source: 1280x720p30 H.264 CBR at $CHANNEL_MBIT, frame times jittered (each frame
# 0-2016 ticks of 90 kHz late, a pattern that repeats only after 1009 frames).
LONG=$((LATENCY_SECONDS > SECONDS_MEASURED ? LATENCY_SECONDS : SECONDS_MEASURED))
echo "generating $((LONG + 12)) s of 1280x720p30 H.264 at $CHANNEL_MBIT Mbit/s, jittered frame times ..." >&2
ffmpeg -v error -f lavfi -i "testsrc2=size=1280x720:rate=30" -t $((LONG + 12)) \
  -vf "settb=1/90000,setpts=N*3000+2*mod(N*N*7919\,1009)" -fps_mode passthrough -enc_time_base 1/90000 \
  -c:v libx264 -preset ultrafast -g 30 -b:v $((CHANNEL_MBIT * 92 / 100))M -minrate $((CHANNEL_MBIT * 92 / 100))M \
  -maxrate $((CHANNEL_MBIT * 92 / 100))M -bufsize 4M -x264-params nal-hrd=cbr -f mpegts -muxrate "${CHANNEL_MBIT}M" "$WORK/jitter.ts"

# write_config LATENCY_MS IN OUT [IN OUT ...]: $WORK/lunora.toml with one channel per pair.
write_config() {
  local latency=$1; shift
  HTTP=$(port)
  printf '[http]\nlisten = "127.0.0.1:%s"\n' "$HTTP" > "$WORK/lunora.toml"
  local n=0
  while [ $# -gt 0 ]; do
    n=$((n + 1))
    cat >> "$WORK/lunora.toml" <<TOML
[[channels]]
id = "ch$n"
mode = "single"
[[channels.inputs]]
id = "in"
type = "srt"
listen = "127.0.0.1:$1"
latency_ms = $latency
[[channels.outputs]]
id = "out"
type = "srt"
mode = "listener"
listen = "127.0.0.1:$2"
latency_ms = $latency
TOML
    shift 2
  done
}
start_lunora() {
  rm -rf "$WORK/state"
  LUNORA_STATE_DIR="$WORK/state" "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
  LUNORA_PID=$!; PIDS+=("$LUNORA_PID")
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null && return; sleep 0.1; done
  echo "lunora did not become ready" >&2; cat "$WORK/lunora.log" >&2; return 1
}
stop() { kill -9 "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }

echo "== 1. 50 Mbit/s relay, $ROUNDS paired rounds of $SECONDS_MEASURED s ==" >&2
RATIOS=(); MAX_LRSS=0; MAX_SRSS=0
for round in $(seq "$ROUNDS"); do
  IN=$(port); OUT=$(port)
  write_config 200 "$IN" "$OUT"
  start_lunora
  read -r LC LR < <(measure lunora "$LUNORA_PID" "$IN" "$OUT")
  stop "$LUNORA_PID"
  IN=$(port); OUT=$(port)
  srt-live-transmit -q "srt://127.0.0.1:$IN?mode=listener&latency=200" "srt://127.0.0.1:$OUT?mode=listener&latency=200" -chunk:1316 2>/dev/null &
  SLT_PID=$!; PIDS+=("$SLT_PID")
  sleep 0.5
  read -r SC SR < <(measure srt-live-transmit "$SLT_PID" "$IN" "$OUT")
  stop "$SLT_PID"
  RATIO=$(python3 -c "print(f'{$LC / $SC:.2f}' if $SC > 0 else 'inf')")
  RATIOS+=("$RATIO")
  MAX_LRSS=$((LR > MAX_LRSS ? LR : MAX_LRSS)); MAX_SRSS=$((SR > MAX_SRSS ? SR : MAX_SRSS))
  echo "round $round: cpu lunora ${LC} s, srt-live-transmit ${SC} s, ratio $RATIO" >&2
done
SUMMARY="relay 50 Mbit/s: CPU ratio lunora/srt-live-transmit per round ${RATIOS[*]}, median $(median "${RATIOS[@]}") (target <= 0.8)
peak RSS: lunora $((MAX_LRSS / 1024)) MiB, srt-live-transmit $((MAX_SRSS / 1024)) MiB"
echo "$SUMMARY"

# latency_run NAME IN OUT: pushes the jittered source to IN, pulls OUT, captures, prints a line.
latency_run() {
  local name=$1 in=$2 out=$3
  ffmpeg -v error -re -i "$WORK/jitter.ts" -c copy -f mpegts "srt://127.0.0.1:$in?pkt_size=1316&latency=$((LATENCY_MS * 1000))" &
  local pusher=$!; PIDS+=("$pusher")
  sleep 1
  srt-live-transmit -q "srt://127.0.0.1:$out?latency=$LATENCY_MS" file://con -chunk:1316 > /dev/null 2>"$WORK/$name.latency.log" &
  local puller=$!; PIDS+=("$puller")
  # Past the puller's start (it is first sent the cached GOP at once).
  sleep 3
  local json; json=$(python3 benches/srt_latency.py "$in" "$out" "$LATENCY_SECONDS")
  stop "$pusher" "$puller"
  python3 - "$name" "$LATENCY_MS" "$json" <<'PY'
import json, sys
name, latency, r = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
def fmt(key):
    v = r.get(key)
    if not v:
        return f"{key}: no frames matched"
    return (f"{key}: p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms (minus SRT latency {latency:.0f} ms: "
            f"p50 {v['p50_ms'] - latency:.2f}, p99 {v['p99_ms'] - latency:.2f}), max {v['max_ms']:.1f} ms")
print(f"{name}: {r.get('matched', 0)} of {r['frames_in']} frames matched; {fmt('start')}; {fmt('after_frame_end')}")
PY
}

echo "== 2. added latency, SRT latency $LATENCY_MS ms everywhere, $CHANNEL_MBIT Mbit/s, $LATENCY_SECONDS s ==" >&2
if python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' 2>/dev/null; then
  IN=$(port); OUT=$(port)
  write_config "$LATENCY_MS" "$IN" "$OUT"
  start_lunora
  latency_run lunora "$IN" "$OUT"
  stop "$LUNORA_PID"
  IN=$(port); OUT=$(port)
  srt-live-transmit -q "srt://127.0.0.1:$IN?mode=listener&latency=$LATENCY_MS" "srt://127.0.0.1:$OUT?mode=listener&latency=$LATENCY_MS" -chunk:1316 2>/dev/null &
  SLT_PID=$!; PIDS+=("$SLT_PID")
  sleep 0.5
  latency_run srt-live-transmit "$IN" "$OUT"
  stop "$SLT_PID"
else
  echo "latency skipped: capturing on lo needs root or CAP_NET_RAW"
fi

echo "== 3. channels at $CHANNEL_MBIT Mbit/s each, $SECONDS_MEASURED s ==" >&2
for n in 1 2 4; do
  PAIRS=(); RUN=()
  for _ in $(seq "$n"); do PAIRS+=("$(port)" "$(port)"); done
  write_config 200 "${PAIRS[@]}"
  start_lunora
  for i in $(seq 0 $((n - 1))); do
    ffmpeg -v error -re -i "$WORK/jitter.ts" -c copy -f mpegts "srt://127.0.0.1:${PAIRS[$((2 * i))]}?pkt_size=1316&latency=200000" &
    RUN+=($!); PIDS+=($!)
  done
  sleep 1
  for i in $(seq 0 $((n - 1))); do
    srt-live-transmit -q "srt://127.0.0.1:${PAIRS[$((2 * i + 1))]}?latency=200" file://con -chunk:1316 > "$WORK/ch$i.out" 2>/dev/null &
    RUN+=($!); PIDS+=($!)
  done
  sleep 5
  reset_peak_rss "$LUNORA_PID"
  START=$(cpu_ticks "$LUNORA_PID"); B0=$(cat "$WORK"/ch*.out | wc -c)
  sleep "$SECONDS_MEASURED"
  END=$(cpu_ticks "$LUNORA_PID"); B1=$(cat "$WORK"/ch*.out | wc -c)
  RSS=$(peak_rss_kib "$LUNORA_PID")
  stop "${RUN[@]}" "$LUNORA_PID"
  rm -f "$WORK"/ch*.out
  python3 -c "print(f'channels $n: lunora CPU {($END - $START) / $TICKS / $SECONDS_MEASURED * 100:.0f} % of one core, peak RSS {$RSS / 1024:.0f} MiB, out {($B1 - $B0) * 8 / $SECONDS_MEASURED / 1e6:.0f} Mbit/s in all')"
done
