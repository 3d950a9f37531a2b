//! The `[aws]` settings and the SDK clients built from them with the standard credential chain
//! (environment, shared profile, web identity, container and instance roles).

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::setup::Problem;

/// `[aws]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// e.g. `eu-west-1`.
    pub region: String,
    /// A profile of the shared config/credentials files; `None`: `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Another endpoint than AWS's (a local test server).
    pub endpoint_url: Option<String>,
    /// The IAM role MediaLive assumes to write to MediaPackage (`MediaLiveAccessRole` in most
    /// accounts); `None` sends no role.
    pub role_arn: Option<String>,
    /// This box in AWS names and the `lunora:box` tag (default: [`default_box_id`]).
    pub box_id: String,
    /// Create input security groups (AWS needs them for push inputs); `false` only for an
    /// endpoint that does not model them (moto_server in the tests).
    pub input_security_groups: bool,
    /// How often the box reads the state of the MediaLive channels it provisioned
    /// (`poll_interval_s`, 1–3600, default 30): one `ListChannels` per poll for all of them.
    pub poll_interval_s: u64,
    /// Where the box learns its public IPv4 address when a setup lists no `allowed_cidrs`
    /// (plain-text answer; default [`crate::address::DEFAULT_PUBLIC_ADDRESS_URL`]).
    pub public_address_url: String,
    /// Create the MediaPackage v2 HLS origin endpoint (the playback URL); `false` only for an
    /// endpoint that does not model them (moto_server in the tests).
    pub origin_endpoints: bool,
}

pub const DEFAULT_POLL_INTERVAL_S: u64 = 30;

/// A box id from the host name: lowercase, anything outside `a-z 0-9 - _` as `-`, at most 64
/// characters; `lunora` when nothing is left.
pub fn default_box_id(hostname: &str) -> String {
    let id: String = hostname
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.trim_matches('-').is_empty() {
        "lunora".to_string()
    } else {
        id
    }
}

impl AwsSettings {
    /// Every problem at once; `field` is the key in `[aws]`.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self.region.contains('-')
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            problems.push(Problem {
                field: "region",
                message: format!(
                    "region {:?} is not an AWS region name like eu-west-1",
                    self.region
                ),
            });
        }
        if let Some(profile) = &self.profile
            && (profile.is_empty() || profile.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            problems.push(Problem {
                field: "profile",
                message: format!("profile {profile:?} must be a non-empty name without spaces"),
            });
        }
        if let Some(url) = &self.endpoint_url {
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                problems.push(Problem {
                    field: "endpoint_url",
                    message: format!(
                        "endpoint_url {url:?} must be an http:// or https:// URL with a host"
                    ),
                });
            }
        }
        if let Some(arn) = &self.role_arn {
            let ok = arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/");
            if !ok {
                problems.push(Problem {
                    field: "role_arn",
                    message: format!(
                        "role_arn {arn:?} is not an IAM role ARN like \
                         arn:aws:iam::123456789012:role/MediaLiveAccessRole"
                    ),
                });
            }
        }
        let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
            self.public_address_url
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        });
        if !scheme_ok || self.public_address_url.chars().any(char::is_control) {
            problems.push(Problem {
                field: "public_address_url",
                message: format!(
                    "public_address_url {:?} must be an http:// or https:// URL with a host",
                    self.public_address_url
                ),
            });
        }
        if !(1..=3600).contains(&self.poll_interval_s) {
            problems.push(Problem {
                field: "poll_interval_s",
                message: format!(
                    "poll_interval_s must be 1–3600 seconds; it is {}",
                    self.poll_interval_s
                ),
            });
        }
        if let Err(target) = crate::setup::Target::new(&self.box_id, "x") {
            problems.extend(target);
        }
        problems
    }
}

