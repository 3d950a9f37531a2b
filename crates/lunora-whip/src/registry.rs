//! Sans-IO session table: which inputs take WHIP publishers, with which token, who is
//! publishing, and the limits (one publisher per input, a box-wide cap, a handshake deadline).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lunora_media::Secret;

/// A session's id: the last segment of its resource URL, 128 random bits in hex.
pub type SessionId = String;

/// Why a publish request is turned away; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no WHIP input by that name")]
    NoInput,
    #[error("missing or wrong bearer token")]
    BadToken,
    #[error("the input already has a publisher; DELETE its session first")]
    Busy,
    #[error("the box has {0} WebRTC sessions, its limit")]
    Full(usize),
}

/// Short-lived credentials outstanding per input; a new one pushes out the oldest.
pub const MAX_CREDENTIALS: usize = 8;
/// How long a credential handed to the dashboard may wait for its publish.
pub const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Entry<S> {
    token: Secret,
    /// One-use tokens for the dashboard's "go live" page, with their expiry.
    credentials: Vec<(Secret, Instant)>,
    sink: S,
    publisher: Option<SessionId>,
}

#[derive(Debug)]
struct Session {
    input: String,
    started: Instant,
    connected: bool,
}

/// `S`: what a session's media is handed to (the input's queue; anything in tests).
#[derive(Debug)]
pub struct Registry<S> {
    inputs: HashMap<String, Entry<S>>,
    sessions: HashMap<SessionId, Session>,
    max_sessions: usize,
    handshake_timeout: Duration,
}

impl<S: Clone> Registry<S> {
    pub fn new(max_sessions: usize, handshake_timeout: Duration) -> Registry<S> {
        Registry {
            inputs: HashMap::new(),
            sessions: HashMap::new(),
            max_sessions,
            handshake_timeout,
        }
    }

    /// Adds (or replaces) an input. A replaced input's session is returned to be ended.
    pub fn add_input(&mut self, name: &str, token: Secret, sink: S) -> Option<SessionId> {
        let old = self.remove_input(name);
        self.inputs.insert(
            name.to_string(),
            Entry {
                token,
                credentials: Vec::new(),
                sink,
                publisher: None,
            },
        );
        old
    }

    /// Removes an input; its session, if any, is returned to be ended.
    pub fn remove_input(&mut self, name: &str) -> Option<SessionId> {
        let publisher = self.inputs.remove(name)?.publisher;
        if let Some(id) = &publisher {
            self.sessions.remove(id);
        }
        publisher
    }

    /// Checks a publish request and reserves the input for session `id`.
    pub fn admit(
        &mut self,
        input: &str,
        bearer: Option<&str>,
        id: SessionId,
        now: Instant,
    ) -> Result<S, Refusal> {
        let entry = self.inputs.get_mut(input).ok_or(Refusal::NoInput)?;
        entry.credentials.retain(|(_, expiry)| *expiry > now);
        let Some(bearer) = bearer else {
            return Err(Refusal::BadToken);
        };
        let token = constant_time_eq(bearer.as_bytes(), entry.token.expose().as_bytes());
        let credential = entry
            .credentials
            .iter()
            .position(|(c, _)| constant_time_eq(bearer.as_bytes(), c.expose().as_bytes()));
        if !token && credential.is_none() {
            return Err(Refusal::BadToken);
        }
        if entry.publisher.is_some() {
            return Err(Refusal::Busy);
        }
        if self.sessions.len() >= self.max_sessions {
            return Err(Refusal::Full(self.max_sessions));
        }
        if let Some(used) = credential {
            entry.credentials.remove(used);
        }
        entry.publisher = Some(id.clone());
        self.sessions.insert(
            id,
            Session {
                input: input.to_string(),
                started: now,
                connected: false,
            },
        );
        Ok(entry.sink.clone())
    }

    /// Adds a one-use credential for `input`, valid for [`CREDENTIAL_LIFETIME`]. False when
    /// there is no such input.
    pub fn issue(&mut self, input: &str, credential: Secret, now: Instant) -> bool {
        let Some(entry) = self.inputs.get_mut(input) else {
            return false;
        };
        entry.credentials.retain(|(_, expiry)| *expiry > now);
        if entry.credentials.len() >= MAX_CREDENTIALS {
            entry.credentials.remove(0);
        }
        entry
            .credentials
            .push((credential, now + CREDENTIAL_LIFETIME));
        true
    }

