#!/usr/bin/env bash
# Control-plane bench (issue #9): N API changes on channel `a` while channel `b` carries a
# 50 Mbit/s MPEG-TS from an SRT caller to an SRT puller (srt-live-transmit) and to an RTMP
# destination (nginx-rtmp). The changes cycle through: add an RTMP destination, remove it, add
# an SRT input (backup), remove it. Prints, per kind, p50/p99/max of the request's own latency
# and of the time from sending it until the change is live (output: GET …/outputs/{id} answers
# 200, or 404 once removed; input: its UDP port is bound and it answers an SRT handshake, or the
# port is released once removed), then channel b's losses over the change period.
# Targets: frames lost on b = 0 (both outputs' dropped frames + reconnects), p99 for an output
# <= 200 ms, p99 for an input to listen <= 1 s. Loopback only; every process stopped on exit;
# every wait bounded.
#   bash benches/control_plane.sh [changes]      (default 100)
# Env: LUNORA=/path/to/lunora skips the build (else common.sh builds this checkout);
#      CONTROL_PLANE_CSV=FILE keeps every latency (default: in the work dir; KEEP_WORK=1 keeps it);
#      CHANGE_INTERVAL_MS=N waits N ms between changes (default 0: back to back, the worst case
#      for the control plane, but then b is watched only for the changes and 3 s after them).
set -euo pipefail
cd "$(dirname "$0")/.."
CHANGES=${1:-100}
INTERVAL_MS=${CHANGE_INTERVAL_MS:-0}
[[ "$INTERVAL_MS" =~ ^[0-9]+$ ]] || { echo "CHANGE_INTERVAL_MS must be a number of milliseconds" >&2; exit 2; }
[[ "$CHANGES" =~ ^[1-9][0-9]*$ ]] || { echo "usage: bash benches/control_plane.sh [changes]  (a positive number, default 100)" >&2; exit 2; }
. benches/common.sh

# The source must outlast the warm-up (destination live, puller connected: ~10 s), the changes
# (a few ms each when healthy; the driver stops early when the source is about to end) and the
# settling time after them.
SOURCE_SECONDS=$((40 + CHANGES / 5 + CHANGES * INTERVAL_MS / 1000))
make_source "$SOURCE_SECONDS"

start_nginx 256

# lunora's RTMP ingest is bound only when an RTMP input exists; pinned to loopback anyway.
B_IN=$(port); B_OUT=$(port); HTTP=$(port); RTMP_IN=$(port)
cat > "$WORK/lunora.toml" <<CONF
[http]
listen = "127.0.0.1:$HTTP"
[rtmp]
listen = "127.0.0.1:$RTMP_IN"

[[channels]]
id = "b"
mode = "single"
[[channels.inputs]]
id = "in"
type = "srt"
listen = "127.0.0.1:$B_IN"
latency_ms = 200
[[channels.outputs]]
id = "srt"
type = "srt"
mode = "listener"
listen = "127.0.0.1:$B_OUT"
latency_ms = 200
[[channels.outputs]]
id = "nginx"
type = "rtmp"
url = "rtmp://127.0.0.1:$RTMP/live"
stream_key = "b"
autostart = true

