//! RTP inputs against ffmpeg's `rtp_mpegts` muxer, directly and through a loopback relay
//! inside the test that reorders, duplicates, drops and delays packets; the merge of two
//! paths (SMPTE 2022-7). The channel's SRT listener output is recorded byte for byte
//! (srt-live-transmit) and checked with ffprobe and the continuity counters.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;

/// ffmpeg sending `file` in real time as MPEG-TS over RTP (payload type 33).
fn rtp_push(dir: &Path, file: &Path, port: u16) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    Proc::spawn(
        "ffmpeg rtp_mpegts",
        dir,
        std::process::Command::new(ffmpeg)
            .args(["-v", "warning", "-re", "-i"])
            .arg(file)
            .args(["-c", "copy", "-f", "rtp_mpegts"])
            .arg(format!("rtp://127.0.0.1:{port}?pkt_size=1316")),
    )
}

fn rtp_input(id: &str, role: &str, port: u16, extra: &str) -> String {
    format!(
        "[[channels.inputs]]\nid = \"{id}\"\nrole = \"{role}\"\ntype = \"rtp\"\nlisten = \"127.0.0.1:{port}\"\n{extra}\n"
    )
}

/// Channel "program" without a slate: when the sender ends, the output ends (and the recording
/// with it, on a whole frame).
fn channel(mode: &str, failover_extra: &str, inputs: &str, output: u16) -> String {
    format!(
        "[[channels]]\nid = \"program\"\nmode = \"{mode}\"\n\n[channels.slate]\nenabled = false\n\n[channels.failover]\ninput_loss_ms = 1000\n{failover_extra}\n\n{inputs}\n{}",
        srt_listener_output("out", output)
    )
}

