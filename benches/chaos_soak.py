#!/usr/bin/env python3
"""Chaos soak: lunora under everything at once, for a given duration.

Channel `program` (main-backup, input_loss_ms 500, 1 s GOP sources) has two SRT encoders
(ffmpeg pushing a test stream in real time), an RTMP input nobody publishes to, an SRT listener
output pulled throughout by srt-live-transmit (the measuring puller) and an RTMP destination
on nginx-rtmp. After a warm-up, at random (seeded) moments:

  - one encoder is killed and restored 1-4 s later (never both down: the other must have
    been up 5 s);
  - nginx is killed and started again 1-4 s later; the time from nginx accepting again to
    every RTMP destination being `live` in the API is a reconnect time;
  - extra SRT pullers join and leave;
  - API changes: destinations and SRT listener outputs added and removed, the failover
    policy changed;
  - garbage (random datagrams, random TCP bytes) on every port lunora listens on.

Then the baseline is put back, and the measuring puller's recording is checked.

Prints (and with --json writes) the figures: the longest gap in the output as the puller
received it, decode errors and TS continuity errors of the recording, RSS (second minute vs
last minute; for short runs the 30 s after warm-up vs the last 30 s), open fds at the baseline
before and after, the reconnect times, and how many of each event ran.

    python3 benches/chaos_soak.py [--duration 600] [--seed N] [--lunora PATH] [--json FILE]

Loopback only; every process is stopped on exit. Python 3 standard library only.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from benchlib import port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUT_LOSS_MS = 500
GOP_S = 1.0
# Longest output gap a failover may cause: loss detection plus the wait for the backup's
# next keyframe.
FAILOVER_BOUND_S = INPUT_LOSS_MS / 1000 + GOP_S


def accepts(tcp_port):
    try:
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=0.2):
            return True
    except OSError:
        return False


class Procs:
    """Children in this process's group (a caller that kills the group kills them all);
    each stopped by its own pid."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, args, stdout=subprocess.DEVNULL):
        log = open(os.path.join(self.work, f"{name}.log"), "ab")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=log)
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p, sig=signal.SIGKILL):
        if p is None or p.poll() is not None:
            return
        try:
            p.send_signal(sig)
            p.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            p.kill()
            p.wait(timeout=5)

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


class Puller:
    """srt-live-transmit pulling the SRT output to a pipe; a thread writes what arrives to a
    file and keeps the longest silence between two reads."""

    def __init__(self, procs, name, out_port, path):
        self.proc = procs.start(name, ["srt-live-transmit", "-q", f"srt://127.0.0.1:{out_port}?latency=200", "file://con",
                                       "-chunk:1316"], stdout=subprocess.PIPE)
        self.path = path
        self.first = self.last = None
        self.max_gap = 0.0
        self.max_gap_at = None
        self.bytes = 0
        self.measuring = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        with open(self.path, "wb") as out:
            fd = self.proc.stdout.fileno()
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                now = time.monotonic()
                if self.last is not None and self.measuring and now - self.last > self.max_gap:
                    self.max_gap, self.max_gap_at = now - self.last, now
                if self.first is None:
                    self.first = now
                self.last = now
                self.bytes += len(chunk)
                out.write(chunk)


def continuity_errors(path):
    """TS continuity counter errors per ISO 13818-1: a packet with payload must carry the
    previous counter + 1 (a duplicate may repeat it once) unless it flags a discontinuity."""
    errors, last = 0, {}
    with open(path, "rb") as f:
        data = f.read()
    start = data.find(b"\x47")
    for i in range(start, len(data) - 187, 188):
        p = data[i:i + 188]
        if p[0] != 0x47:
            errors += 1
            continue
        pid = ((p[1] & 0x1F) << 8) | p[2]
        if pid == 0x1FFF:
            continue
        afc = (p[3] >> 4) & 3
        cc = p[3] & 0x0F
        discontinuity = afc & 2 and p[4] > 0 and p[5] & 0x80
        if afc & 1:
            if pid in last and not discontinuity and cc != (last[pid] + 1) % 16 and cc != last[pid]:
                errors += 1
            last[pid] = cc
    return errors


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=600, help="seconds of the whole soak (chaos runs after a 30 s warm-up)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--lunora", help="lunora binary (default: this checkout's release build, made here)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--end-signal", default="SIGKILL", choices=["SIGKILL", "SIGINT"],
                    help="how the encoders stop at the end (SIGINT: ffmpeg closes its SRT connection)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, recording)")
    ap.add_argument("--work", help="work in this (existing, empty) directory instead of a new temporary one")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    print(f"chaos soak: {args.duration} s, seed {seed}", file=sys.stderr, flush=True)
    lunora = args.lunora
    if not lunora:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "lunora"], cwd=ROOT, check=True, capture_output=True)
        lunora = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "lunora")

    work = args.work or tempfile.mkdtemp(prefix="lunora-soak-")
    procs = Procs(work)
    figures = {"seed": seed, "duration_s": args.duration, "failover_bound_s": FAILOVER_BOUND_S, "work": work}
    try:
        run(args, rng, lunora, work, procs, figures)
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)


