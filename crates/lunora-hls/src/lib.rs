//! HLS preview segmenter, sans-IO: the channel's frames go in (with the wall-clock time they
//! arrived), MPEG-TS segments cut at video keyframes and a sliding live playlist come out.
//!
//! - A segment starts on a keyframe, with PAT/PMT and the parameter sets in band, so any
//!   segment decodes on its own and a boundary never splits a GOP.
//! - One muxer lives as long as the segmenter: PIDs and continuity counters run on across
//!   segments, and the switcher's continuous timeline means a failover needs no
//!   `EXT-X-DISCONTINUITY`. One is written only when the video or audio parameters really
//!   change (codec, picture size, scan, sample rate, channels) or the timeline breaks.
//! - A segment that leaves the playlist stays available for as long as RFC 8216 §6.2.2 asks
//!   (its own duration plus the playlist's), so a player that read the playlist just before it
//!   slid still gets it: `window + 1` retired segments are kept beside the `window` listed.
//! - Memory is bounded: at most `2 × window + 1` segments of at most `max_segment_bytes`. A
//!   segment that reaches the byte limit before the next keyframe is closed, and frames are
//!   skipped until a keyframe starts the next one (marked as a discontinuity).
//!
//! The crate reads no clock; times are inputs.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use hls_m3u8::MediaPlaylist;
use hls_m3u8::tags::{ExtInf, ExtXProgramDateTime};
use lunora_media::{
    AdtsHeader, Codec, Frame, MpegTime, Program, VideoFormat, keyframe_video_format, rfc3339,
};
use lunora_ts::{MuxSettings, Muxer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsSettings {
    /// A segment is cut at the first keyframe at least this far into it.
    pub min_segment: Duration,
    /// Segments kept in the playlist (and in memory).
    pub window: usize,
    /// Largest segment held; a GOP bigger than this is cut short.
    pub max_segment_bytes: usize,
    /// Media sequence number of the first segment. Starting each run from the wall clock's
    /// seconds keeps segment URLs unique across restarts (segments last at least a second), so
    /// a browser's cache can never serve an old segment under a new name.
    pub first_sequence: u64,
}

impl Default for HlsSettings {
    fn default() -> Self {
        // 1 s minimum: a 1 s GOP gives 1 s segments, a 2 s GOP 2 s ones. 48 MiB holds a 4 s
        // GOP at 80 Mbit/s.
        HlsSettings {
            min_segment: Duration::from_secs(1),
            window: 6,
            max_segment_bytes: 48 << 20,
            first_sequence: 0,
        }
    }
}

/// One finished segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub sequence: u64,
    pub duration: Duration,
    /// Wall-clock time of the segment's first frame.
    pub program_date_time: SystemTime,
    /// The parameters or timeline changed at the start of this segment.
    pub discontinuity: bool,
    pub data: Bytes,
}

/// What a change of these means to a player: a new decoder configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StreamParameters {
    video: Option<(Codec, Option<VideoFormat>)>,
    audio: Option<(Codec, Option<(u32, u8)>)>,
}

#[derive(Debug)]
struct OpenSegment {
    first_dts: MpegTime,
    last_dts: MpegTime,
    /// Duration of the last video (or audio) frame, to close the segment exactly.
    last_frame_ticks: i64,
    started_at: SystemTime,
    discontinuity: bool,
    data: BytesMut,
}

/// Snapshot of what the segmenter holds, for the API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HlsStats {
    pub segments: usize,
    pub bytes: usize,
    pub media_sequence: u64,
    pub target_duration_seconds: u64,
    pub discontinuities_total: u64,
    /// Frames not written because no segment was open (waiting for a keyframe).
    pub skipped_frames_total: u64,
}

#[derive(Debug)]
pub struct Segmenter {
    settings: HlsSettings,
    muxer: Muxer,
    has_video: bool,
    parameters: StreamParameters,
    open: Option<OpenSegment>,
    segments: VecDeque<Segment>,
    next_sequence: u64,
    /// Discontinuities that have left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    /// Set when the next segment must carry a discontinuity.
    pending_discontinuity: bool,
    target_duration_seconds: u64,
    discontinuities_total: u64,
    skipped_frames_total: u64,
    playlist: String,
}

