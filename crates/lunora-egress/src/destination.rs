//! An RTMP destination as a user describes it — in the config file or through the API — and the
//! one place that turns that description into something to connect to: preset URLs, YouTube's
//! backup ingest, X's regional servers, key and retry rules.

use std::time::Duration;

use lunora_media::Secret;
use serde::{Deserialize, Serialize};

use crate::conformance::PlatformRules;
use crate::rtmp::RtmpUrl;

/// Retry delays when a destination does not say (1 s doubling up to 30 s).
pub const DEFAULT_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

const YOUTUBE_PRIMARY: &str = "rtmps://a.rtmps.youtube.com/live2";
/// YouTube's backup ingest: the same stream key, sent to a second ingest server, so YouTube
/// can fail over on its side too.
const YOUTUBE_BACKUP: &str = "rtmps://b.rtmps.youtube.com/live2?backup=1";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Youtube,
    X,
    Linkedin,
    #[default]
    Custom,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Youtube => "youtube",
            Preset::X => "x",
            Preset::Linkedin => "linkedin",
            Preset::Custom => "custom",
        }
    }

    /// The platform rules the stream is checked against (none for custom servers).
    pub fn rules(self) -> Option<PlatformRules> {
        match self {
            Preset::Youtube => Some(PlatformRules::YOUTUBE),
            Preset::X => Some(PlatformRules::X),
            Preset::Linkedin => Some(PlatformRules::LINKEDIN),
            Preset::Custom => None,
        }
    }
}

/// What a user gives for one RTMP destination. The stream key is optional here so that an
/// update can leave it out and keep the saved one; [`DestinationSpec::validate`] requires it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    #[serde(default)]
    pub preset: Preset,
    /// The ingest URL without the key; optional for `youtube` and for `x` with a region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `x` only: the region code in X's server address (`rtmps://<region>.pscp.tv:443/x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `youtube` only: send to YouTube's backup ingest instead of the primary.
    #[serde(default)]
    pub backup_ingest: bool,
    #[serde(
        default,
        with = "lunora_media::exposed_secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub stream_key: Option<Secret>,
    #[serde(default)]
    pub autostart: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max_ms: Option<u64>,
}

/// Which part of a [`DestinationSpec`] a problem is about (the config file points at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecField {
    Url,
    Region,
    BackupIngest,
    StreamKey,
    RetryMin,
    RetryMax,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub field: SpecField,
    pub message: String,
}

/// The longest destination URL taken (platform ingest URLs are well under 200 characters).
const MAX_URL_CHARS: usize = 2048;

/// What a URL must be before it is parsed, shown in the API or logged: no control characters
/// (they would forge log lines), bounded, no `user:password@` (it would be shown and logged
/// like the rest of the URL; keys go in `stream_key`), a port other than 0. The problems never
/// repeat the URL, which may be long or hold a password.
fn checked_url(url: &str) -> Result<(), SpecProblem> {
    let problem = |message: &str| -> Result<(), SpecProblem> {
        Err(SpecProblem {
            field: SpecField::Url,
            message: message.into(),
        })
    };
    if url.chars().count() > MAX_URL_CHARS {
        return problem(&format!("`url` is longer than {MAX_URL_CHARS} characters"));
    }
    if url.chars().any(char::is_control) {
        return problem("`url` contains control characters");
    }
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if authority.contains('@') {
        return problem(
            "`url` must not carry a user name or password (user:password@host); give the key in `stream_key`",
        );
    }
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port == "0")
    {
        return problem("`url` needs a port other than 0");
    }
    Ok(())
}

/// A destination ready to connect.
#[derive(Debug, Clone)]
pub struct ValidDestination {
    pub url: RtmpUrl,
    pub stream_key: Secret,
    pub rules: Option<PlatformRules>,
    pub retry: (Duration, Duration),
}

