//! Who may connect: stream id and encryption, decided before srt-protocol handles any keys.

use lunora_media::Secret;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;

/// The rules for callers of one listener.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub passphrase: Option<Secret>,
    /// When set, callers must present this stream id (plain, or as `#!::r=<id>,…`).
    pub stream_id: Option<String>,
}

/// Why a caller was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    StreamId {
        given: Option<String>,
    },
    /// The caller is encrypted but the listener has no passphrase.
    UnexpectedEncryption,
    /// The listener requires a passphrase but the caller sent none.
    NotEncrypted,
    /// The configured passphrase is unusable (config validation should have caught it).
    InvalidPassphrase,
}

impl Refusal {
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Refusal::StreamId { .. } => RejectReason::Server(ServerRejectReason::Forbidden),
            Refusal::NotEncrypted => RejectReason::Core(CoreRejectReason::Unsecure),
            Refusal::UnexpectedEncryption | Refusal::InvalidPassphrase => {
                RejectReason::Core(CoreRejectReason::BadSecret)
            }
        }
    }

    /// Whether the refusal is about the passphrase (for counting).
    pub fn is_passphrase(&self) -> bool {
        !matches!(self, Refusal::StreamId { .. })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::StreamId { given } => write!(f, "stream id {:?} does not match the configured one", given.as_deref().unwrap_or("")),
            Refusal::UnexpectedEncryption => f.write_str("caller is encrypted but no passphrase is configured; set `passphrase` or turn encryption off on the caller"),
            Refusal::NotEncrypted => f.write_str("caller is not encrypted but a passphrase is required; set the same passphrase on the caller"),
            Refusal::InvalidPassphrase => f.write_str("the configured passphrase is not 10–79 characters"),
        }
    }
}

/// True when a caller's stream id satisfies the configured one. Accepts the plain form and the
/// SRT access-control form `#!::r=<resource>,m=publish,…`.
pub fn stream_id_matches(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    given == expected
        || given.strip_prefix("#!::").is_some_and(|rest| {
            rest.split(',')
                .any(|pair| pair.strip_prefix("r=") == Some(expected))
        })
}

impl AccessPolicy {
    /// Decides on a caller. On acceptance returns the key settings to accept with: the
    /// caller's own key length, so AES-128/192/256 callers all work with one passphrase.
    pub fn judge(
        &self,
        stream_id: Option<&str>,
        key_size: KeySize,
    ) -> Result<Option<KeySettings>, Refusal> {
        if let Some(expected) = &self.stream_id
            && !stream_id_matches(expected, stream_id)
        {
            return Err(Refusal::StreamId {
                given: stream_id.map(str::to_string),
            });
        }
        match (&self.passphrase, key_size) {
            (None, KeySize::Unspecified) => Ok(None),
            (None, _) => Err(Refusal::UnexpectedEncryption),
            (Some(_), KeySize::Unspecified) => Err(Refusal::NotEncrypted),
            (Some(passphrase), key_size) => Passphrase::try_from(passphrase.expose().to_string())
                .map(|passphrase| {
                    Some(KeySettings {
                        key_size,
                        passphrase,
                    })
                })
                .map_err(|_| Refusal::InvalidPassphrase),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_forms() {
        assert!(stream_id_matches("videon-a", Some("videon-a")));
        assert!(stream_id_matches(
            "videon-a",
            Some("#!::m=publish,r=videon-a")
        ));
        assert!(!stream_id_matches("videon-a", Some("#!::r=videon-b")));
        assert!(!stream_id_matches("videon-a", None));
    }

    #[test]
    fn encryption_combinations() {
        let open = AccessPolicy::default();
        assert_eq!(open.judge(None, KeySize::Unspecified), Ok(None));
        assert_eq!(
            open.judge(None, KeySize::AES256),
            Err(Refusal::UnexpectedEncryption)
        );
        let locked = AccessPolicy {
            passphrase: Some(Secret::new("0123456789abc")),
            stream_id: None,
        };
        assert_eq!(
            locked.judge(None, KeySize::Unspecified),
            Err(Refusal::NotEncrypted)
        );
        for size in [KeySize::AES128, KeySize::AES192, KeySize::AES256] {
            assert_eq!(
                locked.judge(None, size).map(|k| k.map(|k| k.key_size)),
                Ok(Some(size))
            );
        }
        let short = AccessPolicy {
            passphrase: Some(Secret::new("short")),
            stream_id: None,
        };
        assert_eq!(
            short.judge(None, KeySize::AES128).map(|_| ()),
            Err(Refusal::InvalidPassphrase)
        );
    }
}
