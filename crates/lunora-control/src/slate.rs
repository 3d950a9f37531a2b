//! A channel's slate ("broadcast hold"): when every input has been lost for `after_ms`, an
//! engine source sends a picture (the configured image, or a card with the channel name and
//! since when the signal is lost) and silence, encoded like what the channel last carried, so
//! that platforms and MediaLive do not end the session. It runs in its own switcher slot with
//! the `Slate` role: the switcher puts it on air only while nothing else can be, and cuts back
//! at the first keyframe of a returning input. Its pipeline runs only while it is needed.

use std::time::{Duration, SystemTime};

use lunora_ingest::InputSender;
use lunora_media::{AdtsHeader, Codec, Frame, VideoFormat, keyframe_video_format};
use lunora_switch::{InputSpec, Role, Switcher};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::settings::{SLATE_INPUT, SlateSettings};

/// What the channel carried last: the slate is encoded to match it.
#[derive(Debug, Clone, Copy)]
struct Carried {
    video: Option<(Codec, VideoFormat)>,
    /// Sample rate and channels of the last AAC frame.
    audio: Option<(u32, u8)>,
}

#[derive(Debug)]
pub(crate) struct Slate {
    channel: String,
    settings: SlateSettings,
    /// Where the slate's frames go (a build without the media engine has no slate to send).
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    events: InputSender,
    /// The switcher slot, while enabled.
    slot: Option<usize>,
    carried: Carried,
    /// When the channel lost its last input (channel time), and the wall clock then.
    lost: Option<(Duration, SystemTime)>,
    running: Option<CancellationToken>,
    /// Since when the slate is on air.
    pub(crate) on_air_since: Option<SystemTime>,
}

impl Slate {
    pub(crate) fn new(
        channel: String,
        settings: SlateSettings,
        events: InputSender,
        switcher: &mut Switcher,
        now: Duration,
    ) -> Slate {
        let mut slate = Slate {
            channel,
            settings: SlateSettings {
                enabled: false,
                ..settings.clone()
            },
            events,
            slot: None,
            carried: Carried {
                video: None,
                audio: None,
            },
            lost: None,
            running: None,
            on_air_since: None,
        };
        slate.set_settings(settings, switcher, now);
        slate
    }

    pub(crate) fn enabled(&self) -> bool {
        self.slot.is_some()
    }

    /// Applies new settings: a slate turned on gets its slot, one turned off leaves the air.
    pub(crate) fn set_settings(
        &mut self,
        settings: SlateSettings,
        switcher: &mut Switcher,
        now: Duration,
    ) {
        let enabled = settings.enabled && cfg!(feature = "engine");
        if settings.enabled && !enabled {
            warn!(channel = %self.channel, "no slate: this build has no media engine (built without the `gstreamer` feature)");
        }
        match (self.slot, enabled) {
            (None, true) => {
                self.slot = Some(switcher.add_input(
                    now,
                    InputSpec {
                        id: SLATE_INPUT.to_string(),
                        role: Role::Slate,
                    },
                ));
            }
            (Some(slot), false) => {
                self.stop();
                switcher.remove_input(now, slot);
                self.slot = None;
            }
            _ => {}
        }
        if self.settings != settings && self.running.is_some() {
            // The next loss starts it with the new settings.
            self.stop();
        }
        self.settings = settings;
    }

    /// Notes the format of what the channel sends.
    pub(crate) fn observe(&mut self, frame: &Frame) {
        if frame.codec.is_video() && frame.keyframe {
            if let Some(format) = keyframe_video_format(frame.codec, &frame.data) {
                self.carried.video = Some((frame.codec, format));
            }
        } else if frame.codec == Codec::AacAdts
            && let Some(header) = AdtsHeader::parse(&frame.data)
        {
            self.carried.audio = Some((header.sample_rate(), header.channel_configuration));
        }
    }

    /// Every input is lost: the slate is due `after_ms` from now.
    pub(crate) fn all_lost(&mut self, now: Duration) {
        if self.enabled() && self.lost.is_none() {
            self.lost = Some((now, SystemTime::now()));
        }
    }

