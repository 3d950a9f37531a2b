#!/usr/bin/env python3
"""WHIP ingest bench with a real browser.

Debian's headless Chromium (fake camera and microphone) publishes 1280x720p30 at 2.5 Mbit/s
through the dashboard's go-live page (web/tests/dashboard.test.mjs, scenario `golive`) into a
WHIP input of channel `program`; the channel's SRT listener output is read by
`ffmpeg -c copy` (to /dev/null) in the same run.

Prints:
  cpu        lunora's and that ffmpeg's CPU (share of one core) over --seconds, side by side:
             what one WHIP input costs (SRTP, depacketizing, Opus -> AAC through GStreamer,
             the channel, the TS mux and the SRT send) next to a plain remux of the result
  keyframe   the wait from a switch decision to the cut (`decision_to_cut_ms`) for --switches
             forced cuts back to the WHIP input (p50, max); a test-pattern backup is added
             through the API for the cuts away

    python3 benches/whip_ingest.py [--seconds 30] [--switches 10]
$LUNORA names the binary (default: this checkout's release build, made here; a debug build
overstates lunora's CPU several times). Loopback only; every process is stopped on exit.
"""

import argparse
from http.cookiejar import CookieJar
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import port, wait_for, pct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench-admin-password"
TOKEN = "whip-bench-token-0123456789"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Api:
    """The daemon's API as a logged-in admin (a session cookie, JSON changes)."""

    def __init__(self, http):
        self.base = f"http://127.0.0.1:{http}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with self.opener.open(request, timeout=10) as r:
            text = r.read()
            return json.loads(text) if text else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--switches", type=int, default=10)
    args = ap.parse_args()

    lunora = os.environ.get("LUNORA")
    if not lunora:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "lunora"], cwd=ROOT, check=True, capture_output=True)
        lunora = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "lunora")
    work = tempfile.mkdtemp(prefix="lunora-whip-bench-")
    procs = []

    def start(argv, log, **kw):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True, **kw)
        procs.append(p)
        return p

    try:
        udp, out, http = port(), port(), port(socket.SOCK_STREAM)
        config = os.path.join(work, "lunora.toml")
        with open(config, "w") as f:
            f.write(
                f'[http]\nlisten = "127.0.0.1:{http}"\n\n[slate]\nenabled = false\n\n'
                f'[whip]\nudp_listen = "127.0.0.1:{udp}"\nice_addresses = ["127.0.0.1"]\n\n'
                '[[channels]]\nid = "program"\nmode = "main-backup"\n\n'
                '[channels.failover]\ninput_loss_ms = 1000\nerror_clear_ms = 1000\n\n'
                f'[[channels.inputs]]\nid = "cam"\nrole = "main"\ntype = "whip"\ntoken = "{TOKEN}"\n\n'
                f'[[channels.outputs]]\nid = "out"\ntype = "srt"\nmode = "listener"\nlisten = "127.0.0.1:{out}"\nlatency_ms = 200\n'
            )
        env = dict(os.environ, LUNORA_ADMIN_PASSWORD=PASSWORD, LUNORA_STATE_DIR=os.path.join(work, "state"))
        env.pop("RUST_LOG", None)
        daemon = start([lunora, "run", "--config", config], os.path.join(work, "lunora.log"), env=env)
        api = Api(http)
        if not wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2).status == 200, 30):
            sys.exit(f"lunora did not start; see {work}/lunora.log")
        api.call("POST", "/api/v1/session", {"username": "admin", "password": PASSWORD})

        hold = args.seconds + 15 + args.switches * 6
        browser = start(
            ["node", os.path.join(ROOT, "web/tests/dashboard.test.mjs")],
            os.path.join(work, "browser.log"),
            cwd=os.path.join(ROOT, "web"),
            env=dict(os.environ, LUNORA_URL=f"http://127.0.0.1:{http}", SCREENSHOT=os.path.join(work, "golive.png"),
                     SCENARIO="golive", LUNORA_ADMIN_PASSWORD=PASSWORD, GOLIVE_INPUT="cam", GOLIVE_HOLD_S=str(hold)),
        )
        cam = lambda: next(i for i in api.call("GET", "/api/v1/channels/program")["inputs"] if i["id"] == "cam")
        if not wait_for(lambda: cam()["state"] == "connected" and cam()["frames_total"]["video"] > 0, 90):
            sys.exit(f"Chromium did not go live; see {work}/browser.log")
        time.sleep(3)
        reader = start(["ffmpeg", "-v", "warning", "-i", f"srt://127.0.0.1:{out}?mode=caller&latency=200000",
                        "-c", "copy", "-f", "mpegts", "-y", "/dev/null"], os.path.join(work, "ffmpeg.log"))
        time.sleep(3)
        before = (cpu_seconds(daemon.pid), cpu_seconds(reader.pid), time.time())
        time.sleep(args.seconds)
        after = (cpu_seconds(daemon.pid), cpu_seconds(reader.pid), time.time())
        wall = after[2] - before[2]
        video = cam()["video"] or {}
        print(f"input: {video.get('codec')} {video.get('width')}x{video.get('height')} "
              f"{video.get('frame_rate')} fps, {cam()['bitrate_bps'] / 1e6:.2f} Mbit/s from Chromium")
        print(f"cpu over {wall:.0f} s: lunora {100 * (after[0] - before[0]) / wall:.1f} % of a core, "
              f"ffmpeg -c copy of its SRT output {100 * (after[1] - before[1]) / wall:.1f} %")

        api.call("POST", "/api/v1/channels/program/inputs",
                 {"id": "bars", "role": "backup", "type": "test_pattern", "width": 1280, "height": 720, "frame_rate": "30", "bitrate_kbps": 1500})
        wait_for(lambda: any(i["id"] == "bars" and i["state"] == "connected" for i in api.call("GET", "/api/v1/channels/program")["inputs"]), 30)
        waits = []
        for _ in range(args.switches):
            for target in ("bars", "cam"):
                api.call("POST", "/api/v1/channels/program/switch", {"input": target})
                if not wait_for(lambda: api.call("GET", "/api/v1/channels/program")["active_input"] == target, 10):
                    sys.exit(f"no cut to {target}; see {work}/lunora.log")
                time.sleep(2)
                if target == "cam":
                    cut = [s for s in api.call("GET", "/api/v1/channels/program")["switches"] if s["to"] == "cam"][-1]
                    waits.append(cut["decision_to_cut_ms"])
        print(f"keyframe wait on {len(waits)} cuts to the WHIP input: p50 {pct(waits, 50)} ms, "
              f"max {max(waits)} ms, mean {statistics.mean(waits):.0f} ms (all: {waits})")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        if os.environ.get("KEEP_WORK"):
            print(f"kept {work}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
