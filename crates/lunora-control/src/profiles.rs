//! Transcoding as the settings describe it: an RTMP destination's `transcode` (off, auto, or a
//! profile's name) and the profiles it can name — built in for each platform preset, or custom
//! in the config file's `[profiles.<name>]`.

use std::collections::BTreeMap;

use lunora_egress::Preset;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::{FrameRate, Problem};

/// What an RTMP destination sends: the channel's program as it is, a profile's transcode of it,
/// or (`auto`) the transcode of its preset's profile once the stream breaks the platform's
/// rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "\"off\" (the program as it is), \"auto\" (transcode with the preset's profile when the stream breaks the platform's rules) or a profile's name (youtube, x, linkedin or a [profiles.<name>] of the config file)."
)]
pub enum Transcode {
    #[default]
    Off,
    Auto,
    Profile(String),
}

impl From<String> for Transcode {
    fn from(value: String) -> Transcode {
        match value.as_str() {
            "off" => Transcode::Off,
            "auto" => Transcode::Auto,
            _ => Transcode::Profile(value),
        }
    }
}

impl From<Transcode> for String {
    fn from(value: Transcode) -> String {
        match value {
            Transcode::Off => "off".to_string(),
            Transcode::Auto => "auto".to_string(),
            Transcode::Profile(name) => name,
        }
    }
}

impl Transcode {
    pub fn is_off(&self) -> bool {
        *self == Transcode::Off
    }
}

fn default_frame_rate() -> FrameRate {
    FrameRate::Ntsc
}

fn default_keyframe_interval() -> u32 {
    2
}

fn default_deinterlace() -> bool {
    true
}

/// One transcode's output: fixed size and frame rate, so nothing upstream (a failover to an
/// encoder of another resolution) changes what a destination receives mid-session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSettings {
    #[schemars(range(min = 128, max = 3840))]
    pub width: u32,
    #[schemars(range(min = 72, max = 2160))]
    pub height: u32,
    #[serde(default = "default_frame_rate")]
    pub frame_rate: FrameRate,
    #[schemars(range(min = 100, max = 50_000))]
    pub video_bitrate_kbps: u32,
    #[serde(default = "default_keyframe_interval")]
    #[schemars(range(min = 1, max = 10))]
    pub keyframe_interval_s: u32,
    /// Deinterlace interlaced pictures (1080i and friends); progressive ones pass either way.
    #[serde(default = "default_deinterlace")]
    pub deinterlace: bool,
}

/// The platforms' profile: 720p at 29.97 fps, a keyframe every 2 s, progressive. 720p rather
/// than 1080p because it leaves room on a small box for a second transcode or a busy channel
/// (`benches/transcode.sh`: 1080i → 720p takes half a core, → 1080p two thirds, with the
/// decode, on the 2-core reference box); a `[profiles.*]` can ask for more.
const PLATFORM: ProfileSettings = ProfileSettings {
    width: 1280,
    height: 720,
    frame_rate: FrameRate::Ntsc,
    video_bitrate_kbps: 4_000,
    keyframe_interval_s: 2,
    deinterlace: true,
};

/// Built-in profiles by name, one per platform preset.
pub fn builtin(name: &str) -> Option<ProfileSettings> {
    match name {
        // YouTube's recommended 720p30 bitrate is 1.5–4 Mbit/s.
        "youtube" => Some(PLATFORM),
        // X and LinkedIn cap at 30 fps and recommend at most 4–6 Mbit/s.
        "x" | "linkedin" => Some(ProfileSettings {
            video_bitrate_kbps: 3_500,
            ..PLATFORM
        }),
        _ => None,
    }
}

/// The profile `auto` uses for a preset (none for custom servers: no rules to check).
pub fn for_preset(preset: Preset) -> Option<&'static str> {
    match preset {
        Preset::Custom => None,
        other => Some(other.name()),
    }
}

/// Custom profiles by name, from the config file.
pub type Profiles = BTreeMap<String, ProfileSettings>;

/// The profile `name` resolves to: a custom one first (so an operator can redefine a platform's),
/// then the built-in ones.
pub fn resolve(profiles: &Profiles, name: &str) -> Option<ProfileSettings> {
    profiles.get(name).copied().or_else(|| builtin(name))
}

/// The profile an output transcodes with, if any (`auto` counts its preset's).
pub(crate) fn profile_of(
    output: &crate::settings::OutputSettings,
    profiles: &Profiles,
) -> Option<ProfileSettings> {
    let crate::settings::OutputSettings::Rtmp(rtmp) = output else {
        return None;
    };
    match &rtmp.transcode {
        Transcode::Off => None,
        Transcode::Auto => for_preset(rtmp.preset).and_then(|name| resolve(profiles, name)),
        Transcode::Profile(name) => resolve(profiles, name),
    }
}

