#!/usr/bin/env bash
# RTP input cost, loopback only; every process is stopped on exit.
#
# One 50 Mbit/s MPEG-TS (H.264 CBR made by ffmpeg) sent once by ffmpeg as RTP (rtp_mpegts,
# 1316-byte payloads) to a small tee that copies every datagram to two ports: lunora's RTP
# input (reorder buffer, TS demux, TR 101 290 analyser, the channel's switcher; no output) and
# `ffmpeg -i rtp://... -c copy -f null -` (RTP depacketizing and TS demux only). Both read the
# same stream at the same time, so whatever else the machine does hits both alike. Prints each
# one's CPU time over the measured seconds and the ratio lunora/ffmpeg, per round and the
# median, and lunora's RTP figures (received, lost, reordered) from its API.
#
#   bash benches/rtp_ingest.sh [seconds]     seconds measured per round (default 15)
#   env: ROUNDS (3), LUNORA (binary; default: this checkout's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED=${1:-15}
ROUNDS=${ROUNDS:-3}
. benches/common.sh
make_source $((SECONDS_MEASURED + 10))

# tee IN_PORT OUT_PORT...: every datagram on IN_PORT is sent to each OUT_PORT.
cat > "$WORK/tee.py" <<'PY'
import socket, sys
inp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
inp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
inp.bind(("127.0.0.1", int(sys.argv[1])))
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
targets = [("127.0.0.1", int(p)) for p in sys.argv[2:]]
while True:
    data = inp.recv(65536)
    for t in targets:
        out.sendto(data, t)
PY

stop() { kill -9 "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }

RATIOS=()
for round in $(seq "$ROUNDS"); do
  TEE=$(port); IN=$(port); FF=$(port); HTTP=$(port)
  cat > "$WORK/lunora.toml" <<TOML
[http]
listen = "127.0.0.1:$HTTP"
[[channels]]
id = "ch"
mode = "single"
[[channels.inputs]]
id = "rtp"
type = "rtp"
listen = "127.0.0.1:$IN"
TOML
  rm -rf "$WORK/state"
  LUNORA_STATE_DIR="$WORK/state" "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
  LUNORA_PID=$!; PIDS+=("$LUNORA_PID")
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null && break; sleep 0.1; done
  ffmpeg -v error -nostats -analyzeduration 5M -probesize 50M -i "rtp://127.0.0.1:$FF?buffer_size=4194304" -c copy -f null - 2>"$WORK/ffmpeg-reader.log" &
  FF_PID=$!; PIDS+=("$FF_PID")
  python3 "$WORK/tee.py" "$TEE" "$IN" "$FF" &
  TEE_PID=$!; PIDS+=("$TEE_PID")
  sleep 0.5
  ffmpeg -v error -re -i "$WORK/src.ts" -c copy -f rtp_mpegts "rtp://127.0.0.1:$TEE?pkt_size=1316" &
  SENDER=$!; PIDS+=("$SENDER")
  sleep 4
  L0=$(cpu_ticks "$LUNORA_PID"); F0=$(cpu_ticks "$FF_PID")
  sleep "$SECONDS_MEASURED"
  L1=$(cpu_ticks "$LUNORA_PID"); F1=$(cpu_ticks "$FF_PID")
  RTP=$(api_get /api/v1/channels/ch | python3 -c '
import json, sys
i = json.load(sys.stdin)["inputs"][0]
r = i["rtp"]
print("received %d, lost %d, reordered %d, %.1f Mbit/s" % (r["packets_received"], r["packets_lost"], r["packets_reordered"], i["bitrate_bps"] / 1e6))')
  stop "$SENDER" "$TEE_PID" "$FF_PID" "$LUNORA_PID"
  read -r LC FC RATIO < <(python3 -c "l=($L1-$L0)/$TICKS; f=($F1-$F0)/$TICKS; print(f'{l:.2f} {f:.2f} {l/f if f > 0 else float(\"inf\"):.2f}')")
  RATIOS+=("$RATIO")
  echo "round $round: cpu lunora ${LC} s, ffmpeg ${FC} s over ${SECONDS_MEASURED} s, ratio $RATIO; lunora RTP: $RTP" >&2
done
echo "RTP input at 50 Mbit/s: CPU ratio lunora/ffmpeg (-c copy -f null) per round ${RATIOS[*]}, median $(median "${RATIOS[@]}")"
