#!/usr/bin/env python3
"""Failover bench with real encoders.

One ffmpeg makes a live 640x360p25 mezzanine on loopback UDP; two independent ffmpeg encoders
(libx264, 1 s GOP) push SRT into lunora's main and backup inputs. With `--clock shared` (and
with `cut`) both encoders keep the mezzanine's timestamps (`-copyts`), as timecode-locked
encoders do; with `--clock arrival` or `--clock content` each stamps its own clock (no
`-copyts`, so every restarted main encoder starts a new one) and the backup's SRT latency is
600 ms longer, as with two real encoders on different paths. The main encoder is killed N
times (and restored after each switch); lunora's SRT output is recorded by ffmpeg throughout.
The mezzanine writes each picture's number into its top rows, so the recording says which
pictures went out.

Prints, p50 and max over the losses:
  detection  last main frame -> switch decision (lunora's own clock)
  wait       decision -> backup keyframe (the cut)
  gap        output gap at the cut (0 = seamless)
and, from the picture numbers in the recording, the seam error at every seam (pictures skipped
(+) or repeated (-)), and the conformance of the recording: decode errors, non-monotonic DTS.

    python3 benches/failover.py [--losses 20] [--mode cut|aligned] [--clock shared|arrival|content]
Loopback only; every process is stopped on exit.
"""