impl ProfileSettings {
    /// Every problem with a `[profiles.<name>]`.
    pub fn validate(&self, name: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if name == "off" || name == "auto" || !crate::settings::InputId::new(name).is_valid() {
            problems.push(Problem {
                field: None,
                message: format!(
                    "profile name {name:?} must be a short id (letters, digits, - and _), not \"off\" or \"auto\""
                ),
            });
        }
        crate::settings::picture_size(
            &format!("profile {name:?}: "),
            self.width,
            self.height,
            &mut problems,
        );
        if !(100..=50_000).contains(&self.video_bitrate_kbps) {
            problems.push(Problem::at(
                "video_bitrate_kbps",
                format!(
                    "profile {name:?}: video_bitrate_kbps must be between 100 and 50000; it is {}",
                    self.video_bitrate_kbps
                ),
            ));
        }
        if !(1..=10).contains(&self.keyframe_interval_s) {
            problems.push(Problem::at(
                "keyframe_interval_s",
                format!(
                    "profile {name:?}: keyframe_interval_s must be between 1 and 10 (platforms want 2); it is {}",
                    self.keyframe_interval_s
                ),
            ));
        }
        problems
    }
}

/// What is wrong with a destination's `transcode` in a graph whose custom profiles are
/// `profiles`, if anything.
pub(crate) fn transcode_problem(
    transcode: &Transcode,
    preset: Preset,
    has_source: bool,
    profiles: &Profiles,
) -> Option<Problem> {
    let problem = |message: String| Some(Problem::at("transcode", message));
    match transcode {
        Transcode::Off => None,
        _ if has_source => problem(
            "transcode applies to the channel's program; an output with `source` sends that input as received: remove one of the two".to_string(),
        ),
        _ if !cfg!(feature = "engine") => problem(
            "transcode needs the media engine, and this build has none (built without the `gstreamer` feature): set transcode = \"off\"".to_string(),
        ),
        Transcode::Auto if for_preset(preset).is_none() => problem(
            "transcode = \"auto\" needs a platform preset (youtube, x or linkedin) whose rules say when to transcode; name a profile instead, e.g. transcode = \"youtube\"".to_string(),
        ),
        Transcode::Auto => None,
        Transcode::Profile(name) if resolve(profiles, name).is_some() => None,
        Transcode::Profile(name) => {
            let mut known: Vec<&str> = vec!["youtube", "x", "linkedin"];
            known.extend(profiles.keys().map(String::as_str));
            problem(format!(
                "transcode = {name:?} names no profile: use \"off\", \"auto\", one of {known:?}, or add [profiles.{name}] to the config file"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcode_reads_and_writes_as_one_string() {
        for (text, value) in [
            ("off", Transcode::Off),
            ("auto", Transcode::Auto),
            ("studio", Transcode::Profile("studio".into())),
        ] {
            let json = format!("\"{text}\"");
            assert_eq!(serde_json::from_str::<Transcode>(&json).unwrap(), value);
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
        }
    }

    #[test]
    fn unknown_profiles_and_auto_without_rules_are_refused_with_the_way_out() {
        let mut profiles = Profiles::new();
        profiles.insert(
            "studio".into(),
            ProfileSettings {
                width: 1920,
                height: 1080,
                ..PLATFORM
            },
        );
        let check = |t: Transcode, preset| transcode_problem(&t, preset, false, &profiles);
        assert_eq!(check(Transcode::Off, Preset::Custom), None);
        if cfg!(feature = "engine") {
            assert_eq!(check(Transcode::Auto, Preset::Youtube), None);
            assert_eq!(
                check(Transcode::Profile("studio".into()), Preset::Custom),
                None
            );
            assert_eq!(check(Transcode::Profile("x".into()), Preset::Custom), None);
            let auto = check(Transcode::Auto, Preset::Custom).unwrap();
            assert!(auto.message.contains("name a profile"), "{auto:?}");
            let tapped = transcode_problem(&Transcode::Auto, Preset::X, true, &profiles).unwrap();
            assert!(tapped.message.contains("`source`"), "{tapped:?}");
            let unknown = check(Transcode::Profile("tv".into()), Preset::X).unwrap();
            assert!(unknown.message.contains("[profiles.tv]"), "{unknown:?}");
            assert!(unknown.message.contains("studio"), "{unknown:?}");
        } else {
            let refused = check(Transcode::Auto, Preset::Youtube).unwrap();
            assert!(
                refused.message.contains("transcode = \"off\""),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn profile_ranges_are_checked() {
        let bad = ProfileSettings {
            width: 1281,
            video_bitrate_kbps: 50,
            keyframe_interval_s: 0,
            ..PLATFORM
        };
        let fields: Vec<_> = bad.validate("auto").iter().map(|p| p.field).collect();
        assert_eq!(fields.len(), 4, "{fields:?}");
        assert!(PLATFORM.validate("studio").is_empty());
        assert_eq!(
            resolve(&Profiles::new(), "linkedin").map(|p| p.height),
            Some(720)
        );
    }
}