    /// When [`Slate::handle_timeout`] should run, if a slate is waiting to start.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        if self.running.is_some() {
            return None;
        }
        self.lost
            .map(|(at, _)| at + Duration::from_millis(self.settings.after_ms))
    }

    /// Starts the slate once it is due, if the channel still has nothing on air.
    pub(crate) fn handle_timeout(&mut self, now: Duration, switcher: &Switcher) {
        let (Some(slot), Some(due)) = (self.slot, self.deadline()) else {
            return;
        };
        if now < due {
            return;
        }
        if switcher.active().is_some() {
            self.lost = None;
            return;
        }
        let since = self.lost.map_or_else(SystemTime::now, |(_, wall)| wall);
        self.running = self.start(slot, since);
    }

    /// The channel switched to `to`: the slate stops once another input is on air.
    pub(crate) fn switched(&mut self, to: usize) {
        if Some(to) == self.slot {
            info!(channel = %self.channel, "slate on air");
            self.on_air_since = Some(SystemTime::now());
            return;
        }
        if self.running.is_some() {
            info!(channel = %self.channel, "slate off air: an input is back");
        }
        self.lost = None;
        self.on_air_since = None;
        self.stop();
    }

    pub(crate) fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel();
        }
        self.on_air_since = None;
    }

    #[cfg(feature = "engine")]
    fn start(&self, slot: usize, since: SystemTime) -> Option<CancellationToken> {
        use lunora_engine::{EngineInputSettings, SlateSettings as Picture, Source, VideoEncoding};
        use tracing::Instrument;
        let (codec, format) = self.carried.video.unwrap_or((
            Codec::H264,
            VideoFormat {
                width: 1280,
                height: 720,
                frame_rate: Some(30.0),
                interlaced: false,
            },
        ));
        let frame_rate = fraction(format.frame_rate.unwrap_or(30.0));
        let (audio_rate, channels) = self.carried.audio.unwrap_or((48_000, 2));
        let time = lunora_media::rfc3339(since);
        let clock = time.get(11..19).unwrap_or_default();
        let picture = Picture {
            codec,
            width: format.width,
            height: format.height,
            frame_rate,
            interlaced: format.interlaced,
            audio_rate,
            audio_channels: u32::from(channels.clamp(1, 2)),
            encoding: VideoEncoding {
                bitrate_kbps: 1_500,
                keyframe_interval: (2 * frame_rate.0).div_ceil(frame_rate.1.max(1)),
            },
            image: self.settings.image.clone(),
            caption: format!("{}\nsignal lost since {clock} UTC", self.channel),
        };
        info!(channel = %self.channel, width = format.width, height = format.height, interlaced = format.interlaced, "every input lost: starting the slate");
        let cancel = CancellationToken::new();
        let span = tracing::info_span!("input", channel = %self.channel, input = SLATE_INPUT);
        tokio::spawn(
            lunora_engine::run(
                EngineInputSettings {
                    id: SLATE_INPUT.to_string(),
                    source: Source::Slate(picture),
                    fetch: None,
                },
                slot,
                self.events.clone(),
                lunora_ingest::StatsHandle::new(),
                cancel.clone().cancelled_owned(),
            )
            .instrument(span),
        );
        Some(cancel)
    }

    #[cfg(not(feature = "engine"))]
    fn start(&self, _slot: usize, _since: SystemTime) -> Option<CancellationToken> {
        None
    }
}

impl Drop for Slate {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The broadcast frame rate nearest to `rate` (29.97 is 30000/1001).
#[cfg_attr(not(feature = "engine"), allow(dead_code))]
fn fraction(rate: f64) -> (u32, u32) {
    const RATES: [(u32, u32); 9] = [
        (24_000, 1_001),
        (24, 1),
        (25, 1),
        (30_000, 1_001),
        (30, 1),
        (50, 1),
        (60_000, 1_001),
        (60, 1),
        (120, 1),
    ];
    let off = |(num, den): (u32, u32)| (f64::from(num) / f64::from(den) - rate).abs();
    if !rate.is_finite() {
        return (30, 1);
    }
    RATES
        .into_iter()
        .min_by(|a, b| off(*a).total_cmp(&off(*b)))
        .unwrap_or((30, 1))
}

#[cfg(test)]
mod tests {
    use super::fraction;

    #[test]
    fn frame_rates_become_the_fractions_broadcast_uses() {
        assert_eq!(fraction(25.0), (25, 1));
        assert_eq!(fraction(29.97), (30_000, 1_001));
        assert_eq!(fraction(59.94), (60_000, 1_001));
        assert_eq!(fraction(23.976), (24_000, 1_001));
        assert_eq!(fraction(f64::NAN), (30, 1));
    }
}
