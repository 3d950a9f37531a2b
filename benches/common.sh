# Shared by the end-to-end bench scripts: a work dir and process list cleaned up on exit, the
# release build, a 50 Mbit/s source, free ports and /proc readings.
# Usage: . benches/common.sh; make_source SECONDS

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

cargo build --release --locked -p lunora >/dev/null 2>&1
LUNORA=$PWD/target/release/lunora
TICKS=$(getconf CLK_TCK)

# make_source SECONDS: $WORK/src.ts, 1280x720p30 H.264 CBR + no audio, muxed at 50 Mbit/s.
make_source() {
  echo "generating $1 s of 1280x720p30 H.264 at 50 Mbit/s ..." >&2
  ffmpeg -v error -f lavfi -i "testsrc2=size=1280x720:rate=30" -t "$1" \
    -c:v libx264 -preset ultrafast -g 30 -b:v 46M -minrate 46M -maxrate 46M -bufsize 8M \
    -x264-params nal-hrd=cbr -f mpegts -muxrate 50M "$WORK/src.ts"
  echo "source: $(( $(stat -c %s "$WORK/src.ts") * 8 / $1 / 1000000 )) Mbit/s" >&2
}

port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