impl DestinationSpec {
    /// The ingest URL this spec publishes to, preset defaults applied.
    pub fn resolved_url(&self) -> Result<String, SpecProblem> {
        let problem = |field, message: String| Err(SpecProblem { field, message });
        if self.region.is_some() && self.preset != Preset::X {
            return problem(
                SpecField::Region,
                "`region` applies to the x preset only".into(),
            );
        }
        if self.backup_ingest && self.preset != Preset::Youtube {
            return problem(
                SpecField::BackupIngest,
                "`backup_ingest` applies to the youtube preset only".into(),
            );
        }
        match (self.preset, &self.url) {
            (Preset::Youtube, Some(_)) if self.backup_ingest => {
                problem(SpecField::BackupIngest, "give either `url` or `backup_ingest = true`, not both".into())
            }
            (Preset::X, Some(_)) if self.region.is_some() => problem(SpecField::Region, "give either `url` or `region`, not both".into()),
            (Preset::Linkedin, Some(url)) if !url.starts_with("rtmps://") => {
                problem(SpecField::Url, "LinkedIn accepts RTMPS only: use the rtmps:// URL LinkedIn gives you".into())
            }
            (_, Some(url)) => Ok(url.clone()),
            (Preset::Youtube, None) => Ok(if self.backup_ingest { YOUTUBE_BACKUP } else { YOUTUBE_PRIMARY }.to_string()),
            (Preset::X, None) => match &self.region {
                Some(region) if !region.is_empty() && region.len() <= 16 && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') => {
                    Ok(format!("rtmps://{region}.pscp.tv:443/x"))
                }
                Some(region) => problem(SpecField::Region, format!("region {region:?} must be the short lowercase code from X's server URL, e.g. \"va\"")),
                None => problem(SpecField::Url, "the x preset needs `region` (the code in rtmps://<region>.pscp.tv:443/x) or the full `url` X shows you".into()),
            },
            (Preset::Linkedin | Preset::Custom, None) => problem(SpecField::Url, "needs `url` (the rtmp:// or rtmps:// ingest address the platform gives you)".into()),
        }
    }

    /// Every problem at once, or the destination to connect to.
    pub fn validate(&self) -> Result<ValidDestination, Vec<SpecProblem>> {
        let mut problems = Vec::new();
        let url = match self
            .resolved_url()
            .and_then(|text| checked_url(&text).map(|()| text))
        {
            Ok(text) => RtmpUrl::parse(&text)
                .map_err(|message| {
                    problems.push(SpecProblem {
                        field: SpecField::Url,
                        message,
                    })
                })
                .ok(),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let stream_key = match &self.stream_key {
            None => {
                problems.push(SpecProblem {
                    field: SpecField::StreamKey,
                    message: "needs `stream_key`".into(),
                });
                None
            }
            Some(key) => {
                if !lunora_media::valid_stream_key(key.expose()) {
                    problems.push(SpecProblem {
                        field: SpecField::StreamKey,
                        message: lunora_media::STREAM_KEY_RULE.into(),
                    });
                }
                Some(key.clone())
            }
        };
        let mut delay = |value: Option<u64>, default: Duration, field| {
            let ms = value.unwrap_or(default.as_millis() as u64);
            if !(100..=600_000).contains(&ms) {
                problems.push(SpecProblem {
                    field,
                    message: format!(
                        "retry delays must be between 100 and 600000 ms; this is {ms}"
                    ),
                });
            }
            Duration::from_millis(ms)
        };
        let retry = (
            delay(self.retry_min_ms, DEFAULT_RETRY.0, SpecField::RetryMin),
            delay(self.retry_max_ms, DEFAULT_RETRY.1, SpecField::RetryMax),
        );
        if retry.0 > retry.1 {
            problems.push(SpecProblem {
                field: SpecField::RetryMin,
                message: "retry_min_ms must not exceed retry_max_ms".into(),
            });
        }
        match (url, stream_key) {
            (Some(url), Some(stream_key)) if problems.is_empty() => Ok(ValidDestination {
                url,
                stream_key,
                rules: self.preset.rules(),
                retry,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(preset: Preset) -> DestinationSpec {
        DestinationSpec {
            preset,
            stream_key: Some(Secret::new("abcd-1234")),
            ..Default::default()
        }
    }

    #[test]
    fn presets_fill_in_their_ingest() {
        let youtube = spec(Preset::Youtube).validate().unwrap();
        assert_eq!(
            youtube.url.tc_url(),
            "rtmps://a.rtmps.youtube.com:443/live2"
        );
        let backup = DestinationSpec {
            backup_ingest: true,
            ..spec(Preset::Youtube)
        }
        .validate()
        .unwrap();
        assert_eq!(
            (backup.url.host.as_str(), backup.url.app.as_str()),
            ("b.rtmps.youtube.com", "live2?backup=1")
        );
        let x = DestinationSpec {
            region: Some("va".into()),
            ..spec(Preset::X)
        }
        .validate()
        .unwrap();
        assert_eq!(x.url.tc_url(), "rtmps://va.pscp.tv:443/x");
        assert_eq!(x.rules, Some(PlatformRules::X));
    }

    #[test]
    fn every_problem_is_named() {
        let problems = DestinationSpec {
            region: Some("VA!".into()),
            stream_key: None,
            retry_min_ms: Some(5),
            ..spec(Preset::X)
        }
        .validate()
        .unwrap_err();
        let fields: Vec<SpecField> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [SpecField::Region, SpecField::StreamKey, SpecField::RetryMin]
        );
        let linkedin = DestinationSpec {
            url: Some("rtmp://li.example/live".into()),
            ..spec(Preset::Linkedin)
        }
        .validate()
        .unwrap_err();
        assert!(linkedin[0].message.contains("RTMPS only"));
        assert!(
            spec(Preset::Custom).validate().unwrap_err()[0]
                .message
                .contains("needs `url`")
        );
        let both = DestinationSpec {
            url: Some("rtmps://x/y".into()),
            backup_ingest: true,
            ..spec(Preset::Youtube)
        }
        .validate()
        .unwrap_err();
        assert_eq!(both[0].field, SpecField::BackupIngest);
    }

    #[test]
    fn hostile_urls_are_refused_without_being_repeated() {
        let refused = |url: String, expect: &str| {
            let problems = DestinationSpec {
                url: Some(url.clone()),
                ..spec(Preset::Custom)
            }
            .validate()
            .unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].field, SpecField::Url);
            assert!(problems[0].message.contains(expect), "{problems:?}");
            assert!(!problems[0].message.contains("evil"), "{problems:?}");
        };
        refused(
            format!("rtmp://evil.example/{}", "a".repeat(2048)),
            "longer than 2048",
        );
        refused(
            "rtmp://evil.example/live\n2026 INFO forged".to_string(),
            "control characters",
        );
        refused(
            "rtmp://user:secret@evil.example/live".into(),
            "user name or password",
        );
        refused("rtmp://evil.example:0/live".into(), "other than 0");
        let fine = DestinationSpec {
            url: Some("rtmp://ingest.example:1935/live?a=b@c".into()),
            ..spec(Preset::Custom)
        };
        assert!(fine.validate().is_ok(), "an @ in the path is not userinfo");
    }

    #[test]
    fn the_key_survives_storage_but_not_debug() {
        let s = spec(Preset::Youtube);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("abcd-1234"));
        assert_eq!(serde_json::from_str::<DestinationSpec>(&json).unwrap(), s);
        assert!(!format!("{s:?}").contains("abcd"));
    }
}