/// A DTS step larger than this (or backwards) is a broken timeline, not a gap.
const MAX_DTS_STEP: i64 = 10 * 90_000;

impl Segmenter {
    pub fn new(settings: HlsSettings) -> Segmenter {
        let target = settings.min_segment.as_secs().max(1);
        let mut segmenter = Segmenter {
            settings: HlsSettings {
                window: settings.window.max(1),
                ..settings
            },
            muxer: Muxer::new(MuxSettings::default()),
            has_video: false,
            parameters: StreamParameters {
                video: None,
                audio: None,
            },
            open: None,
            segments: VecDeque::new(),
            next_sequence: settings.first_sequence,
            discontinuity_sequence: 0,
            pending_discontinuity: false,
            target_duration_seconds: target,
            discontinuities_total: 0,
            skipped_frames_total: 0,
            playlist: String::new(),
        };
        segmenter.render_playlist();
        segmenter
    }

    /// The channel's tracks changed (or are first known).
    pub fn set_program(&mut self, program: &Program) {
        self.has_video = program.tracks.iter().any(|t| t.codec.is_video());
        self.muxer.set_program(program);
    }

    /// Adds one frame that arrived at `now`.
    pub fn push(&mut self, frame: &Frame, now: SystemTime) {
        let starts_segment = if self.has_video {
            frame.codec.is_video() && frame.keyframe
        } else {
            frame.codec.is_audio()
        };
        if (frame.codec.is_video() && frame.keyframe) || frame.codec.is_audio() {
            self.observe_parameters(frame);
        }
        if let Some(open) = &self.open {
            let step = frame.dts.0 - open.last_dts.0;
            if !(-MAX_DTS_STEP..=MAX_DTS_STEP).contains(&step) {
                // The timeline broke: close what we have; the next keyframe starts afresh.
                self.close(None);
                self.pending_discontinuity = true;
            }
        }
        if starts_segment {
            let long_enough = self
                .open
                .as_ref()
                .is_some_and(|open| frame.dts.0 - open.first_dts.0 >= self.min_ticks());
            if self.open.is_none() || long_enough || self.pending_discontinuity {
                self.close(Some(frame.dts));
                self.open = Some(OpenSegment {
                    first_dts: frame.dts,
                    last_dts: frame.dts,
                    last_frame_ticks: 0,
                    started_at: now,
                    discontinuity: std::mem::take(&mut self.pending_discontinuity)
                        && self.next_sequence > self.settings.first_sequence,
                    data: BytesMut::with_capacity(1 << 16),
                });
            }
        }
        let Some(open) = self.open.as_mut() else {
            self.skipped_frames_total += 1;
            return;
        };
        if frame.codec.is_video() || !self.has_video {
            if frame.dts.0 > open.last_dts.0 {
                open.last_frame_ticks = frame.dts.0 - open.last_dts.0;
            }
            open.last_dts = open.last_dts.max(frame.dts);
        }
        self.muxer.write_frame(frame, &mut open.data);
        if open.data.len() >= self.settings.max_segment_bytes {
            self.close(None);
            self.pending_discontinuity = true;
        }
    }

    fn min_ticks(&self) -> i64 {
        (self.settings.min_segment.as_micros() as i64 * 9 / 100).max(1)
    }

    fn observe_parameters(&mut self, frame: &Frame) {
        let mut next = self.parameters;
        if frame.codec.is_video() {
            let format = keyframe_video_format(frame.codec, &frame.data)
                .or(self.parameters.video.and_then(|(_, f)| f));
            next.video = Some((frame.codec, format));
        } else if frame.codec == Codec::AacAdts {
            next.audio = Some((
                frame.codec,
                AdtsHeader::parse(&frame.data).map(|h| (h.sample_rate(), h.channel_configuration)),
            ));
        } else {
            next.audio = Some((frame.codec, None));
        }
        // A stream appearing (the first keyframe after audio, say) is not a change.
        let old = self.parameters;
        let changed = (old.video.is_some() && next.video != old.video)
            || (old.audio.is_some() && next.audio != old.audio);
        if changed {
            self.pending_discontinuity = true;
        }
        self.parameters = next;
    }