[[channels]]
id = "a"
mode = "main-backup"
CONF
PASSWORD="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
LUNORA_ADMIN_PASSWORD=$PASSWORD LUNORA_STATE_DIR="$WORK/state" "$LUNORA" run --config "$WORK/lunora.toml" 2>"$WORK/lunora.log" &
PIDS+=($!); LUNORA_PID=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null && break
  kill -0 "$LUNORA_PID" 2>/dev/null || { echo "lunora exited:" >&2; tail -20 "$WORK/lunora.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null || { echo "lunora not ready after 10 s" >&2; tail -20 "$WORK/lunora.log" >&2; exit 1; }

ffmpeg -v error -re -i "$WORK/src.ts" -c copy -f mpegts "srt://127.0.0.1:$B_IN?pkt_size=1316&latency=200000" 2>"$WORK/pusher.log" &
PIDS+=($!); PUSHER=$!
# No auto-reconnect: a puller that lost b's output is gone at the end, and that shows.
srt-live-transmit -a:no -s:2000 -f -pf:csv -statsout:"$WORK/puller.csv" \
  "srt://127.0.0.1:$B_OUT?latency=200" file://con -chunk:1316 >/dev/null 2>"$WORK/puller.log" &
PIDS+=($!); PULLER=$!
SOURCE_END=$(( $(date +%s) + SOURCE_SECONDS ))

CSV=${CONTROL_PLANE_CSV:-$WORK/latencies.csv}
STATUS=0
python3 - "$HTTP" "$RTMP" "$CHANGES" "$PASSWORD" "$SOURCE_END" "$CSV" "$WORK/puller.csv" "$INTERVAL_MS" <<'PY' || STATUS=$?
import csv, http.client, json, math, os, socket, struct, sys, time

HTTP, RTMP, N = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
PASSWORD, SOURCE_END, CSV, PULLER_CSV = sys.argv[4], float(sys.argv[5]), sys.argv[6], sys.argv[7]
INTERVAL = int(sys.argv[8]) / 1000
STEP_LIMIT = 5.0          # seconds one change may take to be live before it counts as failed
SETTLE = 3.0              # seconds after the last change before b's counters are read again
OUTPUT_TARGET_MS, INPUT_TARGET_MS = 200.0, 1000.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Api:
    """One keep-alive HTTP/1.1 connection: the bench measures lunora, not TCP set-up."""

    def __init__(self):
        self.conn, self.headers = None, {}

    def call(self, method, path, body=None, extra=None):
        headers = dict(self.headers, **(extra or {}))
        data = None
        if body is not None:
            # axum's JSON extractor wants the content type even with a bearer token.
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=10)
                self.conn.request(method, path, data, headers)
                response = self.conn.getresponse()
                return response.status, response.read(), response
            except (http.client.HTTPException, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                # Only a dropped idle connection is retried, once; never a second failure.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, path):
        status, raw, _ = self.call("GET", path)
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw)


def udp_bound(port):
    suffix = ":%04X" % port
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                if any(line.split()[1].endswith(suffix) for line in f):
                    return True
        except FileNotFoundError:
            pass
    return False


