//! Watching a provisioned MediaLive channel from the box: since when it runs, whether the box
//! feeds it, and when an idle one must be stopped (`stop_after_idle_min`). [`Watch`] is a pure
//! function of what each poll saw and a clock; [`Provisioner::channel_states`] is the one AWS
//! call a poll makes for every channel of the box.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::provision::{ProvisionError, Provisioner, TAG_BOX, TAG_CHANNEL};

/// MediaLive's state of a channel that is running (and billing).
pub const RUNNING: &str = "RUNNING";
/// A running channel restarting a pipeline: still running, still billing.
const RECOVERING: &str = "RECOVERING";

fn limit(minutes: Option<u32>) -> Option<Duration> {
    minutes.map(|m| Duration::from_secs(u64::from(m) * 60))
}

/// What the box must do after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchAction {
    /// Remember (and persist) since when the channel runs; `None`: it stopped.
    RunningSince(Option<SystemTime>),
    /// The channel has run without a feed for `idle`, past `stop_after_idle_min`: stop it.
    StopIdle { idle: Duration },
}

/// One channel's watch. `monotonic` times come from one clock that never goes backwards (a
/// wall-clock step must not stop a channel early); `running_since` is wall-clock, for people.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    stop_after_idle: Option<Duration>,
    running_since: Option<SystemTime>,
    idle_since: Option<Duration>,
    stop_requested: bool,
}

impl Watch {
    /// `running_since` as saved before a restart, so the figure survives it.
    pub fn new(stop_after_idle_min: Option<u32>, running_since: Option<SystemTime>) -> Watch {
        Watch {
            stop_after_idle: limit(stop_after_idle_min),
            running_since,
            idle_since: None,
            stop_requested: false,
        }
    }

    pub fn set_stop_after_idle_min(&mut self, minutes: Option<u32>) {
        self.stop_after_idle = limit(minutes);
    }

    pub fn running_since(&self) -> Option<SystemTime> {
        self.running_since
    }

    /// How long the channel has run with nothing from the box reaching it, if it has.
    pub fn idle_for(&self, monotonic: Duration) -> Option<Duration> {
        self.idle_since.map(|since| monotonic.saturating_sub(since))
    }

    /// Takes one poll's result: MediaLive's `state` (`None` when the channel is gone) and
    /// whether one of the box's outputs into MediaLive is live.
    pub fn observe(
        &mut self,
        wall: SystemTime,
        monotonic: Duration,
        state: Option<&str>,
        feed_live: bool,
    ) -> Vec<WatchAction> {
        let mut actions = Vec::new();
        let running = matches!(state, Some(RUNNING | RECOVERING));
        match (running, self.running_since) {
            (true, None) => {
                self.running_since = Some(wall);
                actions.push(WatchAction::RunningSince(Some(wall)));
            }
            (false, Some(_)) => {
                self.running_since = None;
                actions.push(WatchAction::RunningSince(None));
            }
            _ => {}
        }
        if !running || feed_live {
            self.idle_since = None;
            self.stop_requested = false;
            return actions;
        }
        let since = *self.idle_since.get_or_insert(monotonic);
        let idle = monotonic.saturating_sub(since);
        if let Some(limit) = self.stop_after_idle
            && idle >= limit
            && !self.stop_requested
        {
            self.stop_requested = true;
            actions.push(WatchAction::StopIdle { idle });
        }
        actions
    }

    /// The stop request failed: ask again at the next poll.
    pub fn stop_failed(&mut self) {
        self.stop_requested = false;
    }
}

