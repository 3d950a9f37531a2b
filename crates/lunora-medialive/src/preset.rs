//! The named encoder presets: an H.264 + AAC ABR ladder per preset, into one MediaPackage
//! output group.

use aws_sdk_medialive::types::{
    AacCodingMode, AacSettings, AudioCodecSettings, AudioDescription, EncoderSettings,
    H264RateControlMode, H264Settings, MediaPackageGroupSettings, MediaPackageOutputSettings,
    Output, OutputGroup, OutputGroupSettings, OutputLocationRef, OutputSettings, TimecodeConfig,
    TimecodeConfigSource, VideoCodecSettings, VideoDescription,
};

/// One rendition of a ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendition {
    pub name: &'static str,
    pub width: i32,
    pub height: i32,
    pub video_bitrate: i32,
}

/// A named encoder preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub renditions: &'static [Rendition],
    pub audio_bitrate: f64,
}

const P1080: Rendition = Rendition {
    name: "1080p",
    width: 1920,
    height: 1080,
    video_bitrate: 6_000_000,
};
const P720: Rendition = Rendition {
    name: "720p",
    width: 1280,
    height: 720,
    video_bitrate: 3_000_000,
};
const P480: Rendition = Rendition {
    name: "480p",
    width: 854,
    height: 480,
    video_bitrate: 1_200_000,
};

const PRESETS: [Preset; 2] = [
    Preset {
        name: "abr-1080p",
        renditions: &[P1080, P720, P480],
        audio_bitrate: 128_000.0,
    },
    Preset {
        name: "abr-720p",
        renditions: &[P720, P480],
        audio_bitrate: 128_000.0,
    },
];

/// The destination id the output group writes to.
pub(crate) const DESTINATION_ID: &str = "mediapackage";
const AUDIO_NAME: &str = "audio-aac";
/// The audio selector the encoder reads (and a silence failover condition watches), defined on
/// each input attachment.
pub(crate) const AUDIO_SELECTOR: &str = "default";

impl Preset {
    pub const NAMES: [&'static str; 2] = [PRESETS[0].name, PRESETS[1].name];

    pub fn named(name: &str) -> Option<Preset> {
        PRESETS.iter().find(|p| p.name == name).copied()
    }

    /// MediaLive's encoder settings: one video description per rendition, one AAC stereo
    /// audio, all in a MediaPackage output group writing to [`DESTINATION_ID`].
    pub fn encoder_settings(&self) -> EncoderSettings {
        let videos = self.renditions.iter().map(|r| {
            VideoDescription::builder()
                .name(format!("video-{}", r.name))
                .width(r.width)
                .height(r.height)
                .codec_settings(
                    VideoCodecSettings::builder()
                        .h264_settings(
                            H264Settings::builder()
                                .rate_control_mode(H264RateControlMode::Cbr)
                                .bitrate(r.video_bitrate)
                                .gop_size(2.0)
                                .gop_size_units(aws_sdk_medialive::types::H264GopSizeUnits::Seconds)
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let audio = AudioDescription::builder()
            .name(AUDIO_NAME)
            .audio_selector_name(AUDIO_SELECTOR)
            .codec_settings(
                AudioCodecSettings::builder()
                    .aac_settings(
                        AacSettings::builder()
                            .bitrate(self.audio_bitrate)
                            .coding_mode(AacCodingMode::CodingMode20)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let outputs = self.renditions.iter().map(|r| {
            Output::builder()
                .output_name(r.name)
                .video_description_name(format!("video-{}", r.name))
                .audio_description_names(AUDIO_NAME)
                .output_settings(
                    OutputSettings::builder()
                        .media_package_output_settings(
                            MediaPackageOutputSettings::builder().build(),
                        )
                        .build(),
                )
                .build()
        });
        let group = OutputGroup::builder()
            .name("mediapackage")
            .output_group_settings(
                OutputGroupSettings::builder()
                    .media_package_group_settings(
                        MediaPackageGroupSettings::builder()
                            .destination(
                                OutputLocationRef::builder()
                                    .destination_ref_id(DESTINATION_ID)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .set_outputs(Some(outputs.collect()))
            .build();
        EncoderSettings::builder()
            .set_video_descriptions(Some(videos.collect()))
            .audio_descriptions(audio)
            .output_groups(group)
            .timecode_config(
                TimecodeConfig::builder()
                    .source(TimecodeConfigSource::Systemclock)
                    .build(),
            )
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_1080p_ladder_is_three_h264_renditions_and_one_aac() {
        let settings = Preset::named("abr-1080p")
            .expect("known")
            .encoder_settings();
        let sizes: Vec<_> = settings
            .video_descriptions()
            .iter()
            .map(|v| (v.width(), v.height()))
            .collect();
        assert_eq!(
            sizes,
            [
                (Some(1920), Some(1080)),
                (Some(1280), Some(720)),
                (Some(854), Some(480))
            ]
        );
        assert!(
            settings
                .video_descriptions()
                .iter()
                .all(|v| { v.codec_settings().and_then(|c| c.h264_settings()).is_some() })
        );
        assert_eq!(settings.audio_descriptions().len(), 1);
        let group = &settings.output_groups()[0];
        assert_eq!(group.outputs().len(), 3);
        assert_eq!(
            group
                .output_group_settings()
                .and_then(|s| s.media_package_group_settings())
                .and_then(|m| m.destination())
                .and_then(|d| d.destination_ref_id()),
            Some(DESTINATION_ID)
        );
        assert!(Preset::named("abr-720p").is_some());
        assert!(Preset::named("nope").is_none());
    }
}