def srt_answers(port, timeout=0.05):
    """Sends an SRT induction handshake (what any caller sends first); True when the listener
    answers with its own (version 5). Stateless on the listener's side: it leaves no caller."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        sid, isn = (struct.unpack(">I", os.urandom(4))[0] & 0x7FFFFFFF for _ in range(2))
        header = struct.pack(">IIII", 0x80000000, 0, 0, 0)
        cif = struct.pack(">IHHIIIiII", 4, 0, 2, isn, 1500, 8192, 1, sid, 0) + socket.inet_aton("127.0.0.1")[::-1] + bytes(12)
        s.sendto(header + cif, ("127.0.0.1", port))
        data, _ = s.recvfrom(2048)
        return len(data) >= 20 and data[0] & 0x80 != 0 and struct.unpack(">I", data[16:20])[0] == 5
    except (socket.timeout, ConnectionRefusedError):
        return False
    finally:
        s.close()


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, t0, limit=STEP_LIMIT, pause=0.001):
    """ms from t0 until check() holds (None after `limit` s), and whether it held at once."""
    first = True
    while True:
        if check():
            return (time.perf_counter() - t0) * 1000, first
        first = False
        if time.perf_counter() - t0 > limit:
            return None, False
        time.sleep(pause)


def pct(values, p):
    """Nearest-rank percentile (with 25 samples, p99 is the maximum)."""
    v = sorted(values)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)] if v else float("nan")


api = Api()
status, raw, response = api.call("POST", "/api/v1/session", {"username": "admin", "password": PASSWORD})
if status != 200:
    raise SystemExit(f"log-in failed: HTTP {status}: {raw[:300]!r}")
cookie = (response.getheader("Set-Cookie") or "").split(";")[0]
status, raw, _ = api.call("POST", "/api/v1/tokens", {"name": "bench"}, {"Cookie": cookie})
if status != 201:
    raise SystemExit(f"token creation failed: HTTP {status}: {raw[:300]!r}")
api.headers = {"Authorization": "Bearer " + json.loads(raw)["token"]}


def outputs_of(channel):
    return {o["id"]: o for o in channel["outputs"]}


# Warm-up: b's destination live, the puller connected, frames flowing.
deadline = time.time() + 30
while True:
    b = api.json("/api/v1/channels/b")
    outs = outputs_of(b)
    if outs["nginx"]["state"] == "live" and outs["srt"]["peers"] and outs["nginx"]["frames_total"] > 0 and outs["srt"]["frames_total"] > 0:
        break
    if time.time() > deadline:
        raise SystemExit(f"channel b not flowing after 30 s: destination {outs['nginx']['state']} ({outs['nginx']['last_error']}), "
                         f"SRT output peers {outs['srt']['peers']}, input {b['inputs'][0]['state']}")
    time.sleep(0.2)
time.sleep(2)  # past the first keyframes and the destination's start-up burst
before = api.json("/api/v1/channels/b")
t_start = time.perf_counter()
log(f"channel b flowing: destination live, {len(outputs_of(before)['srt']['peers'])} SRT puller; making {N} changes on channel a ...")

kinds = ["output add", "output remove", "input add", "input remove"]
rows = []                           # kind, n, request ms, live ms, live at reply, HTTP status, note
failures = []
stopped_early = None
port_of = {}
for i in range(N):
    if time.time() > SOURCE_END - SETTLE - STEP_LIMIT - 2:
        stopped_early = i
        break
    kind, n = kinds[i % 4], i // 4 + 1
    note, live_ms, at_once = "", None, False
    t0 = time.perf_counter()
    if kind == "output add":
        status, raw, _ = api.call("POST", "/api/v1/channels/a/outputs",
                                  {"id": f"d{n}", "type": "rtmp", "url": f"rtmp://127.0.0.1:{RTMP}/live", "stream_key": f"a{n}"})
        request_ms, ok = (time.perf_counter() - t0) * 1000, status == 201
        if ok:
            state = {}
            def exists():
                s, body, _ = api.call("GET", f"/api/v1/channels/a/outputs/d{n}")
                if s == 200:
                    state["state"] = json.loads(body)["state"]
                return s == 200
            live_ms, at_once = wait_until(exists, t0)
            note = state.get("state", "")
    elif kind == "output remove":
        status, raw, _ = api.call("DELETE", f"/api/v1/channels/a/outputs/d{n}")
        request_ms, ok = (time.perf_counter() - t0) * 1000, status == 204
        if ok:
            live_ms, at_once = wait_until(lambda: api.call("GET", f"/api/v1/channels/a/outputs/d{n}")[0] == 404, t0)
    elif kind == "input add":
        port_of[n] = port = free_udp_port()
        status, raw, _ = api.call("POST", "/api/v1/channels/a/inputs",
                                  {"id": f"in{n}", "role": "backup", "type": "srt", "listen": f"127.0.0.1:{port}"})
        request_ms, ok = (time.perf_counter() - t0) * 1000, status == 201
        if ok:
            bound_ms, at_once = wait_until(lambda: udp_bound(port), t0)
            # "Listening" = answers a caller's handshake, not merely a bound socket.
            live_ms, _ = wait_until(lambda: srt_answers(port), t0, pause=0)
            note = f"bound {bound_ms:.1f} ms" if bound_ms is not None else "never bound"
    else:
        port = port_of[n]
        status, raw, _ = api.call("DELETE", f"/api/v1/channels/a/inputs/in{n}")
        request_ms, ok = (time.perf_counter() - t0) * 1000, status == 204
        if ok:
            live_ms, at_once = wait_until(lambda: not udp_bound(port), t0)
    if not ok:
        failures.append(f"{kind} #{n}: HTTP {status}: {raw[:200]!r}")
    elif live_ms is None:
        failures.append(f"{kind} #{n}: not live within {STEP_LIMIT:.0f} s")
    rows.append((kind, n, request_ms, live_ms, at_once, status, note))
    time.sleep(INTERVAL)
t_changes = time.perf_counter() - t_start
time.sleep(SETTLE)
after = api.json("/api/v1/channels/b")
t_total = time.perf_counter() - t_start

with open(CSV, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["kind", "n", "request_ms", "live_ms", "live_when_reply_came", "http_status", "note"])
    for r in rows:
        w.writerow([r[0], r[1], f"{r[2]:.3f}", "" if r[3] is None else f"{r[3]:.3f}", r[4], r[5], r[6]])

# Puller's own view (SRT packets, not frames): the last stats line srt-live-transmit wrote.
puller = "no stats"
try:
    with open(PULLER_CSV) as f:
        lines = list(csv.DictReader(f))
    if lines:
        last = lines[-1]
        pick = lambda *names: next((last[k] for k in names if k in last), "?")
        puller = (f"{pick('pktRecvTotal', 'pktRecv')} packets received, {pick('pktRcvLossTotal', 'pktRcvLoss')} reported lost, "
                  f"{pick('pktRcvRetrans')} retransmitted, {pick('pktRcvDropTotal', 'pktRcvDrop')} dropped too late (SRT packets, whole run)")
except OSError:
    pass

ob, oa = outputs_of(before), outputs_of(after)
delta = lambda o, k: oa[o][k] - ob[o][k]
frames_in = sum(after["inputs"][0]["frames_total"].values()) - sum(before["inputs"][0]["frames_total"].values())
lost = {o: delta(o, "dropped_frames_total") + delta(o, "reconnects_total") for o in ("srt", "nginx")}
lost_total = sum(lost.values()) + (0 if oa["srt"]["peers"] else 1) + (0 if oa["nginx"]["state"] == "live" else 1)

done = len(rows)
out = []
out.append(f"== control_plane: {done} API changes on channel a in {t_changes:.1f} s{f' ({INTERVAL * 1000:.0f} ms apart)' if INTERVAL else ''}, channel b at 50 Mbit/s (SRT in -> SRT puller + nginx-rtmp) ==")
verdicts = []
for kind in kinds:
    sel = [r for r in rows if r[0] == kind]
    if not sel:
        continue
    req = [r[2] for r in sel]
    live = [r[3] if r[3] is not None else float("inf") for r in sel]
    what = {"output add": "GET 200", "output remove": "GET 404", "input add": "SRT handshake answered", "input remove": "port released"}[kind]
    target = OUTPUT_TARGET_MS if kind.startswith("output") else (INPUT_TARGET_MS if kind == "input add" else None)
    verdict = ""
    if target is not None:
        passed = pct(live, 99) <= target
        verdicts.append(passed)
        verdict = f"  target p99 <= {target:.0f} ms: {'PASS' if passed else 'MISS'}"
    at_once = sum(1 for r in sel if r[4])
    out.append(f"{kind:13} x{len(sel):<3} request p50 {pct(req, 50):6.1f} p99 {pct(req, 99):6.1f} max {max(req):6.1f} ms | "
               f"live ({what}) p50 {pct(live, 50):6.1f} p99 {pct(live, 99):6.1f} max {max(live):6.1f} ms{verdict}")
    if kind == "output add":
        states = sorted({r[6] for r in sel})
        out.append(f"{'':13} already live when the reply came: {at_once}/{len(sel)}; state at first GET: {', '.join(states)} (no autostart)")
    elif kind == "input add":
        bound = [float(r[6].split()[1]) for r in sel if r[6].startswith("bound")]
        out.append(f"{'':13} UDP port bound p50 {pct(bound, 50):.1f} p99 {pct(bound, 99):.1f} max {max(bound, default=float('nan')):.1f} ms; "
                   f"bound when the reply came: {at_once}/{len(sel)}")
    elif kind == "output remove" or kind == "input remove":
        out.append(f"{'':13} already gone when the reply came: {at_once}/{len(sel)}")
span = f"over {t_total:.1f} s (changes + {SETTLE:.0f} s settling)"
out.append(f"channel b {span}: input frames +{frames_in}")
for o, label in (("srt", "SRT output "), ("nginx", "nginx dest.")):
    peers = f"{len(oa[o]['peers'])} peer(s)" if o == "srt" else f"state {ob[o]['state']} -> {oa[o]['state']}"
    out.append(f"  {label} frames sent +{delta(o, 'frames_total')}, dropped +{delta(o, 'dropped_frames_total')}, "
               f"reconnects +{delta(o, 'reconnects_total')}, {peers}, {delta(o, 'bytes_total') * 8 / 1e6 / t_total:.1f} Mbit/s"
               + (f", last error {oa[o]['last_error']}" if oa[o]["last_error"] else ""))
out.append(f"  puller: {puller}")
out.append(f"frames lost on b = SRT dropped + nginx dropped + reconnects (+1 per output no longer live) = {lost_total}  target 0: {'PASS' if lost_total == 0 else 'MISS'}")
verdicts.append(lost_total == 0)
if stopped_early is not None:
    out.append(f"STOPPED EARLY after {stopped_early} of {N} changes: the source was about to end (changes far slower than the source was sized for)")
    verdicts.append(False)
out.append(f"failed changes: {len(failures)}" + "".join(f"\n  {f}" for f in failures[:10]))
verdicts.append(not failures)
out.append(f"overall: {'PASS' if all(verdicts) else 'MISS'}")
print("\n".join(out), flush=True)
sys.exit(0 if all(verdicts) else 3)
PY

kill -0 "$PUSHER" 2>/dev/null || echo "note: the source ended before the bench did" >&2
kill -0 "$PULLER" 2>/dev/null || { echo "note: the SRT puller exited:" >&2; tail -3 "$WORK/puller.log" >&2; }
WARNS=$(grep -c " WARN " "$WORK/lunora.log" || true); ERRORS=$(grep -c " ERROR " "$WORK/lunora.log" || true)
echo "lunora log: $WARNS WARN, $ERRORS ERROR lines (first few follow on stderr)"
grep -E " (WARN|ERROR) " "$WORK/lunora.log" | grep -v "Connection refused" | head -8 >&2 || true
exit "$STATUS"