impl Provisioner {
    /// Every live MediaLive channel tagged for `box_id`: Lunora channel id → state. One
    /// paginated `ListChannels`, whatever the number of channels.
    pub async fn channel_states(
        &self,
        box_id: &str,
    ) -> Result<HashMap<String, String>, ProvisionError> {
        let mut states = HashMap::new();
        for channel in self.live_channels().await? {
            let tags = channel.tags();
            if tags.and_then(|t| t.get(TAG_BOX)).map(String::as_str) != Some(box_id) {
                continue;
            }
            let (Some(ours), Some(state)) =
                (tags.and_then(|t| t.get(TAG_CHANNEL)), channel.state())
            else {
                continue;
            };
            states.insert(ours.clone(), state.as_str().to_string());
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(minutes: u64) -> (SystemTime, Duration) {
        let monotonic = MIN * u32::try_from(minutes).unwrap_or(u32::MAX);
        (SystemTime::UNIX_EPOCH + monotonic, monotonic)
    }

    #[test]
    fn running_since_is_set_once_and_cleared_when_stopped() {
        let mut watch = Watch::new(None, None);
        let (wall, mono) = at(0);
        assert_eq!(watch.observe(wall, mono, Some("STARTING"), false), vec![]);
        let (wall1, mono1) = at(1);
        assert_eq!(
            watch.observe(wall1, mono1, Some(RUNNING), true),
            vec![WatchAction::RunningSince(Some(wall1))]
        );
        let (wall2, mono2) = at(2);
        assert_eq!(watch.observe(wall2, mono2, Some(RUNNING), true), vec![]);
        assert_eq!(watch.running_since(), Some(wall1));
        // A pipeline recovering is still the same run.
        let (wall3, mono3) = at(3);
        assert_eq!(
            watch.observe(wall3, mono3, Some("RECOVERING"), true),
            vec![]
        );
        assert_eq!(watch.running_since(), Some(wall1));
        let (wall4, mono4) = at(4);
        assert_eq!(
            watch.observe(wall4, mono4, Some("STOPPING"), false),
            vec![WatchAction::RunningSince(None)]
        );
    }

    #[test]
    fn a_restart_keeps_the_saved_running_since() {
        let saved = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut watch = Watch::new(None, Some(saved));
        let (wall, mono) = at(100);
        assert_eq!(watch.observe(wall, mono, Some(RUNNING), true), vec![]);
        assert_eq!(watch.running_since(), Some(saved));
    }

    #[test]
    fn an_unfed_running_channel_is_stopped_once_after_the_limit() {
        let mut watch = Watch::new(Some(10), None);
        let (wall, mono) = at(0);
        watch.observe(wall, mono, Some(RUNNING), true);
        // The feed drops at minute 5; nine minutes later it is still within the limit.
        for minute in 5..15 {
            let (wall, mono) = at(minute);
            assert_eq!(watch.observe(wall, mono, Some(RUNNING), false), vec![]);
        }
        assert_eq!(watch.idle_for(at(14).1), Some(9 * MIN));
        let (wall, mono) = at(15);
        assert_eq!(
            watch.observe(wall, mono, Some(RUNNING), false),
            vec![WatchAction::StopIdle { idle: 10 * MIN }]
        );
        // Asked once: the next polls wait for the stop to take effect.
        let (wall, mono) = at(16);
        assert_eq!(watch.observe(wall, mono, Some(RUNNING), false), vec![]);
        // A failed stop is asked again.
        watch.stop_failed();
        let (wall, mono) = at(17);
        assert_eq!(
            watch.observe(wall, mono, Some(RUNNING), false),
            vec![WatchAction::StopIdle { idle: 12 * MIN }]
        );
    }

    #[test]
    fn a_feed_that_returns_resets_the_idle_time() {
        let mut watch = Watch::new(Some(10), None);
        for minute in 0..9 {
            let (wall, mono) = at(minute);
            watch.observe(wall, mono, Some(RUNNING), false);
        }
        let (wall, mono) = at(9);
        watch.observe(wall, mono, Some(RUNNING), true);
        assert_eq!(watch.idle_for(mono), None);
        for minute in 10..19 {
            let (wall, mono) = at(minute);
            assert_eq!(watch.observe(wall, mono, Some(RUNNING), false), vec![]);
        }
    }

    #[test]
    fn without_a_limit_an_idle_channel_is_only_reported() {
        let mut watch = Watch::new(None, None);
        for minute in 0..2000 {
            let (wall, mono) = at(minute);
            let actions = watch.observe(wall, mono, Some(RUNNING), false);
            assert!(
                actions
                    .iter()
                    .all(|a| !matches!(a, WatchAction::StopIdle { .. }))
            );
        }
        assert_eq!(watch.idle_for(at(1999).1), Some(1999 * MIN));
    }
}
