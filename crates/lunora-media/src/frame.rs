//! `Frame`: one access unit, the currency every Lunora component trades in.

use bytes::Bytes;

use crate::time::MpegTime;

/// Identifies an elementary stream within one input. Demuxers use the MPEG-TS PID; other
/// sources number their tracks. Only meaningful together with the [`Program`] that lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u16);

/// What a track carries. Closed on purpose: every part of the pipeline must decide what to do
/// with each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 in Annex-B byte-stream form.
    H264,
    /// H.265 in Annex-B byte-stream form.
    Hevc,
    /// AAC with an ADTS header on every frame.
    AacAdts,
    /// AAC in LATM/LOAS; passed through untouched.
    AacLatm,
    /// MPEG-1/2 audio layers I–III.
    MpegAudio,
    Ac3,
    Eac3,
    /// SCTE-35 splice information; each frame is one complete section.
    Scte35,
    /// Any other elementary stream, carried byte-for-byte. `stream_type` is the MPEG-TS
    /// stream type it arrived with, so it can leave the same way.
    Private {
        stream_type: u8,
    },
}

impl Codec {
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::Hevc)
    }

    pub fn is_audio(self) -> bool {
        matches!(
            self,
            Codec::AacAdts | Codec::AacLatm | Codec::MpegAudio | Codec::Ac3 | Codec::Eac3
        )
    }

    /// Short lowercase name for logs, metrics labels and the API.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Hevc => "hevc",
            Codec::AacAdts => "aac",
            Codec::AacLatm => "aac-latm",
            Codec::MpegAudio => "mpeg-audio",
            Codec::Ac3 => "ac3",
            Codec::Eac3 => "eac3",
            Codec::Scte35 => "scte35",
            Codec::Private { .. } => "private",
        }
    }
}

/// One access unit: a coded picture, an audio frame, or one data unit (section / PES payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: TrackId,
    pub codec: Codec,
    /// Presentation time, 90 kHz, unwrapped.
    pub pts: MpegTime,
    /// Decoding time, 90 kHz, unwrapped. Equal to `pts` when the stream has no reordering.
    pub dts: MpegTime,
    /// A decoder can start here (IDR/IRAP picture; every audio frame).
    pub keyframe: bool,
    pub data: Bytes,
}

/// One elementary stream as announced by its source (for MPEG-TS: a PMT entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: TrackId,
    pub codec: Codec,
    /// ISO 639-2 language code, when the source names one.
    pub language: Option<[u8; 3]>,
    /// The MPEG-TS elementary stream descriptors it arrived with (empty from other sources);
    /// an MPEG-TS output writes them back so subtitles, teletext and the like survive.
    pub descriptors: bytes::Bytes,
}

impl Track {
    /// A track with no language and no descriptors: what every source but MPEG-TS announces.
    pub fn new(id: TrackId, codec: Codec) -> Track {
        Track {
            id,
            codec,
            language: None,
            descriptors: bytes::Bytes::new(),
        }
    }
}

/// The set of tracks a source currently carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    pub tracks: Vec<Track>,
}

impl Program {
    pub fn track(&self, id: TrackId) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }
}