    /// The session's ICE and DTLS are done: the handshake deadline no longer applies.
    pub fn connected(&mut self, id: &str) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.connected = true;
        }
    }

    /// Whether `id` is a live session of `input` (a DELETE names both).
    pub fn owns(&self, input: &str, id: &str) -> bool {
        self.sessions.get(id).is_some_and(|s| s.input == input)
    }

    /// Frees the session's input; returns the input's name.
    pub fn end(&mut self, id: &str) -> Option<String> {
        let session = self.sessions.remove(id)?;
        if let Some(entry) = self.inputs.get_mut(&session.input)
            && entry.publisher.as_deref() == Some(id)
        {
            entry.publisher = None;
        }
        Some(session.input)
    }

    /// Sessions whose handshake has not finished in time: to be ended.
    pub fn expired(&self, now: Instant) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, s)| {
                !s.connected && now.saturating_duration_since(s.started) >= self.handshake_timeout
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The live session of `input`.
    pub fn publisher(&self, input: &str) -> Option<&str> {
        self.inputs.get(input)?.publisher.as_deref()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// Compares without stopping at the first difference, so the time taken says nothing about
/// how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry<u32> {
        let mut r = Registry::new(2, Duration::from_secs(10));
        r.add_input("ch/cam", Secret::new("token-1"), 1);
        r.add_input("ch/screen", Secret::new("token-2"), 2);
        r.add_input("ch/third", Secret::new("token-3"), 3);
        r
    }

    #[test]
    fn wrong_or_missing_token_is_refused_and_reserves_nothing() {
        let mut r = registry();
        let now = Instant::now();
        assert_eq!(
            r.admit("ch/cam", None, "a".into(), now),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            r.admit("ch/cam", Some("token-2"), "a".into(), now),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            r.admit("ch/cam", Some("token-1x"), "a".into(), now),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            r.admit("ch/nope", Some("token-1"), "a".into(), now),
            Err(Refusal::NoInput)
        );
        assert_eq!(r.sessions(), 0);
        assert_eq!(r.admit("ch/cam", Some("token-1"), "a".into(), now), Ok(1));
    }

    #[test]
    fn one_publisher_per_input_until_its_session_ends() {
        let mut r = registry();
        let now = Instant::now();
        assert_eq!(r.admit("ch/cam", Some("token-1"), "a".into(), now), Ok(1));
        assert_eq!(
            r.admit("ch/cam", Some("token-1"), "b".into(), now),
            Err(Refusal::Busy)
        );
        assert!(r.owns("ch/cam", "a"));
        assert!(!r.owns("ch/screen", "a"));
        assert_eq!(r.end("a").as_deref(), Some("ch/cam"));
        assert_eq!(r.end("a"), None);
        assert_eq!(r.admit("ch/cam", Some("token-1"), "b".into(), now), Ok(1));
    }

    #[test]
    fn the_box_wide_cap_holds() {
        let mut r = registry();
        let now = Instant::now();
        r.admit("ch/cam", Some("token-1"), "a".into(), now).unwrap();
        r.admit("ch/screen", Some("token-2"), "b".into(), now)
            .unwrap();
        assert_eq!(
            r.admit("ch/third", Some("token-3"), "c".into(), now),
            Err(Refusal::Full(2))
        );
    }

    #[test]
    fn handshakes_expire_unless_connected() {
        let mut r = registry();
        let now = Instant::now();
        r.admit("ch/cam", Some("token-1"), "a".into(), now).unwrap();
        r.admit("ch/screen", Some("token-2"), "b".into(), now)
            .unwrap();
        r.connected("b");
        assert!(r.expired(now + Duration::from_secs(9)).is_empty());
        assert_eq!(
            r.expired(now + Duration::from_secs(10)),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn a_credential_works_once_and_only_until_it_expires() {
        let mut r = registry();
        let now = Instant::now();
        assert!(!r.issue("ch/nope", Secret::new("c-0"), now));
        assert!(r.issue("ch/cam", Secret::new("c-1"), now));
        assert!(r.issue("ch/cam", Secret::new("c-2"), now));
        assert_eq!(
            r.admit("ch/screen", Some("c-1"), "x".into(), now),
            Err(Refusal::BadToken)
        );
        assert_eq!(r.admit("ch/cam", Some("c-1"), "a".into(), now), Ok(1));
        r.end("a");
        assert_eq!(
            r.admit("ch/cam", Some("c-1"), "b".into(), now),
            Err(Refusal::BadToken)
        );
        let late = now + CREDENTIAL_LIFETIME;
        assert_eq!(
            r.admit("ch/cam", Some("c-2"), "b".into(), late),
            Err(Refusal::BadToken)
        );
        // The input's own token is not affected.
        assert_eq!(r.admit("ch/cam", Some("token-1"), "b".into(), late), Ok(1));
    }

    #[test]
    fn outstanding_credentials_are_bounded() {
        let mut r = registry();
        let now = Instant::now();
        for i in 0..=MAX_CREDENTIALS {
            r.issue("ch/cam", Secret::new(format!("c-{i}")), now);
        }
        assert_eq!(
            r.admit("ch/cam", Some("c-0"), "a".into(), now),
            Err(Refusal::BadToken)
        );
        assert_eq!(r.admit("ch/cam", Some("c-1"), "a".into(), now), Ok(1));
    }

    #[test]
    fn removing_an_input_hands_back_its_session() {
        let mut r = registry();
        let now = Instant::now();
        r.admit("ch/cam", Some("token-1"), "a".into(), now).unwrap();
        assert_eq!(r.publisher("ch/cam"), Some("a"));
        assert_eq!(r.remove_input("ch/cam").as_deref(), Some("a"));
        assert_eq!(r.sessions(), 0);
        assert_eq!(
            r.admit("ch/cam", Some("token-1"), "c".into(), now),
            Err(Refusal::NoInput)
        );
    }
}