import argparse
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


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, log, env=None):
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "w"), start_new_session=True, env=env)
        self.procs.append(p)
        return p

    @staticmethod
    def kill(p, sig=signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                self.kill(p)


TOKEN = []


def get(http, path):
    request = urllib.request.Request(f"http://127.0.0.1:{http}{path}", headers={"Authorization": f"Bearer {TOKEN[0]}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--losses", type=int, default=20)
    ap.add_argument("--mode", choices=["cut", "aligned"], default="cut")
    ap.add_argument("--clock", choices=["shared", "arrival", "content"], default="shared")
    ap.add_argument("--debug", action="store_true", help="use target/debug/lunora (no release build)")
    ap.add_argument("--verbose", action="store_true", help="print every switch record")
    args = ap.parse_args()

    profile = "debug" if args.debug else "release"
    subprocess.run(["cargo", "build", "--locked", "-p", "lunora"] + ([] if args.debug else ["--release"]), cwd=ROOT, check=True, capture_output=True)
    own_clocks = args.clock != "shared"
    work = tempfile.mkdtemp(prefix="lunora-failover-")
    procs = Procs()
    try:
        main_port, backup_port, out_port, http = port(), port(), port(), port(socket.SOCK_STREAM)
        udp = [port(), port()]
        config = os.path.join(work, "lunora.toml")
        with open(config, "w") as f:
            # No slate: the bench ends by stopping the encoders and letting the reader drain.
            f.write(f"""[http]
listen = "127.0.0.1:{http}"
[slate]
enabled = false
[[channels]]
id = "program"
mode = "main-backup"
[channels.failover]
input_loss_ms = 500
error_clear_ms = 3000
switch = "{args.mode}"
{f'aligned_clock = "{args.clock}"' if args.mode == "aligned" else ""}
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
[[channels.outputs]]
id = "out"
type = "srt"
mode = "listener"
listen = "127.0.0.1:{out_port}"
latency_ms = 200
""")
        lunora = os.path.join(ROOT, f"target/{profile}/lunora")
        env = dict(os.environ, LUNORA_ADMIN_PASSWORD="bench-admin-password", LUNORA_STATE_DIR=os.path.join(work, "state"))
        env.pop("RUST_LOG", None)
        procs.start([lunora, "run", "--config", config], os.path.join(work, "lunora.log"), env)
        def ready():
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2) as r:
                return r.status == 200
        # The daemon creates the first superadmin: the token waits for it.
        if not wait_for(ready, 30):
            sys.exit(f"lunora did not start; see {work}/lunora.log")
        for attempt in range(40):
            made = subprocess.run([lunora, "token", "create", "bench", "--user", "admin", "--config", config], env=env,
                                  capture_output=True, text=True, timeout=60)
            if made.returncode == 0:
                TOKEN.append(made.stdout.splitlines()[1].strip())
                break
            time.sleep(0.5)
        else:
            sys.exit(f"lunora token create failed: {made.stderr}")
        if not wait_for(lambda: get(http, "/api/v1/channels/program") is not None, 15):
            sys.exit("lunora did not start")
        recording = os.path.join(work, "program.ts")
        reader = procs.start(["ffmpeg", "-v", "warning", "-analyzeduration", "1000000", "-probesize", "1000000", "-i",
                              f"srt://127.0.0.1:{out_port}?latency=200000&timeout=8000000", "-c", "copy", "-f", "mpegts", "-y", recording],
                             os.path.join(work, "reader.log"))
        tee = "|".join(f"[f=mpegts:onfail=ignore]udp://127.0.0.1:{p}?pkt_size=1316" for p in udp)
        # Picture number n in the top 16 rows: bit b is the 16x16 block at x = 16 b, white for 1.
        code = "format=gray,geq=lum='if(lt(Y\\,16)\\,if(lt(X\\,256)\\,255*mod(floor(N/pow(2\\,floor(X/16)))\\,2)\\,0)\\,p(X\\,Y))',format=yuv420p"
        procs.start(["ffmpeg", "-v", "warning", "-re", "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25,{code}", "-f", "lavfi", "-i",
                     "sine=frequency=440:sample_rate=48000", "-map", "0:v", "-map", "1:a", "-c:v", "mpeg2video", "-q:v", "3", "-g", "12",
                     "-c:a", "mp2", "-f", "tee", tee], os.path.join(work, "mezzanine.log"))

        def encoder(i, srt_port):
            latency = 800000 if own_clocks and i == 1 else 200000
            return procs.start(["ffmpeg", "-v", "error", "-analyzeduration", "500000", "-probesize", "500000"] + ([] if own_clocks else ["-copyts"]) + ["-i",
                                f"udp://127.0.0.1:{udp[i]}?fifo_size=100000&overrun_nonfatal=1", "-c:v", "libx264", "-preset", "ultrafast",
                                "-tune", "zerolatency", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-b:v", "800k", "-c:a", "aac",
                                "-f", "mpegts", f"srt://127.0.0.1:{srt_port}?latency={latency}&pkt_size=1316"], os.path.join(work, f"encoder{i}.log"))

        encoder(1, backup_port)
        main_encoder = encoder(0, main_port)
        active = lambda: get(http, "/api/v1/channels/program")["active_input"]
        seen = {}
        for n in range(args.losses):
            if not wait_for(lambda: active() == "main", 30):
                sys.exit(f"loss {n}: main not on air")
            time.sleep(1.5)
            procs.kill(main_encoder)
            if not wait_for(lambda: active() == "backup", 15):
                sys.exit(f"loss {n}: no switch to backup")
            for s in get(http, "/api/v1/channels/program")["switches"]:
                seen[(s["at"], s["to"])] = s
            main_encoder = encoder(0, main_port)
            print(f"loss {n + 1}/{args.losses}", file=sys.stderr)
        wait_for(lambda: active() == "main", 30)
        for s in get(http, "/api/v1/channels/program")["switches"]:
            seen[(s["at"], s["to"])] = s
        # Stop the sources first and let the reader end on its read timeout; lunora goes last,
        # so the recording never ends in a frame cut short by a killed sender.
        for p in procs.procs[2:]:
            procs.kill(p)
        reader.wait(timeout=30)
        procs.kill(procs.procs[0])

        if args.verbose:
            for s in sorted(seen.values(), key=lambda s: s["at"]):
                print(json.dumps(s))
            print(open(os.path.join(work, "lunora.log")).read()[-6000:])
        losses = [s for s in seen.values() if s["reason"] == "input_lost"]
        returns = [s for s in seen.values() if s["reason"] == "return_to_primary"]
        def row(name, values, unit):
            print(f"{name:<34} p50 {pct(values, 50):>7} {unit}   max {max(values) if values else 'n/a':>7} {unit}   (n={len(values)})")
        print(f"\nmode: {args.mode}; {len(losses)} losses, {len(returns)} returns to main")
        row("detection (last frame -> decision)", [s["detection_ms"] for s in losses if s["detection_ms"] is not None], "ms")
        row("keyframe wait (decision -> cut)", [s["decision_to_cut_ms"] for s in losses], "ms")
        row("output gap at loss", [s["gap_ms"] for s in losses], "ms")
        row("output gap at return to main", [s["gap_ms"] for s in returns], "ms")
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", recording, "-map", "0:v", "-vf", "crop=256:16:0:0,format=gray", "-f", "rawvideo", "-"],
                             capture_output=True).stdout
        size = 256 * 16
        codes = [sum(1 << b for b in range(16) if raw[k + 8 * 256 + b * 16 + 8] > 128) for k in range(0, len(raw) - size + 1, size)]
        errors = [b - a - 1 for a, b in zip(codes, codes[1:]) if b != a + 1]
        seams = len(losses) + len(returns)
        print(f"seams by picture number: {len(errors)} of {seams} seams not content-exact; errors (frames): {errors}")
        print(f"  seam error max |{max((abs(e) for e in errors), default=0)}| frames over {len(codes)} pictures")

        decode = subprocess.run(["ffmpeg", "-v", "error", "-i", recording, "-f", "null", "-"], capture_output=True, text=True).stderr
        dts = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,dts", "-of", "csv=p=0", recording],
                             capture_output=True, text=True).stdout
        last, backwards = {}, 0
        for line in dts.splitlines():
            parts = line.split(",")
            if len(parts) >= 2 and parts[1].strip().lstrip("-").isdigit():
                s, d = parts[0], int(parts[1])
                backwards += s in last and d <= last[s]
                last[s] = d
        reader_log = open(os.path.join(work, "reader.log")).read()
        warnings = [l for l in reader_log.splitlines() if "corrupt" in l or "Non-monotonic" in l]
        print(f"conformance: {len(decode.splitlines())} decode error lines, {backwards} non-increasing DTS, {len(warnings)} reader warnings")
        for line in (decode.splitlines() + warnings)[:10]:
            print(f"  {line}")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
