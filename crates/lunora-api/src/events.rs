//! `/api/v1/events`: Server-Sent Events for the dashboard.
//!
//! Each client gets the whole status at once (`status`), then, as they happen, one event per
//! change an operator acts on — a switch (`switch`), an input's connection or health
//! (`input`), an output's state or error, or a destination added or removed (`output`) —
//! followed by a fresh `status`. Between changes a `status` goes out every second so rates and
//! sparklines move. Changes are found by comparing snapshots a few times a second, so nothing
//! in the media path has to know about web clients.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use lunora_ingest::ConnectionState;
use serde_json::{Value, json};

use crate::Source;
use crate::status::ChannelStatus;

/// How often snapshots are compared: a switch reaches the page within this (plus the network).
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// A full status at least this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// What an event is about, and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) kind: &'static str,
    pub(crate) data: Value,
}

/// The parts of a channel whose change is news.
#[derive(Debug, Clone, PartialEq, Default)]
struct Discrete {
    active_input: Option<String>,
    forced_input: Option<String>,
    /// input id → (connection state, health state, reasons)
    inputs: BTreeMap<String, (ConnectionState, &'static str, Vec<&'static str>)>,
    /// output id → (state, last error)
    outputs: BTreeMap<String, (&'static str, Option<String>)>,
    /// Switches seen so far (the total of the counts: the list itself is capped).
    switches_total: u64,
}

fn discrete(channel: &ChannelStatus) -> Discrete {
    Discrete {
        active_input: channel.active_input.clone(),
        forced_input: channel.forced_input.clone(),
        inputs: channel
            .inputs
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    (i.stats.state, i.health.state, i.health.reasons.clone()),
                )
            })
            .collect(),
        outputs: channel
            .outputs
            .iter()
            .map(|o| {
                (
                    o.id.clone(),
                    (o.stats.state.name(), o.stats.last_error.clone()),
                )
            })
            .collect(),
        switches_total: channel.switch_counts.iter().map(|c| c.count).sum(),
    }
}

/// The news between two snapshots, in the order an operator would tell it.
pub(crate) fn changes(before: &[ChannelStatus], after: &[ChannelStatus]) -> Vec<Change> {
    let mut out = Vec::new();
    for channel in after {
        let old = before
            .iter()
            .find(|c| c.id == channel.id)
            .map(discrete)
            .unwrap_or_default();
        let new = discrete(channel);
        if old == new {
            continue;
        }
        let c = &channel.id;
        let new_switches = new.switches_total.saturating_sub(old.switches_total) as usize;
        for switch in channel.switches.iter().rev().take(new_switches).rev() {
            out.push(Change {
                kind: "switch",
                data: json!({ "channel": c, "switch": switch }),
            });
        }
        if new_switches == 0
            && (old.active_input != new.active_input || old.forced_input != new.forced_input)
        {
            out.push(Change { kind: "switch", data: json!({ "channel": c, "active_input": new.active_input, "forced_input": new.forced_input }) });
        }
        for input in &channel.inputs {
            let now = &new.inputs[&input.id];
            if old.inputs.get(&input.id) != Some(now) {
                out.push(Change {
                    kind: "input",
                    data: json!({ "channel": c, "input": input.id, "state": now.0, "health": input.health }),
                });
            }
        }
        for output in &channel.outputs {
            let now = &new.outputs[&output.id];
            match old.outputs.get(&output.id) {
                Some(was) if was == now => {}
                was => out.push(Change {
                    kind: "output",
                    data: json!({ "channel": c, "output": output.id, "state": now.0, "last_error": now.1, "added": was.is_none() && !old.outputs.is_empty() }),
                }),
            }
        }
        for id in old
            .outputs
            .keys()
            .filter(|id| !new.outputs.contains_key(*id))
        {
            out.push(Change {
                kind: "output",
                data: json!({ "channel": c, "output": id, "removed": true }),
            });
        }
    }
    out
}

struct Feed {
    source: Source,
    last: Option<Vec<ChannelStatus>>,
    queue: std::collections::VecDeque<Event>,
    since_status: Duration,
}

impl Feed {
    async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return event;
            }
            if self.last.is_some() {
                tokio::time::sleep(CHECK_INTERVAL).await;
                self.since_status += CHECK_INTERVAL;
            }
            let now = self.source.channels();
            let news = self.last.as_deref().map(|before| changes(before, &now));
            let send_status = match &news {
                None => true,
                Some(news) => !news.is_empty() || self.since_status >= STATUS_INTERVAL,
            };
            for change in news.into_iter().flatten() {
                self.queue.push_back(
                    Event::default()
                        .event(change.kind)
                        .data(change.data.to_string()),
                );
            }
            if send_status {
                self.since_status = Duration::ZERO;
                let data = serde_json::to_string(&now).unwrap_or_else(|_| "[]".into());
                self.queue
                    .push_back(Event::default().event("status").data(data));
            }
            self.last = Some(now);
        }
    }
}

pub(crate) async fn events(
    State(source): State<Source>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let feed = Feed {
        source,
        last: None,
        queue: Default::default(),
        since_status: Duration::ZERO,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await;
        Some((Ok(event), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{HlsView, SwitchCount, SwitchView};

    fn channel(active: &str, switches: u64) -> ChannelStatus {
        ChannelStatus {
            id: "program".into(),
            mode: "main-backup",
            active_input: Some(active.into()),
            forced_input: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            switches: (0..switches)
                .map(|n| SwitchView {
                    from: Some("main".into()),
                    to: active.into(),
                    reason: "input_lost",
                    at: format!("t{n}"),
                    decision_to_cut_ms: 0,
                    gap_ms: 0,
                    detection_ms: None,
                    content_step_frames: None,
                    seam_error_frames: None,
                    incompatible: Vec::new(),
                })
                .collect(),
            switch_counts: vec![SwitchCount {
                from_role: "main",
                to_role: "backup",
                reason: "input_lost",
                count: switches,
            }],
            incompatible_switches_total: 0,
            timeline_dropped_frames_total: 0,
            hls: HlsView::new("program", Default::default()),
        }
    }

    #[test]
    fn a_switch_is_news_and_a_byte_counter_is_not() {
        let before = vec![channel("main", 0)];
        assert!(changes(&before, &before).is_empty());
        let after = vec![channel("backup", 1)];
        let news = changes(&before, &after);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].kind, "switch");
        assert_eq!(news[0].data["switch"]["to"], "backup");
        // Two more switches between two looks: both are told, oldest first.
        let news = changes(&after, &[channel("backup", 3)]);
        assert_eq!(
            news.iter()
                .map(|c| c.data["switch"]["at"].as_str().unwrap_or(""))
                .collect::<Vec<_>>(),
            ["t1", "t2"]
        );
    }
}
