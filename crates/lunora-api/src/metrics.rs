//! Prometheus exposition built from status snapshots at scrape time.
//!
//! Names follow `lunora_<area>_<name>_<unit>[_total]`; labels are ids and small enums only,
//! never addresses, keys or error text. Every configured input and output has its series from
//! the first scrape, zero-valued until something happens. The process's own `process_*` series
//! follow Prometheus's standard names.

use lunora_control::{ChannelStatus, Indicator, OutputState, Reason, RtpPathStats, RtpStats};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

struct Families {
    registry: Registry,
}

impl Families {
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    fn int_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }
}

const INPUT: &[&str] = &["channel", "input"];
const OUTPUT: &[&str] = &["channel", "output"];

/// One provisioned MediaLive channel as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaLiveMetric {
    pub channel: String,
    /// MediaLive's state at the last poll; `None`: no MediaLive channel (or not polled yet).
    pub state: Option<String>,
    /// One of the box's outputs into MediaLive is live.
    pub feed_live: bool,
    pub running_since: Option<std::time::SystemTime>,
    pub poll_errors_total: u64,
}

/// MediaLive's channel states, each with a series from the first scrape.
const MEDIALIVE_STATES: &[&str] = &[
    "CREATING",
    "CREATE_FAILED",
    "IDLE",
    "STARTING",
    "RUNNING",
    "RECOVERING",
    "STOPPING",
    "UPDATING",
    "UPDATE_FAILED",
    "DELETING",
];

fn render_medialive(f: &Families, medialive: &[MediaLiveMetric]) -> prometheus::Result<()> {
    let state = f.int_gauge(
        "lunora_medialive_channel_state",
        "1 for the MediaLive channel's state at the last poll (RUNNING bills by the hour).",
        &["channel", "state"],
    )?;
    let feed = f.int_gauge(
        "lunora_medialive_feed_live",
        "1 while one of the box's outputs into the channel's MediaLive input is live.",
        &["channel"],
    )?;
    let since = f.gauge(
        "lunora_medialive_running_since_timestamp_seconds",
        "When the box first saw the MediaLive channel running (Unix time); 0 when it is not.",
        &["channel"],
    )?;
    let errors = f.counter(
        "lunora_medialive_poll_errors_total",
        "MediaLive state polls that failed (AWS unreachable or refusing).",
        &["channel"],
    )?;
    for m in medialive {
        let c = m.channel.as_str();
        for s in MEDIALIVE_STATES {
            state
                .with_label_values(&[c, s])
                .set(i64::from(m.state.as_deref() == Some(*s)));
        }
        feed.with_label_values(&[c]).set(i64::from(m.feed_live));
        let unix = m
            .running_since
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        since.with_label_values(&[c]).set(unix);
        errors.with_label_values(&[c]).inc_by(m.poll_errors_total);
    }
    Ok(())
}

/// The WHIP server's figures, box-wide (sessions are not labelled: their ids are unbounded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WhipMetric {
    pub sessions: u64,
    pub sessions_total: u64,
    pub refused_total: u64,
    pub handshake_timeouts_total: u64,
    pub media_dropped_total: u64,
    pub keyframe_requests_total: u64,
    pub datagrams_unmatched_total: u64,
}

fn render_whip(f: &Families, whip: &WhipMetric) -> prometheus::Result<()> {
    f.int_gauge(
        "lunora_whip_sessions",
        "WebRTC (WHIP) sessions handshaking or live.",
        &[],
    )?
    .with_label_values(&[] as &[&str])
    .set(i64::try_from(whip.sessions).unwrap_or(i64::MAX));
    for (name, help, value) in [
        (
            "lunora_whip_sessions_total",
            "WHIP offers answered.",
            whip.sessions_total,
        ),
        (
            "lunora_whip_refused_total",
            "WHIP offers refused (token, busy input, limit, bad offer).",
            whip.refused_total,
        ),
        (
            "lunora_whip_handshake_timeouts_total",
            "WHIP sessions ended because ICE/DTLS did not complete in time.",
            whip.handshake_timeouts_total,
        ),
        (
            "lunora_whip_media_dropped_total",
            "Access units dropped because a WHIP input fell behind.",
            whip.media_dropped_total,
        ),
        (
            "lunora_whip_keyframe_requests_total",
            "Keyframe requests (RTCP PLI/FIR) sent to WHIP publishers.",
            whip.keyframe_requests_total,
        ),
        (
            "lunora_whip_datagrams_unmatched_total",
            "Datagrams on the WHIP UDP port that belonged to no session.",
            whip.datagrams_unmatched_total,
        ),
    ] {
        f.counter(name, help, &[])?
            .with_label_values(&[] as &[&str])
            .inc_by(value);
    }
    Ok(())
}

