#!/usr/bin/env python3
"""Added latency of an SRT relay, measured on the wire (used by benches/srt_relay.sh).

Captures loopback traffic for SECONDS (an AF_PACKET socket on `lo` with kernel receive
timestamps: needs root or CAP_NET_RAW) and, for every video frame, takes
  t_in     the kernel time of the first SRT data datagram *to* IN_PORT carrying the frame's
           PES header (first transmission; retransmissions are ignored),
  t_ready  the same for the next video PES header on the input: with PES_packet_length 0 (what
           encoders send for large video frames) this is when a demuxer can know the frame ended,
  t_out    the first SRT data datagram *from* OUT_PORT carrying that frame's PES header.
The box may re-mux (lunora does: TS bytes are not preserved) and shift timestamps by a constant
offset, so frames are matched by PTS: the source must have irregular frame intervals (the bench
makes it with ffmpeg's setpts) so that exactly one offset lines the two PTS series up.

Prints one JSON object: frame counts and p50/p99/max in milliseconds of t_out - t_in
("start") and t_out - t_ready ("after frame end").
Usage: srt_latency.py IN_PORT OUT_PORT SECONDS
"""

import collections
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PACKET_HOST = 0


def pes_starts(payload):
    """(pid, pts) of each TS packet in an SRT payload that starts a video PES with a PTS."""
    out = []
    for at in range(0, len(payload) - 187, 188):
        packet = payload[at:at + 188]
        if packet[0] != 0x47 or not packet[1] & 0x40:
            continue
        control = (packet[3] >> 4) & 3
        start = 4
        if control & 2:
            start += 1 + packet[4]
        if not control & 1 or start + 14 > 188:
            continue
        pes = packet[start:]
        if pes[0:3] != b"\x00\x00\x01" or pes[3] & 0xF0 != 0xE0 or not pes[7] & 0x80:
            continue
        p = pes[9:14]
        pts = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
        out.append((((packet[1] & 0x1F) << 8) | packet[2], pts))
    return out


def capture(in_port, out_port, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind(("lo", 0))
    s.settimeout(0.2)
    seen_in = set()
    frames_in = []  # (pts, t) in arrival order
    out = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, anc, _, addr = s.recvmsg(65536, 64)
        except socket.timeout:
            continue
        if addr[2] != PACKET_HOST or len(data) < 14 + 20 + 8 + 16:
            continue
        ip = data[14:]
        if ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 0x0F) * 4:]
        sport, dport = struct.unpack("!HH", udp[:4])
        srt = udp[8:]
        if srt[0] & 0x80:
            continue  # control packet
        if dport == in_port:
            side = "in"
        elif sport == out_port:
            side = "out"
        else:
            continue
        t = next((struct.unpack("qq", d[:16]) for lvl, typ, d in anc
                  if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS), None)
        if t is None:
            continue
        t = t[0] + t[1] / 1e9
        starts = pes_starts(srt[16:])
        if not starts:
            continue
        if side == "in":
            seq = struct.unpack("!I", srt[:4])[0]
            if seq in seen_in:
                continue
            seen_in.add(seq)
            frames_in.extend((pts, t) for _, pts in starts)
        else:
            for _, pts in starts:
                out.setdefault(pts, t)
    return frames_in, out


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    in_port, out_port, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    frames_in, out = capture(in_port, out_port, seconds)
    first_in = {}
    ready = {}
    for i, (pts, t) in enumerate(frames_in):
        first_in.setdefault(pts, t)
        if i + 1 < len(frames_in):
            ready.setdefault(pts, frames_in[i + 1][1])
    # The one PTS offset (mod 2^33) under which most output frames have an input frame.
    offsets = collections.Counter()
    for o in list(out)[:60]:
        for i in first_in:
            offsets[(o - i) % (1 << 33)] += 1
    result = {"frames_in": len(first_in), "frames_out": len(out)}
    if offsets:
        offset, votes = offsets.most_common(1)[0]
        start, after_end = [], []
        for o, t_out in out.items():
            i = (o - offset) % (1 << 33)
            if i in first_in:
                start.append((t_out - first_in[i]) * 1000)
                if i in ready:
                    after_end.append((t_out - ready[i]) * 1000)
        result.update(pts_offset=offset, offset_votes=votes, matched=len(start))
        for name, values in (("start", start), ("after_frame_end", after_end)):
            if values:
                result[name] = {
                    "p50_ms": round(percentile(values, 0.5), 2),
                    "p99_ms": round(percentile(values, 0.99), 2),
                    "max_ms": round(max(values), 2),
                }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
