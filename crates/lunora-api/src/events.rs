//! `/api/v1/events`: Server-Sent Events for the dashboard.
//!
//! Each client gets the whole status at once (`status`), then every graph event as it happens
//! — a switch (`switch`), an input's connection or health (`input`), an output's state or
//! error (`output`), a channel, input or output added, changed or removed (`config`), every
//! input lost (`all_lost`) — each followed by a fresh `status`. Between events a `status` goes
//! out every second so rates and sparklines move. A client too slow to keep up skips what it
//! missed and gets a fresh status: the daemon never waits for a browser.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use lunora_control::{ChannelEvent, UserRole};
use tokio::sync::broadcast::{Receiver, error::RecvError};

use crate::App;
use crate::auth::Caller;
use crate::handlers::as_seen_by;

/// A full status at least this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

struct Feed {
    app: Arc<App>,
    caller: Caller,
    events: Receiver<ChannelEvent>,
    queue: std::collections::VecDeque<Event>,
    started: bool,
}

impl Feed {
    fn status(&self) -> Event {
        let channels: Vec<_> = self
            .app
            .control
            .channels()
            .into_iter()
            .map(|c| as_seen_by(&self.caller, c))
            .collect();
        let data = serde_json::to_string(&channels).unwrap_or_else(|_| "[]".into());
        Event::default().event("status").data(data)
    }

    /// Events about outputs the caller does not see (the MediaLive feed, for a `user`) are
    /// left out like the outputs themselves.
    fn shows(&self, event: &ChannelEvent) -> bool {
        let output = match event {
            ChannelEvent::Output { output, .. } => output,
            ChannelEvent::Config {
                component: "output",
                id,
                ..
            } => id,
            _ => return true,
        };
        self.caller.actor.role >= UserRole::Admin || !lunora_control::is_medialive_feed(output)
    }

    async fn next(&mut self) -> Event {
        if let Some(event) = self.queue.pop_front() {
            return event;
        }
        if !self.started {
            self.started = true;
            return self.status();
        }
        match tokio::time::timeout(STATUS_INTERVAL, self.events.recv()).await {
            Ok(Ok(event)) => {
                // Everything already waiting goes out before the one status that includes it.
                let mut news = vec![event];
                while let Ok(more) = self.events.try_recv() {
                    news.push(more);
                }
                news.retain(|e| self.shows(e));
                for event in news {
                    let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                    self.queue
                        .push_back(Event::default().event(event.kind()).data(data));
                }
                self.queue.push_back(self.status());
                self.queue.pop_front().unwrap_or_else(|| self.status())
            }
            Ok(Err(RecvError::Lagged(_))) | Err(_) => self.status(),
            Ok(Err(RecvError::Closed)) => {
                // The daemon is stopping; the stream ends with the server.
                std::future::pending::<()>().await;
                self.status()
            }
        }
    }
}

pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let feed = Feed {
        events: app.control.graph().subscribe(),
        app,
        caller,
        queue: Default::default(),
        started: false,
    };
    let stopping = Box::pin(feed.app.control.graph().stopping());
    let stream = futures::stream::unfold((feed, stopping), |(mut feed, mut stopping)| async move {
        tokio::select! {
            event = feed.next() => Some((Ok(event), (feed, stopping))),
            // The stream ends with the daemon: shutdown never waits for a browser.
            () = &mut stopping => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