fn field(value: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = value;
    for key in path {
        v = &v[*key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{} missing or not a count in {value}", path.join(".")))
}

/// Records the channel's output while `run` feeds it, then checks the recording is whole.
fn record_clean(dir: &Path, output: u16, run: impl FnOnce()) -> PathBuf {
    let recording = dir.join("recording.ts");
    let mut reader = slt_record(
        dir,
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200"),
        &recording,
    );
    run();
    // The last frames reach the reader before it is stopped.
    std::thread::sleep(Duration::from_millis(1500));
    reader.signal(Signal::SIGINT);
    reader.wait(Duration::from_secs(10)).expect("reader stops");
    let continuity = ts_continuity(&recording);
    assert_eq!(continuity.sync_errors, 0, "{continuity:?}");
    assert_eq!(continuity.cc_errors, 0, "{continuity:?}");
    let decode = decode_warnings(&recording);
    assert!(
        !decode.contains("onotonic") && !decode.contains("corrupt"),
        "decoding the output produced warnings:\n{decode}"
    );
    recording
}

/// ffprobe decodes at least `at_least` video frames of the `sent` from `recording`.
fn assert_decodes(recording: &Path, at_least: u64, sent: u64) {
    let frames = decoded_video_frames(recording);
    assert!(
        frames >= at_least,
        "ffprobe decoded {frames} video frames of {sent}"
    );
}

fn wait_connected(daemon: &Daemon, input: &str) {
    assert!(
        wait_for(
            Duration::from_secs(15),
            || daemon.input("program", input)["state"] == "connected"
        ),
        "input {input} never received: {}\n{}",
        daemon.input("program", input),
        daemon.log()
    );
}

#[test]
fn rtp_mpegts_from_ffmpeg_comes_out_clean() {
    let (port, output) = (free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let clip = make_ts(dir.path(), "clip.ts", 12, "640x360", "1500k");
    let daemon = Daemon::start(&channel(
        "single",
        "",
        &rtp_input("cam", "main", port, ""),
        output,
    ));
    let recording = record_clean(dir.path(), output, || {
        let mut sender = rtp_push(dir.path(), &clip, port);
        wait_connected(&daemon, "cam");
        sender.wait(Duration::from_secs(30)).expect("ffmpeg ends");
    });
    assert_decodes(&recording, 200, 300);
    let input = daemon.input("program", "cam");
    assert!(
        field(&input, &["rtp", "packets_received"]) > 1_000,
        "{input}"
    );
    assert_eq!(field(&input, &["rtp", "packets_lost"]), 0, "{input}");
    assert_eq!(
        field(&input, &["tr101290", "continuity_count_error"]),
        0,
        "{input}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn udp_ts_is_received_and_garbage_on_an_rtp_port_is_counted_not_fatal() {
    let (udp, rtp, output) = (free_udp_port(), free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let clip = make_ts(dir.path(), "clip.ts", 8, "640x360", "1500k");
    let daemon = Daemon::start(&channel(
        "main-backup",
        "",
        &format!(
            "{}{}",
            rtp_input("udp", "main", udp, "format = \"udp-ts\""),
            rtp_input("rtp", "backup", rtp, "")
        ),
        output,
    ));
    record_clean(dir.path(), output, || {
        let mut sender = ffmpeg_push(
            dir.path(),
            "ffmpeg udp",
            &clip,
            &format!("udp://127.0.0.1:{udp}?pkt_size=1316"),
        );
        wait_connected(&daemon, "udp");
        // Not RTP, RTP with a payload type other than 33, a CSRC list past the end, padding
        // larger than the packet, and an RTP header alone.
        let garbage = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut header = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        for datagram in [
            b"hello".to_vec(),
            header.clone(),
            {
                header[0] = 0x8f;
                header.clone()
            },
            {
                header[0] = 0xa0;
                header[1] = 33;
                [&header[..], &[1, 2, 200]].concat()
            },
        ] {
            for _ in 0..50 {
                garbage.send_to(&datagram, ("127.0.0.1", rtp)).unwrap();
            }
        }
        sender.wait(Duration::from_secs(30)).expect("ffmpeg ends");
    });
    let input = daemon.input("program", "udp");
    assert!(field(&input, &["ts_packets_total"]) > 5_000, "{input}");
    assert!(
        input["rtp"].is_null(),
        "plain UDP has no RTP figures: {input}"
    );
    let rtp_input = daemon.input("program", "rtp");
    let invalid = &rtp_input["rtp"]["packets_invalid"];
    for (reason, n) in [("payload_type", 50), ("truncated", 50), ("padding", 50)] {
        assert_eq!(field(invalid, &[reason]), n, "{rtp_input}");
    }
    // "hello" is too short for an RTP header.
    assert_eq!(field(invalid, &["short"]), 50, "{rtp_input}");
    assert_eq!(
        rtp_input["state"], "waiting",
        "garbage is no sender: {rtp_input}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn multicast_with_a_source_filter_takes_only_the_named_sender() {
    let netns = Netns::create("mc", 1);
    netns.route_multicast();
    // A second sender in the namespace, at .3, sending garbage to the same group and port.
    netns.add_address(3);
    let (group, port, output) = ("239.255.77.1", free_udp_port(), free_udp_port());
    let (host, source, imposter) = (netns.host_address(), netns.address(2), netns.address(3));
    let dir = tempfile::tempdir().unwrap();
    let clip = make_ts(dir.path(), "clip.ts", 10, "640x360", "1500k");
    let daemon = Daemon::start(&channel(
        "single",
        "",
        &format!(
            "[[channels.inputs]]\nid = \"cam\"\ntype = \"rtp\"\nlisten = \"{group}:{port}\"\nsource = \"{source}\"\ninterface = \"{host}\"\n"
        ),
        output,
    ));
    // What reaches the box: a socket of ours in the group from any source, on the same port.
    let witness = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    witness.set_reuse_address(true).unwrap();
    let bound: std::net::SocketAddr = format!("{group}:{port}").parse().unwrap();
    witness.bind(&bound.into()).unwrap();
    witness
        .join_multicast_v4(&group.parse().unwrap(), &host.parse().unwrap())
        .unwrap();
    let witness: UdpSocket = witness.into();
    witness
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let garbage = "import socket,time\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind((IMPOSTER,0))\n\
         for n in range(200):\n    s.sendto(b'\\x80\\x21'+bytes(1314),(GROUP,PORT)); time.sleep(0.03)\n"
        .replace("IMPOSTER", &format!("'{imposter}'"))
        .replace("GROUP", &format!("'{group}'"))
        .replace("PORT", &port.to_string());
    let recording = record_clean(dir.path(), output, || {
        let ffmpeg = require("ffmpeg", "ffmpeg");
        let mut sender = Proc::spawn(
            "ffmpeg rtp_mpegts multicast",
            dir.path(),
            netns
                .command(ffmpeg)
                .args(["-v", "warning", "-re", "-i"])
                .arg(&clip)
                .args(["-c", "copy", "-f", "rtp_mpegts"])
                .arg(format!(
                    "rtp://{group}:{port}?pkt_size=1316&ttl=1&localaddr={source}"
                )),
        );
        let mut intruder = Proc::spawn(
            "imposter",
            dir.path(),
            netns.command("/usr/bin/python3").args(["-c", &garbage]),
        );
        wait_connected(&daemon, "cam");
        let input = daemon.input("program", "cam");
        assert!(
            input["peer"]
                .as_str()
                .is_some_and(|peer| peer.starts_with(&format!("{source}:"))),
            "{input}"
        );
        let mut seen = std::collections::BTreeMap::<String, u64>::new();
        let mut buffer = [0u8; 2048];
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok((_, from)) = witness.recv_from(&mut buffer) {
                *seen.entry(from.ip().to_string()).or_default() += 1;
            }
        }
        assert!(
            seen.get(&imposter).copied().unwrap_or(0) > 10
                && seen.get(&source).copied().unwrap_or(0) > 100,
            "both senders' datagrams reach the box: {seen:?}"
        );
        intruder
            .wait(Duration::from_secs(20))
            .expect("imposter ends");
        sender.wait(Duration::from_secs(30)).expect("ffmpeg ends");
    });
    assert_decodes(&recording, 200, 250);
    let input = daemon.input("program", "cam");
    assert_eq!(
        input["rtp"]["packets_invalid"],
        serde_json::json!({}),
        "the imposter's datagrams were filtered out: {input}"
    );
    assert_eq!(field(&input, &["rtp", "packets_lost"]), 0, "{input}");
    assert!(daemon.stop().success());
}

/// Two RTP ports whose RTCP ports (+1) are free too: video's and audio's.
fn free_rtp_ports() -> (u16, u16) {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..200 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if let Some(rtcp) = port
            .checked_add(1)
            .and_then(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
        {
            ports.push(port);
            held.push(rtcp);
            if let [video, audio] = ports[..] {
                return (video, audio);
            }
        }
        held.push(socket);
    }
    panic!("no two free pairs of UDP ports on 127.0.0.1");
}

/// The main input "cam" of `format = "sdp"` reading `sdp` (its ports from the SDP).
fn sdp_input(sdp: &Path) -> String {
    rtp_input(
        "cam",
        "main",
        0,
        &format!("format = \"sdp\"\nsdp = {:?}", sdp.display().to_string()),
    )
}

/// ffmpeg sending a picture that flashes white and a tone that beeps, both for the first
/// 120 ms of every second, as H.264 (`b_frames` B-frames between references, x264's
/// B-pyramid) and AAC each on its own RTP port, with the SDP written to `sdp`. The parameter
/// sets go only in the SDP (global header), so the input must put them in band itself.
/// `audio_flags` go to the audio's RTP muxer (`-rtpflags latm`).
fn sdp_push(
    dir: &Path,
    (video, audio): (u16, u16),
    b_frames: u8,
    seconds: &str,
    sdp: &Path,
    audio_flags: &[&str],
) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    Proc::spawn(
        "ffmpeg rtp (sdp)",
        dir,
        std::process::Command::new(ffmpeg)
            .args(["-v", "warning", "-y", "-re", "-f", "lavfi", "-i"])
            .arg("testsrc2=s=640x360:r=25,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,1),0.12)'")
            .args(["-re", "-f", "lavfi", "-i"])
            .arg("aevalsrc=exprs=0.5*sin(2*PI*1000*t)*lt(mod(t\\,1)\\,0.12):s=48000")
            .args(["-map", "0:v", "-c:v", "libx264", "-g", "25"])
            .args(["-bf", &b_frames.to_string()])
            .args(["-pix_fmt", "yuv420p", "-flags:v", "+global_header", "-t", seconds])
            .args(["-f", "rtp", &format!("rtp://127.0.0.1:{video}")])
            .args(["-map", "1:a", "-c:a", "aac", "-t", seconds])
            .args(audio_flags)
            .args(["-f", "rtp", &format!("rtp://127.0.0.1:{audio}")])
            .arg("-sdp_file")
            .arg(sdp),
    )
}

#[test]
fn sdp_h264_with_b_frames_and_aac_from_ffmpeg_come_out_in_sync_and_garbage_is_counted() {
    // Three B-frames in a pyramid: RTP gives presentation times only, in decode order.
    const B_FRAMES: u8 = 3;
    let (video, audio) = free_rtp_ports();
    let output = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    // The SDP comes first, as from an encoder's set-up; a short run writes it (same settings,
    // same parameter sets).
    let sdp = dir.path().join("session.sdp");
    let mut writer = sdp_push(dir.path(), (video, audio), B_FRAMES, "0.3", &sdp, &[]);
    writer
        .wait(Duration::from_secs(30))
        .expect("ffmpeg writes the SDP");
    assert!(
        std::fs::read_to_string(&sdp)
            .unwrap()
            .contains("sprop-parameter-sets")
    );
    let input = sdp_input(&sdp);
    let daemon = Daemon::start(&channel("single", "", &input, output));
    let recording = record_clean(dir.path(), output, || {
        let mut sender = sdp_push(
            dir.path(),
            (video, audio),
            B_FRAMES,
            "10",
            &dir.path().join("run.sdp"),
            &[],
        );
        wait_connected(&daemon, "cam");
        // Not RTP, RTP with the audio's payload type, and an RTP header alone with a CSRC
        // list past its end; and garbage on the RTCP port.
        let garbage = UdpSocket::bind("127.0.0.1:0").unwrap();
        let header = [0x80u8, 97, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        let csrcs = [&[0x8fu8][..], &header[1..]].concat();
        for datagram in [&b"hello"[..], &header, &csrcs] {
            for _ in 0..50 {
                garbage.send_to(datagram, ("127.0.0.1", video)).unwrap();
                garbage.send_to(datagram, ("127.0.0.1", video + 1)).unwrap();
            }
        }
        sender.wait(Duration::from_secs(40)).expect("ffmpeg ends");
    });
    let streams = probe_streams(recording.to_str().unwrap());
    assert!(
        streams.contains("h264") && streams.contains("aac"),
        "the recording has {streams}"
    );
    assert_decodes(&recording, 175, 250);
    let input = daemon.input("program", "cam");
    assert!(field(&input, &["rtp", "packets_received"]) > 500, "{input}");
    assert_eq!(field(&input, &["rtp", "packets_lost"]), 0, "{input}");
    assert!(field(&input, &["frames_total", "audio"]) > 300, "{input}");
    let invalid = &input["rtp"]["packets_invalid"];
    for reason in ["short", "payload_type", "truncated"] {
        assert_eq!(field(invalid, &[reason]), 50, "{input}");
    }
    // A/V sync: each beep starts with its flash (audio frames are 21 ms, video 40 ms).
    let flashes = rising_edges(
        &frame_metadata(&recording, "v", "signalstats", "lavfi.signalstats.YAVG"),
        200.0,
    );
    let beeps = rising_edges(
        &frame_metadata(
            &recording,
            "a",
            "astats=metadata=1:reset=1",
            "lavfi.astats.Overall.RMS_level",
        ),
        -30.0,
    );
    let mut offsets: Vec<f64> = beeps
        .iter()
        .filter_map(|beep| {
            flashes
                .iter()
                .map(|flash| beep - flash)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        })
        .collect();
    assert!(
        offsets.len() >= 5,
        "flashes {flashes:?}, beeps {beeps:?} in the recording"
    );
    offsets.sort_by(f64::total_cmp);
    let median = offsets[offsets.len() / 2];
    assert!(
        median.abs() <= 0.08,
        "audio is {median:.3} s off the video (offsets {offsets:?})"
    );
    let log = daemon.log();
    for stream in ["video", "audio"] {
        assert!(
            log.contains(&format!("{stream} placed by its RTCP sender report")),
            "{stream} was not aligned by ffmpeg's sender reports:\n{log}"
        );
    }
    assert!(daemon.stop().success());
}

#[test]
fn sdp_without_rtcp_is_placed_by_arrival_and_says_so() {
    let (video, audio) = free_rtp_ports();
    let output = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("session.sdp");
    let mut writer = sdp_push(dir.path(), (video, audio), 0, "0.3", &sdp, &[]);
    writer
        .wait(Duration::from_secs(30))
        .expect("ffmpeg writes the SDP");
    // Something else holds the video's RTCP port.
    let _taken = UdpSocket::bind(("127.0.0.1", video + 1)).unwrap();
    let input = sdp_input(&sdp);
    let daemon = Daemon::start(&channel("single", "", &input, output));
    let recording = record_clean(dir.path(), output, || {
        let mut sender = sdp_push(
            dir.path(),
            (video, audio),
            0,
            "6",
            &dir.path().join("run.sdp"),
            &[],
        );
        wait_connected(&daemon, "cam");
        sender.wait(Duration::from_secs(40)).expect("ffmpeg ends");
    });
    let streams = probe_streams(recording.to_str().unwrap());
    assert!(
        streams.contains("h264") && streams.contains("aac"),
        "the recording has {streams}"
    );
    let log = daemon.log();
    assert!(
        log.contains("cannot receive RTCP") && log.contains("video placed by arrival time"),
        "no warning that video is aligned by arrival:\n{log}"
    );
    assert!(daemon.stop().success());
}

/// The recording's first audio stream as ffprobe decodes it: (codec, sample rate, channels,
/// seconds of audio decoded), and what ffmpeg reports decoding it.
fn decoded_audio(file: &Path) -> (String, u64, u64, f64, String) {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe (audio)",
        std::process::Command::new(ffprobe)
            .args(["-v", "error", "-select_streams", "a:0", "-count_frames"])
            .args([
                "-show_entries",
                "stream=codec_name,sample_rate,channels,nb_read_frames",
            ])
            .args(["-of", "json"])
            .arg(file),
        Duration::from_secs(60),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ffprobe gave no JSON ({e}): {out:?}"));
    let stream = &json["streams"][0];
    let number = |key: &str| {
        stream[key]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| stream[key].as_u64())
            .unwrap_or_else(|| panic!("ffprobe gave no {key}: {json}"))
    };
    let codec = stream["codec_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (rate, channels, frames) = (
        number("sample_rate"),
        number("channels"),
        number("nb_read_frames"),
    );
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let decode = run(
        "ffmpeg decode (audio)",
        std::process::Command::new(ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(file)
            .args(["-map", "0:a:0", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    let seconds = frames as f64 * 1024.0 / rate.max(1) as f64;
    (
        codec,
        rate,
        channels,
        seconds,
        String::from_utf8_lossy(&decode.stderr).to_string(),
    )
}

/// Checks the recording of a 10 s MP4A-LATM sender: AAC of `rate` and `channels`, about as
/// long as the video, decoded without an error; and that the input says what it received.
fn assert_latm_recording(daemon: &Daemon, recording: &Path, rate: u64, channels: u64) {
    let (codec, found_rate, found_channels, seconds, errors) = decoded_audio(recording);
    assert_eq!(
        (codec.as_str(), found_rate, found_channels),
        ("aac", rate, channels)
    );
    let video = decoded_video_frames(recording) as f64 / 25.0;
    assert!(video >= 8.0, "{video} s of video of 10");
    assert!(
        (seconds - video).abs() <= 0.5,
        "{seconds:.2} s of audio against {video:.2} s of video"
    );
    assert!(errors.is_empty(), "decoding the audio: {errors}");
    let input = daemon.input("program", "cam");
    assert_eq!(field(&input, &["rtp", "packets_lost"]), 0, "{input}");
    assert_eq!(field(&input, &["pes_dropped_total"]), 0, "{input}");
    assert_eq!(
        input["rtp"]["streams"][1]["packetization"], "AAC MP4A-LATM (RFC 6416)",
        "{input}"
    );
    let log = daemon.log();
    assert!(
        log.contains("AAC MP4A-LATM (RFC 6416) on port"),
        "the start-up line does not say the audio packetization:\n{log}"
    );
}

#[test]
fn sdp_mp4a_latm_from_ffmpeg_decodes_whole() {
    let (video, audio) = free_rtp_ports();
    let output = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let latm = ["-rtpflags", "latm"];
    let sdp = dir.path().join("session.sdp");
    let mut writer = sdp_push(dir.path(), (video, audio), 0, "0.3", &sdp, &latm);
    writer
        .wait(Duration::from_secs(30))
        .expect("ffmpeg writes the SDP");
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(
        text.contains("MP4A-LATM/48000") && text.contains("cpresent=0"),
        "{text}"
    );
    let input = sdp_input(&sdp);
    let daemon = Daemon::start(&channel("single", "", &input, output));
    let recording = record_clean(dir.path(), output, || {
        let run_sdp = dir.path().join("run.sdp");
        let mut sender = sdp_push(dir.path(), (video, audio), 0, "10", &run_sdp, &latm);
        wait_connected(&daemon, "cam");
        sender.wait(Duration::from_secs(40)).expect("ffmpeg ends");
    });
    // aevalsrc makes one channel.
    assert_latm_recording(&daemon, &recording, 48_000, 1);
    assert!(daemon.stop().success());
}

/// GStreamer sending H.264 (`rtph264pay`, parameter sets in band) and AAC (`avenc_aac` at
/// 44.1 kHz stereo, `rtpmp4apay`: MP4A-LATM) to two ports for `seconds`, in real time; `-v`
/// prints the caps.
fn gst_latm_command((video, audio): (u16, u16), seconds: u32) -> std::process::Command {
    let gst = require("gst-launch-1.0", "gstreamer1.0-tools");
    let audio_buffers = seconds * 44_100 / 1024;
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers={} ! video/x-raw,width=640,height=360,framerate=25/1 \
         ! x264enc tune=zerolatency bframes=0 key-int-max=25 ! rtph264pay config-interval=1 pt=96 \
         ! udpsink host=127.0.0.1 port={video} \
         audiotestsrc is-live=true wave=sine num-buffers={audio_buffers} samplesperbuffer=1024 \
         ! audio/x-raw,rate=44100,channels=2 ! avenc_aac ! rtpmp4apay pt=97 \
         ! udpsink host=127.0.0.1 port={audio}",
        seconds * 25
    );
    let mut command = std::process::Command::new(gst);
    command.args(["-v", "-e"]).args(pipeline.split_whitespace());
    command
}

#[test]
fn sdp_mp4a_latm_from_gstreamer_rtpmp4apay_decodes_whole() {
    let (video, audio) = free_rtp_ports();
    let output = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    // rtpmp4apay puts its StreamMuxConfig in its caps, not in an SDP: a short run shows it,
    // and the SDP is written from it as a user would.
    let probe = run(
        "gst-launch-1.0 (caps)",
        &mut gst_latm_command((video, audio), 1),
        Duration::from_secs(30),
    );
    let caps = String::from_utf8_lossy(&probe.stdout);
    let config = caps
        .split("encoding-name=(string)MP4A-LATM")
        .nth(1)
        .and_then(|rest| rest.split("config=(string)").nth(1))
        .and_then(|rest| rest.split([',', ' ', '"']).next())
        .unwrap_or_else(|| panic!("no MP4A-LATM config in rtpmp4apay's caps:\n{caps}"))
        .to_string();
    let sdp = dir.path().join("session.sdp");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=gst\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video {video} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1\r\n\
             m=audio {audio} RTP/AVP 97\r\na=rtpmap:97 MP4A-LATM/44100/2\r\n\
             a=fmtp:97 cpresent=0;config={config}\r\n"
        ),
    )
    .unwrap();
    let input = sdp_input(&sdp);
    let daemon = Daemon::start(&channel("single", "", &input, output));
    let recording = record_clean(dir.path(), output, || {
        let mut sender = Proc::spawn(
            "gst-launch-1.0",
            dir.path(),
            &mut gst_latm_command((video, audio), 10),
        );
        wait_connected(&daemon, "cam");
        sender
            .wait(Duration::from_secs(40))
            .expect("gst-launch-1.0 ends");
    });
    assert_latm_recording(&daemon, &recording, 44_100, 2);
    assert!(daemon.stop().success());
}

/// What the relay does to each path.
#[derive(Clone, Copy)]
struct PathPlan {
    port: u16,
    /// Every `swap`-th packet is sent after the next one.
    swap: u64,
    /// Every `duplicate`-th packet is sent twice.
    duplicate: u64,
    /// Drop the packet when the relay's draw for it is in this range (out of 1000).
    drop: (u64, u64),
    /// Drop everything for 200 ms of every 2 s.
    bursts: bool,
    /// Drop nothing while another path is in a burst (that packet would be gone from both).
    spare_bursts: bool,
    /// Drop nothing after this long (the other path has gone).
    clean_after: Option<Duration>,
    delay: Duration,
    /// Stop sending on this path after this long.
    gone_after: Option<Duration>,
}

impl PathPlan {
    fn to(port: u16) -> Self {
        PathPlan {
            port,
            swap: 0,
            duplicate: 0,
            drop: (0, 0),
            bursts: false,
            spare_bursts: false,
            clean_after: None,
            delay: Duration::ZERO,
            gone_after: None,
        }
    }
}

/// A loopback UDP relay: receives on its own port, sends every datagram along each path's
/// plan. Runs until stopped or for two minutes at most.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(paths: Vec<PathPlan>) -> Relay {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // A busy test machine may not run the relay for a while: the kernel holds what comes.
        socket2::SockRef::from(&socket)
            .set_recv_buffer_size(4 << 20)
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let out = UdpSocket::bind("127.0.0.1:0").unwrap();
            let started = Instant::now();
            let mut held: Vec<Option<Vec<u8>>> = vec![None; paths.len()];
            let mut delayed: std::collections::VecDeque<(Instant, u16, Vec<u8>)> =
                Default::default();
            let mut buffer = [0u8; 2048];
            // A fixed-seed generator: the same losses every run.
            let mut seed: u64 = 0x2022_0007;
            let mut count = 0u64;
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                let now = Instant::now();
                while delayed.front().is_some_and(|(due, _, _)| *due <= now) {
                    let (_, port, bytes) = delayed.pop_front().unwrap();
                    let _ = out.send_to(&bytes, ("127.0.0.1", port));
                }
                let Ok((n, _)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                count += 1;
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let draw = (seed >> 33) % 1000;
                let age = started.elapsed();
                let in_burst = (age.as_millis() % 2000) < 200;
                let other_in_burst = |i: usize| {
                    in_burst && paths.iter().enumerate().any(|(j, p)| j != i && p.bursts)
                };
                for (i, plan) in paths.iter().enumerate() {
                    let lossy = plan.clean_after.is_none_or(|after| age < after)
                        && !(plan.spare_bursts && other_in_burst(i));
                    if plan.gone_after.is_some_and(|after| age >= after)
                        || (lossy && (plan.drop.0..plan.drop.1).contains(&draw))
                        || (lossy && plan.bursts && in_burst)
                    {
                        continue;
                    }
                    let mut send = |bytes: Vec<u8>| {
                        if plan.delay.is_zero() {
                            let _ = out.send_to(&bytes, ("127.0.0.1", plan.port));
                        } else {
                            delayed.push_back((now + plan.delay, plan.port, bytes));
                        }
                    };
                    let packet = buffer[..n].to_vec();
                    if plan.swap > 0 && count.is_multiple_of(plan.swap) {
                        held[i] = Some(packet);
                        continue;
                    }
                    if plan.duplicate > 0 && count.is_multiple_of(plan.duplicate) {
                        send(packet.clone());
                    }
                    send(packet);
                    if let Some(late) = held[i].take() {
                        send(late);
                    }
                }
            }
        });
        Relay {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn rtp_reordered_and_duplicated_packets_are_put_right() {
    let (port, output) = (free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let clip = make_ts(dir.path(), "clip.ts", 10, "640x360", "1500k");
    let daemon = Daemon::start(&channel(
        "single",
        "",
        &rtp_input("cam", "main", port, "reorder_ms = 50"),
        output,
    ));
    let relay = Relay::start(vec![PathPlan {
        swap: 10,
        duplicate: 15,
        ..PathPlan::to(port)
    }]);
    record_clean(dir.path(), output, || {
        let mut sender = rtp_push(dir.path(), &clip, relay.port);
        wait_connected(&daemon, "cam");
        sender.wait(Duration::from_secs(30)).expect("ffmpeg ends");
    });
    drop(relay);
    let input = daemon.input("program", "cam");
    let rtp = &input["rtp"];
    assert!(field(rtp, &["packets_reordered"]) > 50, "{input}");
    assert!(field(rtp, &["packets_duplicate"]) > 50, "{input}");
    assert_eq!(field(rtp, &["packets_lost"]), 0, "{input}");
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "lunora_input_rtp_packets_reordered_total{channel=\"program\",input=\"cam\"}"
        ) && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn merge_of_two_lossy_paths_is_whole_and_survives_one_path_gone() {
    let (main, backup, output) = (free_udp_port(), free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let clip = make_ts(dir.path(), "clip.ts", 16, "640x360", "1500k");
    let daemon = Daemon::start(&channel(
        "main-backup",
        "switch = \"merge\"\nmerge_window_ms = 300",
        &format!(
            "{}{}",
            rtp_input("path-a", "main", main, ""),
            rtp_input("path-b", "backup", backup, "")
        ),
        output,
    ));
    // 5 % loss on each path, never the same packet on both (that one would be gone from
    // either); path B also loses 200 ms of every 2 s and runs 40 ms behind. Path A goes away
    // for good after 10 s, and from then on B is all there is (and loses nothing).
    let gone = Duration::from_secs(10);
    let relay = Relay::start(vec![
        PathPlan {
            drop: (0, 50),
            spare_bursts: true,
            gone_after: Some(gone),
            ..PathPlan::to(main)
        },
        PathPlan {
            drop: (50, 100),
            bursts: true,
            clean_after: Some(gone),
            delay: Duration::from_millis(40),
            ..PathPlan::to(backup)
        },
    ]);
    let recording = record_clean(dir.path(), output, || {
        let mut sender = rtp_push(dir.path(), &clip, relay.port);
        wait_connected(&daemon, "path-a");
        // The second path has no program of its own: its health is whether it delivers.
        assert!(
            wait_for(Duration::from_secs(5), || daemon.input("program", "path-b")
                ["health"]["state"]
                == "healthy"),
            "{}",
            daemon.input("program", "path-b")
        );
        sender.wait(Duration::from_secs(40)).expect("ffmpeg ends");
    });
    drop(relay);
    assert_decodes(&recording, 300, 400);
    let input = daemon.input("program", "path-a");
    let rtp = &input["rtp"];
    assert_eq!(field(rtp, &["packets_lost"]), 0, "{input}");
    let paths = rtp["paths"].as_array().expect("merge paths");
    assert_eq!(paths.len(), 2, "{input}");
    let (a, b) = (&paths[0], &paths[1]);
    assert_eq!(a["path"], "main");
    assert_eq!(b["path"], "backup");
    // Each path lost packets the other supplied; both supplied a share.
    assert!(field(a, &["packets_lost"]) > 100, "{input}");
    assert!(field(b, &["packets_lost"]) > 100, "{input}");
    assert!(field(a, &["packets_first"]) > 1_000, "{input}");
    assert!(field(b, &["packets_first"]) > 500, "{input}");
    let delay = rtp["delay_difference_ms"]
        .as_f64()
        .expect("delay difference");
    assert!(
        (20.0..80.0).contains(&delay),
        "path B runs 40 ms behind: {delay}"
    );
    let backup_input = daemon.input("program", "path-b");
    assert!(
        field(&backup_input, &["rtp", "packets_received"]) > 1_000,
        "{backup_input}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || daemon.input("program", "path-b")
            ["health"]["state"]
            == "lost"),
        "the path went quiet with the sender: {}",
        daemon.input("program", "path-b")
    );
    let (_, metrics) = daemon.get("/metrics");
    crate::metrics::assert_promtool_accepts(&metrics);
    for series in [
        "lunora_channel_merge_path_packets_first_total{channel=\"program\",path=\"backup\"}",
        "lunora_channel_merge_path_packets_lost_total{channel=\"program\",path=\"main\"}",
        "lunora_channel_merge_delay_difference_seconds{channel=\"program\"}",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(series) && !l.ends_with(" 0")),
            "{series} missing or zero:\n{metrics}"
        );
    }
    assert!(daemon.stop().success());
}

#[test]
fn merge_is_refused_for_inputs_without_shared_sequence_numbers() {
    let (a, b, output) = (free_udp_port(), free_udp_port(), free_udp_port());
    let config = channel(
        "main-backup",
        "switch = \"merge\"",
        &format!(
            "{}[[channels.inputs]]\nid = \"srt\"\nrole = \"backup\"\ntype = \"srt\"\nlisten = \"127.0.0.1:{b}\"\n",
            rtp_input("path-a", "main", a, "")
        ),
        output,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lunora.toml");
    std::fs::write(&path, config).unwrap();
    let out = run(
        "lunora check-config",
        std::process::Command::new(lunora_bin())
            .arg("check-config")
            .arg(&path),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("switch = \"merge\" takes exactly two inputs"),
        "{stderr}"
    );
}

/// GStreamer sending 12 s of H.264 test pattern as MPEG-TS over RTP to `media`, with SMPTE
/// 2022-1 FEC (`rtpst2022-1-fecenc`, L columns × D rows) straight to `fec_port` + 2 (columns)
/// and + 4 (rows). The encoder takes only media with SSRC 0.
fn gst_fec_push(dir: &Path, media: u16, fec_port: u16, columns: u8, rows: u8) -> Proc {
    let gst = require("gst-launch-1.0", "gstreamer1.0-tools");
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers=300 pattern=snow ! video/x-raw,width=640,height=360,framerate=25/1 \
         ! x264enc tune=zerolatency bitrate=2000 key-int-max=25 ! mpegtsmux alignment=7 ! rtpmp2tpay ssrc=0 \
         ! rtpst2022-1-fecenc name=fec columns={columns} rows={rows} \
         ! udpsink host=127.0.0.1 port={media} \
         fec.fec_0 ! udpsink host=127.0.0.1 port={column} sync=false async=false \
         fec.fec_1 ! udpsink host=127.0.0.1 port={row} sync=false async=false",
        column = fec_port + 2,
        row = fec_port + 4,
    );
    Proc::spawn(
        "gst-launch rtpst2022-1-fecenc",
        dir,
        std::process::Command::new(gst)
            .arg("-q")
            .args(pipeline.split_whitespace()),
    )
}

/// A port p with p + 2 and p + 4 free as well (the FEC ports), on 127.0.0.1.
fn free_fec_port() -> u16 {
    for _ in 0..200 {
        let port = free_udp_port();
        if port < 65_000
            && [2, 4]
                .iter()
                .all(|d| UdpSocket::bind(("127.0.0.1", port + d)).is_ok())
        {
            return port;
        }
    }
    panic!("no UDP port with + 2 and + 4 free on 127.0.0.1");
}

#[test]
fn fec_from_gstreamer_rebuilds_what_the_path_lost() {
    let (port, plain, output) = (free_fec_port(), free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    // Two channels fed by one lossy relay with the same losses: "program" takes the FEC,
    // "plain" does not and shows what the path lost. The window covers one 10 × 5 matrix
    // (50 packets, about 0.3 s at 2 Mbit/s) and its column FEC.
    let config = format!(
        "{}\n[[channels]]\nid = \"plain\"\nmode = \"single\"\n\n[channels.slate]\nenabled = false\n\n{}",
        channel(
            "single",
            "",
            &rtp_input("cam", "main", port, "reorder_ms = 1000\nfec = true"),
            output,
        ),
        rtp_input("cam", "main", plain, "reorder_ms = 1000"),
    );
    let daemon = Daemon::start(&config);
    // 2 % loss, the same packets on both; none in the last seconds, whose FEC the encoder
    // may not finish before it stops.
    let lossy = |to| PathPlan {
        drop: (0, 20),
        clean_after: Some(Duration::from_secs(9)),
        ..PathPlan::to(to)
    };
    let relay = Relay::start(vec![lossy(port), lossy(plain)]);
    let recording = record_clean(dir.path(), output, || {
        let mut sender = gst_fec_push(dir.path(), relay.port, port, 10, 5);
        wait_connected(&daemon, "cam");
        sender
            .wait(Duration::from_secs(60))
            .expect("gst-launch ends");
    });
    drop(relay);
    assert_decodes(&recording, 200, 300);
    let input = daemon.input("program", "cam");
    let plain = daemon.input("plain", "cam");
    eprintln!("program: {}\nplain: {}", input["rtp"], plain["rtp"]);
    let rtp = &input["rtp"];
    let recovered = field(rtp, &["packets_recovered"]);
    assert!(recovered > 20, "{input}");
    assert_eq!(field(rtp, &["packets_lost"]), 0, "{input}");
    // Nothing rebuilt that was only on its way, and rebuilt packets are not "reordered".
    assert_eq!(field(rtp, &["packets_duplicate"]), 0, "{input}");
    assert_eq!(field(rtp, &["packets_reordered"]), 0, "{input}");
    assert_eq!(field(rtp, &["packets_recovered_late"]), 0, "{input}");
    assert!(field(rtp, &["fec_packets_received"]) > 100, "{input}");
    assert_eq!(field(rtp, &["fec_columns"]), 10, "{input}");
    assert_eq!(field(rtp, &["fec_rows"]), 5, "{input}");
    assert_eq!(rtp["fec_packets_invalid"], serde_json::json!({}), "{input}");
    assert_eq!(
        field(&input, &["tr101290", "continuity_count_error"]),
        0,
        "{input}"
    );
    // Without FEC the same path loses packets, and the demux sees the gaps.
    assert_eq!(
        field(&plain, &["rtp", "packets_lost"]),
        recovered,
        "FEC rebuilt exactly what the path lost: {plain}"
    );
    assert_eq!(field(&plain, &["rtp", "packets_recovered"]), 0, "{plain}");
    assert!(
        field(&plain, &["tr101290", "continuity_count_error"]) > 0,
        "{plain}"
    );
    eprintln!(
        "FEC 10 × 5, 2 % loss: {} packets out, {recovered} rebuilt, 0 lost; without FEC {} lost, {} continuity errors",
        field(rtp, &["packets_received"]),
        field(&plain, &["rtp", "packets_lost"]),
        field(&plain, &["tr101290", "continuity_count_error"]),
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "lunora_input_rtp_fec_recovered_packets_total{channel=\"program\",input=\"cam\"}"
        ) && !l.ends_with(" 0")),
        "{metrics}"
    );
    crate::metrics::assert_promtool_accepts(&metrics);
    assert!(daemon.stop().success());
}

#[test]
fn fec_matrix_beyond_smpte_2022_1_is_refused_with_a_reason() {
    let port = free_fec_port();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&format!(
        "[[channels]]\nid = \"program\"\nmode = \"single\"\n\n{}",
        rtp_input("cam", "main", port, "fec = true")
    ));
    // 30 columns: more than the 20 2022-1 allows.
    let mut sender = gst_fec_push(dir.path(), port, port, 30, 4);
    wait_connected(&daemon, "cam");
    assert!(
        wait_for(Duration::from_secs(20), || {
            let input = daemon.input("program", "cam");
            input["rtp"]["fec_packets_invalid"]["matrix_too_large"]
                .as_u64()
                .is_some_and(|n| n > 10)
        }),
        "{}",
        daemon.input("program", "cam")
    );
    let input = daemon.input("program", "cam");
    assert_eq!(
        field(&input, &["rtp", "fec_packets_received"]),
        0,
        "{input}"
    );
    assert!(
        daemon.log().contains("FEC matrix of 30 columns"),
        "{}",
        daemon.log()
    );
    sender.signal(Signal::SIGINT);
    sender
        .wait(Duration::from_secs(10))
        .expect("gst-launch stops");
    assert!(daemon.stop().success());
}
