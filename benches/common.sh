# Shared by the end-to-end bench scripts: a work dir and process list cleaned up on exit, the
# release build, a 50 Mbit/s source, free ports and /proc readings.
# Usage: . benches/common.sh; make_source SECONDS

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

# $LUNORA names a binary built elsewhere (another CARGO_TARGET_DIR, a shared build); otherwise
# this checkout's release build, made here (honouring CARGO_TARGET_DIR like cargo does).
if [ -z "${LUNORA:-}" ]; then
  cargo build --release --locked -p lunora >/dev/null 2>&1
  LUNORA=${CARGO_TARGET_DIR:-$PWD/target}/release/lunora
fi
[ -x "$LUNORA" ] || { echo "no lunora binary at $LUNORA: build it or set LUNORA=/path/to/lunora" >&2; exit 1; }
TICKS=$(getconf CLK_TCK)

# make_source SECONDS: $WORK/src.ts, 1280x720p30 H.264 CBR + no audio, muxed at 50 Mbit/s.
make_source() {
  echo "generating $1 s of 1280x720p30 H.264 at 50 Mbit/s ..." >&2
  ffmpeg -v error -f lavfi -i "testsrc2=size=1280x720:rate=30" -t "$1" \
    -c:v libx264 -preset ultrafast -g 30 -b:v 46M -minrate 46M -maxrate 46M -bufsize 8M \
    -x264-params nal-hrd=cbr -f mpegts -muxrate 50M "$WORK/src.ts"
  echo "source: $(( $(stat -c %s "$WORK/src.ts") * 8 / $1 / 1000000 )) Mbit/s" >&2
}

# nginx-rtmp on loopback port $RTMP (set here), live application `live`, with room for $1
# connections; returns once it accepts TCP.
start_nginx() {
  RTMP=$(port)
  cat > "$WORK/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
error_log $WORK/nginx-error.log warn;
pid $WORK/nginx.pid;
events { worker_connections $1; }
rtmp { server { listen 127.0.0.1:$RTMP; chunk_size 4096; application live { live on; } } }
CONF
  nginx -p "$WORK" -c "$WORK/nginx.conf" &
  PIDS+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$RTMP") 2>/dev/null && return; sleep 0.1; done
  echo "nginx did not start on port $RTMP" >&2; return 1
}

# GET on the daemon's API (`$HTTP`, state in `$WORK/state`): the API needs a token, made with
# the shell command on the daemon's own state directory.
api_get() {
  local token
  token=$(LUNORA_STATE_DIR="$WORK/state" "$LUNORA" token create "bench-$RANDOM" --user admin --config "$WORK/lunora.toml" | sed -n 2p)
  curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$HTTP$1"
}
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# reset_peak_rss PID: from now on VmHWM is the peak of what follows (Linux clear_refs 5), so
# start-up work is not counted: lunora hashes its first-run admin password with argon2id
# (19 MiB for a moment) before any stream flows.
reset_peak_rss() { echo 5 > "/proc/$1/clear_refs"; }

# measure NAME PID IN_PORT OUT_PORT: pushes $WORK/src.ts over SRT to IN_PORT, pulls OUT_PORT
# with srt-live-transmit, and measures PID's CPU time and peak RSS over $SECONDS_MEASURED once
# both flow (peak RSS: while relaying). Prints "cpu_seconds peak_rss_kib" on stdout and a
# summary on stderr.
measure() {
  local name=$1 pid=$2 in_port=$3 out_port=$4
  ffmpeg -v error -re -i "$WORK/src.ts" -c copy -f mpegts "srt://127.0.0.1:$in_port?pkt_size=1316&latency=200000" &
  PIDS+=($!); local pusher=$!
  sleep 1
  srt-live-transmit -q "srt://127.0.0.1:$out_port?latency=200" file://con -chunk:1316 > "$WORK/$name.out" 2>"$WORK/$name.receiver.log" &
  PIDS+=($!); local receiver=$!
  sleep 5
  local start end bytes_start bytes_end
  reset_peak_rss "$pid"
  start=$(cpu_ticks "$pid"); bytes_start=$(stat -c %s "$WORK/$name.out")
  sleep "$SECONDS_MEASURED"
  end=$(cpu_ticks "$pid"); bytes_end=$(stat -c %s "$WORK/$name.out")
  local rss; rss=$(peak_rss_kib "$pid")
  kill -9 "$pusher" "$receiver" 2>/dev/null || true
  local cpu; cpu=$(python3 -c "print(f'{($end-$start)/$TICKS:.2f}')")
  local mbit; mbit=$(python3 -c "print(f'{($bytes_end-$bytes_start)*8/$SECONDS_MEASURED/1e6:.1f}')")
  echo "$name: cpu ${cpu} s over ${SECONDS_MEASURED} s, peak RSS $((rss / 1024)) MiB, SRT output ${mbit} Mbit/s" >&2
  echo "$cpu $rss"
}
