#!/usr/bin/python3
"""A WHIP publisher on GStreamer's webrtcbin (libnice ICE), for tests/it/whip.rs.

Sends 640x360p30 video (H.264, or HEVC with --video h265; keyframe every 2 s) and (unless
--no-audio) Opus audio that flash and beep together:
for the first 200 ms of every second of the pipeline's running time the picture is white and a
440 Hz tone sounds, otherwise the picture is black and the audio silent, so a recording shows
how far audio and video moved apart on the way. The HTTP leg is
the test's: this writes its offer (ICE gathered) to --offer and waits for the answer SDP in
--answer (each file appears whole, by rename), so it can run in a network namespace of its own
while the daemon's HTTP stays on loopback. Runs until killed or for --seconds; exits 1 if
ICE/DTLS never connected.
"""

import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstController", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstController, GstSdp, GstWebRTC  # noqa: E402

ENCODERS = {
    "h264": """x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=1000
  ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 aggregate-mode=zero-latency
  ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000""",
    "h265": """x265enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=1000
  ! video/x-h265,profile=main ! rtph265pay config-interval=-1 pt=96 aggregate-mode=zero-latency
  ! application/x-rtp,media=video,encoding-name=H265,payload=96,clock-rate=90000""",
}

PIPELINE = """
webrtcbin name=pc bundle-policy=max-bundle
videotestsrc name=video is-live=true pattern=solid-color ! video/x-raw,width=640,height=360,framerate=30/1
  ! videoconvert ! {video} ! pc.
"""

AUDIO = """
audiotestsrc name=audio is-live=true samplesperbuffer=240 wave=sine freq=440 ! audioconvert ! audioresample ! opusenc
  ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! pc.
"""

FLASH = 200 * Gst.MSECOND


def flash_every_second(element, prop, on, off, seconds):
    """Steps `prop` to `on` at each second of running time and back to `off` FLASH later; the
    sources apply control values at each buffer's own timestamp, so both stay in step."""
    control = GstController.InterpolationControlSource()
    control.set_property("mode", GstController.InterpolationMode.NONE)
    element.add_control_binding(GstController.DirectControlBinding.new_absolute(element, prop, control))
    for second in range(seconds + 2):
        control.set(second * Gst.SECOND, on)
        control.set(second * Gst.SECOND + FLASH, off)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--offer", required=True)
    ap.add_argument("--answer", required=True)
    ap.add_argument("--video", choices=sorted(ENCODERS), default="h264")
    ap.add_argument("--no-audio", action="store_true", help="video only, as from a camera without a microphone")
    args = ap.parse_args()
    Gst.init(None)
    description = PIPELINE.format(video=ENCODERS[args.video]) + ("" if args.no_audio else AUDIO)
    pipeline = Gst.parse_launch(description)
    pc = pipeline.get_by_name("pc")
    # Sender reports stamped with capture time, as browsers send them: by default rtpbin
    # stamps send time, which on a loaded box runs at another rate than the RTP clock.
    pc.get_by_name("rtpbin").set_property("rtcp-sync-send-time", False)
    flash_every_second(pipeline.get_by_name("video"), "foreground-color", float(0xFFFFFFFF), float(0xFF000000), args.seconds)
    if not args.no_audio:
        flash_every_second(pipeline.get_by_name("audio"), "volume", 0.8, 0.0, args.seconds)
    loop = GLib.MainLoop()
    state = {"connected": False}

    def sendonly(*_):
        for i in range(2):
            transceiver = pc.emit("get-transceiver", i)
            if transceiver is not None:
                transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)

    def poll_answer():
        if not os.path.exists(args.answer):
            return True
        with open(args.answer) as f:
            _, sdp = GstSdp.SDPMessage.new_from_text(f.read())
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        pc.emit("set-remote-description", description, Gst.Promise.new())
        return False

    def gathered(*_):
        if pc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        offer = pc.get_property("local-description").sdp.as_text()
        with open(args.offer + ".part", "w") as f:
            f.write(offer)
        os.rename(args.offer + ".part", args.offer)
        GLib.timeout_add(50, poll_answer)

    def offer_created(promise, _):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply.has_field("offer") else None
        if offer is None:
            print(f"no offer: {reply.to_string()}", file=sys.stderr, flush=True)
            return
        pc.emit("set-local-description", offer, Gst.Promise.new())

    def negotiate(*_):
        sendonly()
        pc.emit("create-offer", None, Gst.Promise.new_with_change_func(offer_created, None))

    def connection(*_):
        value = pc.get_property("connection-state")
        print(f"connection state: {value.value_nick}", file=sys.stderr, flush=True)
        if value == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            state["connected"] = True

    pc.connect("on-negotiation-needed", negotiate)
    pc.connect("notify::ice-gathering-state", gathered)
    pc.connect("notify::connection-state", connection)
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add_seconds(args.seconds, loop.quit)
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message::error", lambda _b, m: (print(m.parse_error(), file=sys.stderr), loop.quit()))
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    sys.exit(0 if state["connected"] else 1)


if __name__ == "__main__":
    main()