    /// Finishes the open segment; `next_dts` (the frame that starts the next one) gives its
    /// exact duration.
    fn close(&mut self, next_dts: Option<MpegTime>) {
        let Some(open) = self.open.take() else { return };
        if open.data.is_empty() {
            return;
        }
        let ticks = match next_dts {
            Some(next) if next.0 > open.first_dts.0 => next.0 - open.first_dts.0,
            _ => open.last_dts.0 - open.first_dts.0 + open.last_frame_ticks,
        };
        let duration = Duration::from_micros((ticks.max(1) as u64) * 100 / 9);
        if open.discontinuity {
            self.discontinuities_total += 1;
        }
        // EXT-X-TARGETDURATION must not change while the playlist lives, so it only grows.
        self.target_duration_seconds = self
            .target_duration_seconds
            .max(duration.as_secs_f64().round() as u64);
        self.segments.push_back(Segment {
            sequence: self.next_sequence,
            duration,
            program_date_time: open.started_at,
            discontinuity: open.discontinuity,
            data: open.data.freeze(),
        });
        self.next_sequence += 1;
        // The segment that just left the playlist takes its discontinuity with it.
        if let Some(unlisted) = self.segments.len().checked_sub(self.settings.window + 1)
            && self.segments[unlisted].discontinuity
        {
            self.discontinuity_sequence += 1;
        }
        while self.segments.len() > 2 * self.settings.window + 1 {
            self.segments.pop_front();
        }
        self.render_playlist();
    }

    fn render_playlist(&mut self) {
        let mut builder = MediaPlaylist::builder();
        builder
            .target_duration(Duration::from_secs(self.target_duration_seconds))
            .media_sequence(self.media_sequence() as usize)
            .discontinuity_sequence(self.discontinuity_sequence as usize)
            .has_independent_segments(true);
        let mut segments = Vec::new();
        for segment in self.segments() {
            let mut media = hls_m3u8::MediaSegment::builder();
            media
                .duration(ExtInf::new(segment.duration))
                .has_discontinuity(segment.discontinuity)
                .program_date_time(ExtXProgramDateTime::new(rfc3339(segment.program_date_time)))
                .uri(format!("{}.ts", segment.sequence));
            if let Ok(media) = media.build() {
                segments.push(media);
            }
        }
        builder.segments(segments);
        self.playlist = match builder.build() {
            Ok(playlist) => playlist.to_string(),
            // Only reachable through a bug here; an empty live playlist keeps players polling.
            Err(_) => format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:{}\n",
                self.target_duration_seconds
            ),
        };
    }

    /// Lets go of every segment (nobody is watching); the next segment continues the numbering
    /// after a discontinuity.
    pub fn pause(&mut self) {
        self.open = None;
        let listed = self.segments().filter(|s| s.discontinuity).count() as u64;
        self.discontinuity_sequence += listed;
        self.segments.clear();
        self.pending_discontinuity = true;
        self.render_playlist();
    }

    /// The live playlist (`index.m3u8`) as it stands.
    pub fn playlist(&self) -> &str {
        &self.playlist
    }

    /// The segment with this media sequence number, while it is listed or recently retired.
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        self.segments
            .iter()
            .find(|s| s.sequence == sequence)
            .map(|s| s.data.clone())
    }

    /// The segments the playlist lists, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .skip(self.segments.len().saturating_sub(self.settings.window))
    }

    fn media_sequence(&self) -> u64 {
        self.segments()
            .next()
            .map_or(self.next_sequence, |s| s.sequence)
    }

    pub fn stats(&self) -> HlsStats {
        HlsStats {
            segments: self.segments().count(),
            bytes: self.segments.iter().map(|s| s.data.len()).sum::<usize>()
                + self.open.as_ref().map_or(0, |o| o.data.len()),
            media_sequence: self.media_sequence(),
            target_duration_seconds: self.target_duration_seconds,
            discontinuities_total: self.discontinuities_total,
            skipped_frames_total: self.skipped_frames_total,
        }
    }
}

#[cfg(test)]
mod tests;