/// The MediaLive, MediaPackage v2 and Secrets Manager clients of one account and region.
#[derive(Debug, Clone)]
pub struct Clients {
    pub(crate) medialive: aws_sdk_medialive::Client,
    pub(crate) mediapackage: aws_sdk_mediapackagev2::Client,
    pub(crate) secrets: aws_sdk_secretsmanager::Client,
    /// A standard channel names the MediaPackage v2 region with each ingest endpoint.
    pub(crate) region: Option<String>,
    pub(crate) role_arn: Option<String>,
}

impl Clients {
    /// Clients with the standard credential chain. Reads no credentials yet: the first request
    /// does.
    pub async fn load(settings: &AwsSettings) -> Clients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()));
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Clients::from_sdk_config(&loader.load().await, settings.role_arn.clone())
    }

    /// Clients from an SDK configuration made elsewhere (tests: static credentials, no
    /// retries).
    pub fn from_sdk_config(config: &SdkConfig, role_arn: Option<String>) -> Clients {
        Clients {
            medialive: aws_sdk_medialive::Client::new(config),
            mediapackage: aws_sdk_mediapackagev2::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            region: config.region().map(|r| r.to_string()),
            role_arn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(region: &str) -> AwsSettings {
        AwsSettings {
            region: region.into(),
            profile: None,
            endpoint_url: None,
            role_arn: None,
            box_id: "studio-1".into(),
            input_security_groups: true,
            poll_interval_s: DEFAULT_POLL_INTERVAL_S,
            public_address_url: crate::address::DEFAULT_PUBLIC_ADDRESS_URL.into(),
            origin_endpoints: true,
        }
    }

    #[test]
    fn the_box_id_defaults_to_the_host_name() {
        assert_eq!(
            default_box_id("Studio-1.example.org\n"),
            "studio-1-example-org"
        );
        assert_eq!(default_box_id(""), "lunora");
        assert_eq!(default_box_id("..."), "lunora");
        assert_eq!(default_box_id(&"a".repeat(80)).len(), 64);
    }

    #[test]
    fn each_key_is_checked_and_named() {
        assert!(settings("eu-west-1").validate().is_empty());
        let bad = AwsSettings {
            region: "Europe".into(),
            profile: Some("my profile".into()),
            endpoint_url: Some("localhost:5000".into()),
            role_arn: Some("MediaLiveAccessRole".into()),
            box_id: "Studio 1".into(),
            input_security_groups: true,
            poll_interval_s: 0,
            public_address_url: "checkip".into(),
            origin_endpoints: true,
        };
        let problems: Vec<_> = bad
            .validate()
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "region",
                    "region \"Europe\" is not an AWS region name like eu-west-1".to_string()
                ),
                (
                    "profile",
                    "profile \"my profile\" must be a non-empty name without spaces".to_string()
                ),
                (
                    "endpoint_url",
                    "endpoint_url \"localhost:5000\" must be an http:// or https:// URL with a host"
                        .to_string()
                ),
                (
                    "role_arn",
                    "role_arn \"MediaLiveAccessRole\" is not an IAM role ARN like \
                     arn:aws:iam::123456789012:role/MediaLiveAccessRole"
                        .to_string()
                ),
                (
                    "public_address_url",
                    "public_address_url \"checkip\" must be an http:// or https:// URL with a host"
                        .to_string()
                ),
                (
                    "poll_interval_s",
                    "poll_interval_s must be 1–3600 seconds; it is 0".to_string()
                ),
                (
                    "box_id",
                    "box_id \"Studio 1\" must be 1–64 characters of a-z, 0-9, '-' or '_'"
                        .to_string()
                ),
            ]
        );
        let good = AwsSettings {
            region: "us-east-1".into(),
            profile: Some("lunora".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            role_arn: Some("arn:aws:iam::123456789012:role/MediaLiveAccessRole".into()),
            box_id: "studio-1".into(),
            input_security_groups: false,
            poll_interval_s: 3600,
            public_address_url: "http://127.0.0.1:8000/ip".into(),
            origin_endpoints: false,
        };
        assert!(good.validate().is_empty());
    }
}