/// `store_unreadable`: the saved state could not be read at start (destinations were held).
/// `medialive`: the channels this box provisioned in MediaLive. `whip`: the WHIP server's
/// figures, once it runs.
pub fn render_metrics(
    channels: &[ChannelStatus],
    store_unreadable: bool,
    medialive: &[MediaLiveMetric],
    whip: Option<&WhipMetric>,
) -> prometheus::Result<String> {
    let f = Families {
        registry: Registry::new(),
    };
    // The standard process_* series (CPU seconds, resident memory, open and maximum file
    // descriptors, threads, start time), so a leak or an fd exhaustion shows before it bites.
    f.registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build = f.int_gauge(
        "lunora_build_info",
        "Build information; always 1.",
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    f.int_gauge(
        "lunora_store_unreadable",
        "1 when the saved state could not be read at start: no destination started on its own.",
        &[],
    )?
    .with_label_values(&[] as &[&str])
    .set(i64::from(store_unreadable));
    render_medialive(&f, medialive)?;
    if let Some(whip) = whip {
        render_whip(&f, whip)?;
    }

    let input_up = f.int_gauge(
        "lunora_input_up",
        "1 while a sender is connected to the input.",
        &["channel", "input", "role"],
    )?;
    let bytes = f.counter(
        "lunora_input_received_bytes_total",
        "Payload bytes received.",
        INPUT,
    )?;
    let packets = f.counter(
        "lunora_input_ts_packets_total",
        "MPEG-TS packets received in sync.",
        INPUT,
    )?;
    let bitrate = f.gauge(
        "lunora_input_receive_rate_bytes_per_second",
        "Receive rate over the last second.",
        INPUT,
    )?;
    let frames = f.counter(
        "lunora_input_frames_total",
        "Access units demultiplexed, by kind.",
        &["channel", "input", "kind"],
    )?;
    let frames_dropped = f.counter(
        "lunora_input_frames_dropped_total",
        "Frames the channel could not take in time.",
        INPUT,
    )?;
    let pes_dropped = f.counter(
        "lunora_input_pes_dropped_total",
        "PES packets discarded: lost packet inside, unparsable, or over the size cap.",
        INPUT,
    )?;
    let pes_oversized = f.counter(
        "lunora_input_pes_oversized_total",
        "PES packets discarded because they grew past the size cap (a sender that never ends one).",
        INPUT,
    )?;
    let connections = f.counter("lunora_input_connections_total", "Senders accepted.", INPUT)?;
    let rejected = f.counter(
        "lunora_input_rejected_callers_total",
        "Callers refused, by reason.",
        &["channel", "input", "reason"],
    )?;
    let srt_datagrams_rejected = f.counter(
        "lunora_srt_datagrams_rejected_total",
        "SRT datagrams dropped on an input's port before reaching the protocol, by reason.",
        &["channel", "input", "reason"],
    )?;
    let srt_batches_dropped = f.counter(
        "lunora_input_srt_batches_dropped_total",
        "Batches of received SRT payloads dropped because the input's analysis fell behind (overload).",
        INPUT,
    )?;
    let tr = f.counter(
        "lunora_input_tr101290_errors_total",
        "ETSI TR 101 290 errors by indicator and priority.",
        &["channel", "input", "indicator", "priority"],
    )?;
    let rtt = f.gauge(
        "lunora_input_srt_rtt_seconds",
        "SRT round-trip time.",
        INPUT,
    )?;
    let srt_received = f.counter(
        "lunora_input_srt_packets_received_total",
        "SRT data packets received (unique).",
        INPUT,
    )?;
    let srt_lost = f.counter(
        "lunora_input_srt_packets_lost_total",
        "SRT data packets reported lost.",
        INPUT,
    )?;
    let srt_retransmitted = f.counter(
        "lunora_input_srt_packets_retransmitted_total",
        "SRT retransmitted data packets received.",
        INPUT,
    )?;
    let srt_dropped = f.counter(
        "lunora_input_srt_packets_dropped_total",
        "SRT packets dropped as too late.",
        INPUT,
    )?;
    let srt_decrypt = f.counter(
        "lunora_input_srt_decrypt_errors_total",
        "SRT packets that failed to decrypt.",
        INPUT,
    )?;
    let rtp_packets = [
        (
            f.counter(
                "lunora_input_rtp_packets_received_total",
                "RTP packets put out in sequence order (merged: after the first copy won).",
                INPUT,
            )?,
            (|r: &RtpStats| r.packets_received) as fn(&RtpStats) -> u64,
        ),
        (
            f.counter(
                "lunora_input_rtp_packets_lost_total",
                "RTP sequence numbers that never came within the reorder (or merge) window.",
                INPUT,
            )?,
            |r| r.packets_lost,
        ),
        (
            f.counter(
                "lunora_input_rtp_packets_reordered_total",
                "RTP packets that arrived after a later one and were put back in order.",
                INPUT,
            )?,
            |r| r.packets_reordered,
        ),
        (
            f.counter(
                "lunora_input_rtp_packets_duplicate_total",
                "RTP packets received twice on one path and dropped.",
                INPUT,
            )?,
            |r| r.packets_duplicate,
        ),
        (
            f.counter(
                "lunora_input_rtp_packets_late_total",
                "RTP packets that came after their window had passed and were dropped.",
                INPUT,
            )?,
            |r| r.packets_late,
        ),
        (
            f.counter(
                "lunora_input_rtp_fec_packets_received_total",
                "SMPTE 2022-1 FEC packets an RTP input took (column and row).",
                INPUT,
            )?,
            |r| r.fec_packets_received,
        ),
        (
            f.counter(
                "lunora_input_rtp_fec_recovered_packets_total",
                "RTP packets rebuilt from SMPTE 2022-1 FEC within the reorder window.",
                INPUT,
            )?,
            |r| r.packets_recovered,
        ),
        (
            f.counter(
                "lunora_input_rtp_fec_recovered_late_packets_total",
                "RTP packets rebuilt from FEC after the reorder window gave up on them (raise reorder_ms).",
                INPUT,
            )?,
            |r| r.packets_recovered_late,
        ),
    ];
    let rtp_fec_invalid = f.counter(
        "lunora_input_rtp_fec_invalid_packets_total",
        "SMPTE 2022-1 FEC packets an RTP input dropped, by reason.",
        &["channel", "input", "reason"],
    )?;
    let rtp_invalid = f.counter(
        "lunora_input_rtp_invalid_datagrams_total",
        "Datagrams an RTP input dropped: not RTP, or another payload type, by reason.",
        &["channel", "input", "reason"],
    )?;
    let merge_paths = [
        (
            f.counter(
                "lunora_channel_merge_path_packets_received_total",
                "Packets each path of a merged channel delivered (copies included).",
                &["channel", "path"],
            )?,
            (|p: &RtpPathStats| p.packets_received) as fn(&RtpPathStats) -> u64,
        ),
        (
            f.counter(
                "lunora_channel_merge_path_packets_lost_total",
                "Sequence numbers a path of a merged channel never delivered in time.",
                &["channel", "path"],
            )?,
            |p| p.packets_lost,
        ),
        (
            f.counter(
                "lunora_channel_merge_path_packets_first_total",
                "Packets of a merged channel's output each path supplied first (its share).",
                &["channel", "path"],
            )?,
            |p| p.packets_first,
        ),
    ];
    let merge_delay = f.gauge(
        "lunora_channel_merge_delay_difference_seconds",
        "Mean arrival of the backup path minus the main path, over packets both delivered.",
        &["channel"],
    )?;

    let output_state = f.int_gauge(
        "lunora_output_state",
        "1 for the output's current state.",
        &["channel", "output", "state"],
    )?;
    let output_peers = f.int_gauge("lunora_output_peers", "Connected receivers.", OUTPUT)?;
    let output_bytes = f.counter("lunora_output_bytes_total", "Bytes sent.", OUTPUT)?;
    let output_frames = f.counter("lunora_output_frames_total", "Frames sent.", OUTPUT)?;
    let output_dropped = f.counter(
        "lunora_output_dropped_frames_total",
        "Frames skipped because the output fell behind.",
        OUTPUT,
    )?;
    let output_warnings = f.int_gauge(
        "lunora_output_conformance_warnings",
        "Platform rules the stream currently breaks.",
        OUTPUT,
    )?;
    let output_reconnects = f.counter(
        "lunora_output_reconnects_total",
        "Connections re-established after a loss.",
        OUTPUT,
    )?;
    let output_srt_datagrams_rejected = f.counter(
        "lunora_output_srt_datagrams_rejected_total",
        "SRT datagrams dropped on an output's port before reaching the protocol, by reason.",
        &["channel", "output", "reason"],
    )?;
    let active = f.int_gauge(
        "lunora_channel_active_input",
        "1 for the input on air.",
        &["channel", "input"],
    )?;
    let slate = f.int_gauge(
        "lunora_channel_slate_on_air",
        "1 while the channel sends its slate because every input is lost.",
        &["channel"],
    )?;
    let forced = f.int_gauge(
        "lunora_channel_forced",
        "1 while an operator has forced an input on air.",
        &["channel"],
    )?;
    let health = f.int_gauge(
        "lunora_input_health_state",
        "1 for the input's health: healthy, degraded or lost.",
        &["channel", "input", "state"],
    )?;
    let degraded = f.int_gauge(
        "lunora_input_degraded",
        "1 while the input shows this symptom.",
        &["channel", "input", "reason"],
    )?;
    let switches = f.counter(
        "lunora_switch_total",
        "Switches, by roles and reason.",
        &["channel", "from_role", "to_role", "reason"],
    )?;
    let incompatible = f.counter(
        "lunora_switch_incompatible_total",
        "Switches between inputs whose codec or resolution differ.",
        &["channel"],
    )?;
    let seam_error = f.gauge(
        "lunora_switch_seam_error_frames",
        "Aligned mode: distance of the last seam from content-exact, in frames.",
        &["channel"],
    )?;
    let timeline_dropped = f.counter(
        "lunora_channel_timeline_dropped_frames_total",
        "Frames dropped to keep the output timeline strictly increasing.",
        &["channel"],
    )?;

    let transcode_frames = f.counter(
        "lunora_transcode_frames_total",
        "Frames through a destination transcode: in (taken from the channel), out (encoded), dropped (the transcode was behind).",
        &["channel", "profile", "direction"],
    )?;
    let transcode_destinations = f.int_gauge(
        "lunora_transcode_destinations",
        "Destinations reading a running transcode.",
        &["channel", "profile"],
    )?;

    let hls_segments = f.int_gauge(
        "lunora_hls_segments",
        "Segments in the preview playlist.",
        &["channel"],
    )?;
    let hls_bytes = f.int_gauge(
        "lunora_hls_memory_bytes",
        "Bytes the preview holds in memory.",
        &["channel"],
    )?;
    let hls_discontinuities = f.counter(
        "lunora_hls_discontinuities_total",
        "Preview segments that start a discontinuity (codec parameters changed).",
        &["channel"],
    )?;

    for channel in channels {
        let c = channel.id.as_str();
        hls_segments
            .with_label_values(&[c])
            .set(channel.hls.segments as i64);
        hls_bytes
            .with_label_values(&[c])
            .set(channel.hls.bytes as i64);
        hls_discontinuities
            .with_label_values(&[c])
            .inc_by(channel.hls.discontinuities_total);
        forced
            .with_label_values(&[c])
            .set(i64::from(channel.forced_input.is_some()));
        slate
            .with_label_values(&[c])
            .set(i64::from(channel.slate.on_air));
        let last_seam = channel
            .switches
            .iter()
            .rev()
            .find_map(|s| s.seam_error_frames)
            .unwrap_or(0);
        seam_error.with_label_values(&[c]).set(last_seam as f64);
        incompatible
            .with_label_values(&[c])
            .inc_by(channel.incompatible_switches_total);
        timeline_dropped
            .with_label_values(&[c])
            .inc_by(channel.timeline_dropped_frames_total);
        for transcode in &channel.transcodes {
            let p = transcode.profile.as_str();
            for (direction, frames) in [
                ("in", transcode.frames_in_total),
                ("out", transcode.frames_out_total),
                ("dropped", transcode.frames_dropped_total),
            ] {
                transcode_frames
                    .with_label_values(&[c, p, direction])
                    .inc_by(frames);
            }
            transcode_destinations
                .with_label_values(&[c, p])
                .set(i64::try_from(transcode.destinations).unwrap_or(i64::MAX));
        }
        // The common switches exist from the start, at zero.
        for (from_role, to_role, reason) in [
            ("main", "backup", "input_lost"),
            ("backup", "main", "return_to_primary"),
        ] {
            switches
                .with_label_values(&[c, from_role, to_role, reason])
                .inc_by(0);
        }
        for count in &channel.switch_counts {
            switches
                .with_label_values(&[c, count.from_role, count.to_role, count.reason])
                .inc_by(count.count);
        }
        for input in &channel.inputs {
            let i = input.id.as_str();
            let s = &input.stats;
            let labels = [c, i];
            input_up
                .with_label_values(&[c, i, input.role])
                .set(i64::from(
                    s.state == lunora_control::ConnectionState::Connected,
                ));
            bytes.with_label_values(&labels).inc_by(s.bytes_total);
            packets
                .with_label_values(&labels)
                .inc_by(s.ts_packets_total);
            bitrate.with_label_values(&labels).set(s.bitrate_bps / 8.0);
            for (kind, n) in [
                ("video", s.frames_total.video),
                ("audio", s.frames_total.audio),
                ("data", s.frames_total.data),
            ] {
                frames.with_label_values(&[c, i, kind]).inc_by(n);
            }
            frames_dropped
                .with_label_values(&labels)
                .inc_by(s.frames_dropped_total);
            pes_dropped
                .with_label_values(&labels)
                .inc_by(s.pes_dropped_total);
            pes_oversized
                .with_label_values(&labels)
                .inc_by(s.pes_oversized_total);
            connections
                .with_label_values(&labels)
                .inc_by(s.connections_total);
            let r = s.rejected_total;
            for (reason, n) in [
                ("stream_id", r.stream_id),
                ("passphrase", r.passphrase),
                ("busy", r.busy),
                ("handshake", r.handshake),
            ] {
                rejected.with_label_values(&[c, i, reason]).inc_by(n);
            }
            srt_batches_dropped
                .with_label_values(&labels)
                .inc_by(s.srt_batches_dropped_total);
            for (reason, n) in &s.srt_datagrams_rejected {
                srt_datagrams_rejected
                    .with_label_values(&[c, i, reason])
                    .inc_by(*n);
            }
            for (indicator, n) in &s.tr101290 {
                let priority = Indicator::ALL
                    .iter()
                    .find(|x| x.name() == *indicator)
                    .map_or(0, |x| x.priority());
                tr.with_label_values(&[c, i, indicator, &priority.to_string()])
                    .inc_by(*n);
            }
            if let Some(rtp) = &s.rtp {
                for (family, value) in &rtp_packets {
                    family.with_label_values(&labels).inc_by(value(rtp));
                }
                for (reason, n) in &rtp.packets_invalid {
                    rtp_invalid.with_label_values(&[c, i, reason]).inc_by(*n);
                }
                for (reason, n) in &rtp.fec_packets_invalid {
                    rtp_fec_invalid
                        .with_label_values(&[c, i, reason])
                        .inc_by(*n);
                }
                for path in &rtp.paths {
                    for (family, value) in &merge_paths {
                        family
                            .with_label_values(&[c, path.path])
                            .inc_by(value(path));
                    }
                }
                if let Some(ms) = rtp.delay_difference_ms {
                    merge_delay.with_label_values(&[c]).set(ms / 1000.0);
                }
            }
            rtt.with_label_values(&labels).set(s.srt.rtt_ms / 1000.0);
            srt_received
                .with_label_values(&labels)
                .inc_by(s.srt.packets_received);
            srt_lost
                .with_label_values(&labels)
                .inc_by(s.srt.packets_lost);
            srt_retransmitted
                .with_label_values(&labels)
                .inc_by(s.srt.packets_retransmitted);
            srt_dropped
                .with_label_values(&labels)
                .inc_by(s.srt.packets_dropped);
            srt_decrypt
                .with_label_values(&labels)
                .inc_by(s.srt.decrypt_errors);
            active
                .with_label_values(&labels)
                .set(i64::from(channel.active_input.as_deref() == Some(i)));
            for state in ["healthy", "degraded", "lost"] {
                health
                    .with_label_values(&[c, i, state])
                    .set(i64::from(input.health.state == state));
            }
            for reason in Reason::ALL {
                degraded
                    .with_label_values(&[c, i, reason.name()])
                    .set(i64::from(input.health.reasons.contains(&reason.name())));
            }
        }
        for output in &channel.outputs {
            let o = output.id.as_str();
            let s = &output.stats;
            for state in OutputState::ALL {
                output_state
                    .with_label_values(&[c, o, state.name()])
                    .set(i64::from(s.state == state));
            }
            output_peers
                .with_label_values(&[c, o])
                .set(s.peers.len() as i64);
            output_bytes
                .with_label_values(&[c, o])
                .inc_by(s.bytes_total);
            output_frames
                .with_label_values(&[c, o])
                .inc_by(s.frames_total);
            output_dropped
                .with_label_values(&[c, o])
                .inc_by(s.dropped_frames_total);
            output_reconnects
                .with_label_values(&[c, o])
                .inc_by(s.reconnects_total);
            for (reason, n) in &s.srt_datagrams_rejected {
                output_srt_datagrams_rejected
                    .with_label_values(&[c, o, reason])
                    .inc_by(*n);
            }
            output_warnings
                .with_label_values(&[c, o])
                .set(s.warnings.len() as i64);
        }
    }
    let mut body = Vec::new();
    TextEncoder::new().encode(&f.registry.gather(), &mut body)?;
    String::from_utf8(body).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