def run(args, rng, lunora, work, procs, figures):
    main_port, backup_port, out_port = port(), port(), port()
    http, rtmp_in, nginx_port = port(socket.SOCK_STREAM), port(socket.SOCK_STREAM), port(socket.SOCK_STREAM)
    config = os.path.join(work, "lunora.toml")
    with open(config, "w") as f:
        # No slate: the soak never loses both encoders while it measures, and it ends by stopping
        # them and letting the puller drain, which a slate would fill (and the puller's stop then
        # cut mid-frame).
        f.write(f"""[http]
listen = "127.0.0.1:{http}"
[rtmp]
listen = "127.0.0.1:{rtmp_in}"
[slate]
enabled = false
[[channels]]
id = "program"
mode = "main-backup"
[channels.failover]
input_loss_ms = {INPUT_LOSS_MS}
error_clear_ms = 2000
[[channels.inputs]]
id = "main"
role = "main"
type = "srt"
listen = "127.0.0.1:{main_port}"
latency_ms = 200
[[channels.inputs]]
id = "backup"
role = "backup"
type = "srt"
listen = "127.0.0.1:{backup_port}"
latency_ms = 200
[[channels.inputs]]
id = "obs"
role = "backup"
type = "rtmp"
stream_key = "soak-obs-key"
[[channels.outputs]]
id = "out"
type = "srt"
mode = "listener"
listen = "127.0.0.1:{out_port}"
latency_ms = 200
[[channels.outputs]]
id = "yt"
type = "rtmp"
url = "rtmp://127.0.0.1:{nginx_port}/live"
stream_key = "soak-yt"
autostart = true
retry_min_ms = 200
retry_max_ms = 500
""")
    # The test stream: 640x360p25 H.264 (1 s GOP, no B-frames, as live encoders' low-latency
    # profiles send and as the failover tests use) + AAC, as long as the soak so no encoder
    # loops it (ffmpeg's -stream_loop repeats an audio timestamp at the seam). With B-frames
    # a seam can leave a frame displayed after the next input's keyframe (see README).
    source = os.path.join(work, "source.ts")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i",
                    "sine=frequency=1000:sample_rate=48000", "-t", str(args.duration + 10), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "0", "-b:v", "800k", "-c:a", "aac", "-f", "mpegts", source],
                   check=True, timeout=120)

    env = dict(os.environ, LUNORA_ADMIN_PASSWORD="soak-admin-password", LUNORA_STATE_DIR=os.path.join(work, "state"))
    env.pop("RUST_LOG", None)
    daemon = subprocess.Popen([lunora, "run", "--config", config], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(work, "lunora.log"), "wb"), env=env)
    procs.procs.append(daemon)
    def ready():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    deadline = time.monotonic() + 30
    while not ready():
        if time.monotonic() > deadline or daemon.poll() is not None:
            sys.exit(f"lunora did not start; see {work}/lunora.log")
        time.sleep(0.1)
    # The first superadmin may still be being written when the port is ready: a few tries.
    for attempt in range(20):
        made = subprocess.run([lunora, "token", "create", "soak", "--user", "admin", "--config", config], env=env,
                              capture_output=True, text=True, timeout=60)
        if made.returncode == 0:
            break
        time.sleep(0.5)
    else:
        sys.exit(f"lunora token create failed: {made.stderr}")
    token = made.stdout.splitlines()[1].strip()

    def api(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{http}{path}", data=data, method=method,
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def channel():
        status, body = api("GET", "/api/v1/channels/program")
        if status != 200:
            raise RuntimeError(f"GET channel: {status} {body}")
        return body

    def encoder(name, srt_port):
        return procs.start(name, ["ffmpeg", "-v", "error", "-re", "-i", source, "-c", "copy", "-f", "mpegts",
                                  f"srt://127.0.0.1:{srt_port}?latency=200000&pkt_size=1316"])

    def nginx():
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
error_log {work}/nginx-error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 256; }}
rtmp {{ server {{ listen 127.0.0.1:{nginx_port}; chunk_size 4096; application live {{ live on; }} }} }}
""")
        p = procs.start("nginx", ["nginx", "-p", work, "-c", conf])
        deadline = time.monotonic() + 10
        while not accepts(nginx_port):
            if time.monotonic() > deadline:
                sys.exit("nginx did not start")
            time.sleep(0.02)
        return p

    # ---- baseline -------------------------------------------------------------------------
    encoders = {"main": encoder("main-encoder", main_port), "backup": encoder("backup-encoder", backup_port)}
    ports = {"main": main_port, "backup": backup_port}
    up_since = {"main": time.monotonic(), "backup": time.monotonic()}
    server = nginx()
    recording = os.path.join(work, "program.ts")
    puller = Puller(procs, "puller", out_port, recording)

    def destinations():
        return [o for o in channel()["outputs"] if o["type"] == "rtmp"]

    def lunora_proc(field):
        if field == "fds":
            return len(os.listdir(f"/proc/{daemon.pid}/fd"))
        with open(f"/proc/{daemon.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    warm_up = 30
    start = time.monotonic()
    ok = False
    while time.monotonic() - start < 60:
        try:
            c = channel()
            ok = c["active_input"] == "main" and all(o["state"] == "live" for o in c["outputs"] if o["type"] == "rtmp") \
                and puller.bytes > 0
        except (RuntimeError, OSError):
            ok = False
        if ok and time.monotonic() - start >= warm_up:
            break
        time.sleep(0.5)
    if not ok:
        sys.exit(f"the baseline never came up: {channel()}\nsee {work}")
    baseline_fds = lunora_proc("fds")
    t0 = time.monotonic()
    chaos_end = t0 + max(30, args.duration - warm_up - 15)
    samples = []  # (seconds since t0, rss KiB, fds)
    counts = {k: 0 for k in ["encoder_kills", "nginx_restarts", "puller_joins", "puller_leaves", "api_changes", "api_refusals",
                             "garbage_bursts"]}
    reconnects = []
    pending = []  # (due, what, arg)
    extra_pullers = []
    chaos_outputs = []  # (id, kind)
    nginx_back_at = None
    next_action = t0 + rng.uniform(1, 3)
    # Every kind of chaos happens early at least once (in a seeded order), however short the
    # run; after that the weighted draw decides.
    first_actions = ["encoder", "nginx", "puller", "api", "garbage"]
    rng.shuffle(first_actions)
    next_sample = t0
    serial = 0
    garbage_targets = [("udp", main_port), ("udp", backup_port), ("udp", out_port), ("tcp", http), ("tcp", rtmp_in)]

    def garbage():
        for kind, target in garbage_targets:
            if kind == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    for _ in range(rng.randint(20, 200)):
                        s.sendto(rng.randbytes(rng.randint(1, 1500)), ("127.0.0.1", target))
            else:
                for _ in range(rng.randint(1, 4)):
                    try:
                        with socket.create_connection(("127.0.0.1", target), timeout=0.5) as s:
                            s.sendall(rng.randbytes(rng.randint(1, 4096)))
                    except OSError:
                        pass
        counts["garbage_bursts"] += 1

    def change(method, path, body=None):
        status, reply = api(method, path, body)
        counts["api_changes"] += 1
        if status >= 300:
            counts["api_refusals"] += 1
            print(f"API {method} {path}: {status} {reply}", file=sys.stderr)
        return status

    while time.monotonic() < chaos_end:
        now = time.monotonic()
        if now >= next_sample:
            samples.append((now - t0, lunora_proc("rss"), lunora_proc("fds")))
            next_sample += 1
        if daemon.poll() is not None:
            sys.exit(f"lunora exited: {daemon.returncode}; see {work}/lunora.log")
        if puller.proc.poll() is not None:
            # The measuring puller was dropped: that is a failure in itself, and its gap
            # clock would stop here.
            figures["puller_lost_at_s"] = round(now - t0, 1)
            break
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            what, arg = item[1], item[2]
            if what == "encoder":
                encoders[arg] = encoder(f"{arg}-encoder", ports[arg])
                up_since[arg] = time.monotonic()
            elif what == "nginx":
                server = nginx()
                nginx_back_at = time.monotonic()
        if nginx_back_at is not None:
            try:
                if all(d["state"] == "live" for d in destinations()):
                    reconnects.append(round(time.monotonic() - nginx_back_at, 3))
                    nginx_back_at = None
            except (RuntimeError, OSError):
                pass
        if now >= next_action:
            next_action = now + rng.uniform(1, 3)
            action = first_actions.pop() if first_actions else \
                rng.choices(["encoder", "nginx", "puller", "api", "garbage"], weights=[3, 1, 2, 3, 2])[0]
            if action == "encoder":
                # Mostly the one on air, so kills make failovers, not just reconnections.
                try:
                    on_air = channel()["active_input"]
                except (RuntimeError, OSError):
                    on_air = None
                on_air = on_air if on_air in ("main", "backup") else "main"
                off_air = "backup" if on_air == "main" else "main"
                victim = on_air if rng.random() < 0.7 else off_air
                other = "backup" if victim == "main" else "main"
                if encoders[victim] is not None and encoders[other] is not None and now - up_since[other] >= 5:
                    Procs.stop(encoders[victim])
                    encoders[victim] = None
                    counts["encoder_kills"] += 1
                    pending.append((now + rng.uniform(1, 4), "encoder", victim))
            elif action == "nginx" and server is not None and nginx_back_at is None \
                    and not any(p[1] == "nginx" for p in pending):
                Procs.stop(server)
                counts["nginx_restarts"] += 1
                pending.append((now + rng.uniform(1, 4), "nginx", None))
            elif action == "puller":
                if extra_pullers and (len(extra_pullers) >= 3 or rng.random() < 0.5):
                    Procs.stop(extra_pullers.pop(rng.randrange(len(extra_pullers))))
                    counts["puller_leaves"] += 1
                else:
                    extra_pullers.append(procs.start("extra-puller", ["srt-live-transmit", "-q",
                                                                      f"srt://127.0.0.1:{out_port}?latency=200", "file:///dev/null",
                                                                      "-chunk:1316"]))
                    counts["puller_joins"] += 1
            elif action == "api":
                serial += 1
                kind = rng.choice(["destination", "srt", "policy"])
                if chaos_outputs and (len(chaos_outputs) >= 3 or rng.random() < 0.4):
                    oid, _ = chaos_outputs.pop(rng.randrange(len(chaos_outputs)))
                    change("DELETE", f"/api/v1/channels/program/outputs/{oid}")
                elif kind == "destination" and nginx_back_at is None:
                    oid = f"chaos-{serial}"
                    if change("POST", "/api/v1/channels/program/outputs",
                              {"id": oid, "type": "rtmp", "url": f"rtmp://127.0.0.1:{nginx_port}/live",
                               "stream_key": f"soak-{oid}", "autostart": True, "retry_min_ms": 200, "retry_max_ms": 500}) == 201:
                        change("POST", f"/api/v1/channels/program/outputs/{oid}/start")
                        chaos_outputs.append((oid, kind))
                elif kind == "srt":
                    oid = f"pull-{serial}"
                    if change("POST", "/api/v1/channels/program/outputs",
                              {"id": oid, "type": "srt", "mode": "listener", "listen": f"127.0.0.1:{port()}"}) == 201:
                        chaos_outputs.append((oid, kind))
                else:
                    change("PUT", "/api/v1/channels/program",
                           {"mode": "main-backup", "failover": {"input_loss_ms": INPUT_LOSS_MS,
                                                                "error_clear_ms": rng.choice([2000, 3000])}})
            else:
                garbage()
        time.sleep(0.05)

    # ---- back to the baseline, then the figures ------------------------------------------------
    for due, what, arg in sorted(pending):
        if what == "encoder":
            encoders[arg] = encoder(f"{arg}-encoder", ports[arg])
        elif what == "nginx":
            server = nginx()
            nginx_back_at = time.monotonic()
    for oid, _ in chaos_outputs:
        change("DELETE", f"/api/v1/channels/program/outputs/{oid}")
    for p in extra_pullers:
        Procs.stop(p)
        counts["puller_leaves"] += 1
    settle = time.monotonic() + 20
    while time.monotonic() < settle:
        c = channel()
        live = all(o["state"] == "live" for o in c["outputs"] if o["type"] == "rtmp")
        if nginx_back_at is not None and live:
            reconnects.append(round(time.monotonic() - nginx_back_at, 3))
            nginx_back_at = None
        if live and c["active_input"] == "main":
            break
        time.sleep(0.2)
    time.sleep(3)
    end_fds = lunora_proc("fds")
    samples.append((time.monotonic() - t0, lunora_proc("rss"), end_fds))
    final = channel()
    # Stop the sources and let the puller drain; its gap clock stops first.
    puller.measuring = False
    for name in encoders:
        Procs.stop(encoders[name], getattr(signal, args.end_signal))
    time.sleep(2)
    # SIGINT: srt-live-transmit flushes its buffered stdout; killed, it would leave the last
    # block, cut mid-packet, out of the recording.
    Procs.stop(puller.proc, signal.SIGINT)
    puller.thread.join(timeout=10)

    span = samples[-1][0]
    window = 60 if span >= 240 else 30
    first = [s for s in samples if window <= s[0] < 2 * window] if span >= 240 else [s for s in samples if s[0] < window]
    last = [s for s in samples if s[0] >= span - window]
    rss_first = sum(s[1] for s in first) / max(1, len(first))
    rss_last = sum(s[1] for s in last) / max(1, len(last))
    # Decode with showinfo, so each error line can be placed in the recording (seconds from
    # its start: the frame decoded just before it).
    decoded = subprocess.run(["ffmpeg", "-v", "info", "-i", recording, "-vf", "showinfo", "-af", "ashowinfo", "-f", "null", "-"],
                             capture_output=True, text=True, timeout=900).stderr.splitlines()
    errors_at, at, errors = [], 0.0, []
    first_pts = None
    for line in decoded:
        if "showinfo" in line and "pts_time:" in line:
            try:
                at = float(line.split("pts_time:")[1].split()[0])
            except (IndexError, ValueError):
                pass
            first_pts = at if first_pts is None else first_pts
        elif "error" in line.lower() or "non monotonically" in line or "corrupt" in line or "invalid" in line.lower():
            errors.append(line)
            errors_at.append(round(at - (first_pts or 0.0), 2))
    recorded_s = round(at - (first_pts or 0.0), 2)
    decode = "\n".join(errors)
    figures.update({
        "max_output_gap_s": round(puller.max_gap, 3),
        "max_output_gap_at_s": round(puller.max_gap_at - t0, 1) if puller.max_gap_at else None,
        "received_mib": round(puller.bytes / 2**20, 1),
        "decode_error_lines": len(decode.splitlines()),
        "decode_errors": decode.splitlines()[:10],
        "decode_errors_at_s": errors_at[:10],
        "recorded_s": recorded_s,
        "continuity_errors": continuity_errors(recording),
        "rss_kib_reference": round(rss_first),
        "rss_kib_last": round(rss_last),
        "rss_drift": round(rss_last / rss_first - 1, 3) if rss_first else None,
        "rss_window_s": window,
        "rss_kib_by_minute": [round(sum(x[1] for x in m) / len(m)) for m in
                              ([s for s in samples if i * 60 <= s[0] < (i + 1) * 60] for i in range(int(span // 60) + 1)) if m],
        "fds_baseline_start": baseline_fds,
        "fds_baseline_end": end_fds,
        "fds_max": max(s[2] for s in samples),
        "reconnect_s": reconnects,
        "reconnect_max_s": max(reconnects) if reconnects else None,
        "reconnect_p50_s": pct(reconnects, 50),
        "destinations_live_at_end": [o["id"] for o in final["outputs"] if o["state"] == "live"],
        "active_input_at_end": final["active_input"],
        "switches": sum(c["count"] for c in final["switch_counts"]),
        "puller_lost_at_s": figures.get("puller_lost_at_s"),
        "lunora_alive": daemon.poll() is None,
        **counts,
    })
    log = open(os.path.join(work, "lunora.log"), errors="replace").read()
    figures["lunora_panics"] = log.count("panicked")


if __name__ == "__main__":
    main()
