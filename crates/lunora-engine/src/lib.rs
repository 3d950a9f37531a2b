//! The media engine: sources and conversions that need pixels rather than packets, on
//! GStreamer. A file (MP4 or MPEG-TS, looped on a continuous timeline), a test pattern and a
//! channel's slate, each run as a channel input that paces its frames in real time like an
//! encoder.
//!
//! GStreamer runs on its own threads; frames cross to the tokio side through bounded queues
//! (`pipeline`), are placed on the input's timeline (`timeline`, pure) and sent when due
//! (`source`). The content probe (`content`) decodes an input's frames at low resolution for
//! content health (black, frozen, silent). A pipeline is stopped and freed as soon as it is no
//! longer needed.
//!
//! The engine also transcodes (`transcode`): a channel's program to a platform's profile, and
//! any audio to AAC, taking frames without ever making their sender wait.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod content;
mod pipeline;
mod source;
pub mod timeline;
mod transcode;

pub use content::{ContentProbe, ProbeTasks};
pub use pipeline::{PatternSettings, SlateSettings, VideoEncoding};
pub use source::{EngineInputSettings, Fetch, Location, Source, run};
pub use transcode::{AudioToAac, Offer, TranscodeProfile, Transcoder};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "GStreamer cannot start: {0} (install GStreamer 1.22 with its base, good, bad, ugly and libav plugins)"
    )]
    Init(String),
    #[error("cannot play the file: {0}")]
    File(String),
    #[error("{0}")]
    Pipeline(String),
}
