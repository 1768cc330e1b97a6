//! The event bus behind `GET /events`: services publish what happened to
//! volumes, containers and images; subscribers get recent history (for
//! `since`) and then live events.

use std::collections::{BTreeMap, VecDeque};

use tokio::sync::broadcast;

/// How many past events are kept for `since`.
const HISTORY: usize = 1024;

/// One event, in the terms of Docker's `events.Message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `volume`, `container`, `image` or `network`.
    pub kind: &'static str,
    /// `create`, `destroy`, `mount`, `die`, …
    pub action: String,
    /// The object's ID (a volume's name).
    pub actor: String,
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch.
    pub time_nanos: i128,
}

impl Event {
    /// A new event stamped now.
    pub fn now(kind: &'static str, action: &str, actor: &str, attributes: &[(&str, &str)]) -> Self {
        let now = chrono::Utc::now();
        Event {
            kind,
            action: action.to_string(),
            actor: actor.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time_nanos: now.timestamp() as i128 * 1_000_000_000
                + now.timestamp_subsec_nanos() as i128,
        }
    }
}

/// Fan-out of events with a bounded history.
#[derive(Debug)]
pub struct EventBus {
    live: broadcast::Sender<Event>,
    history: parking_lot::Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            live: broadcast::channel(HISTORY).0,
            history: parking_lot::Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl EventBus {
    /// A bus with room for one live event: the placeholder a service holds
    /// until it is given the daemon's shared bus (`with_events`), so that
    /// placeholder does not cost the shared bus's memory (its live buffer
    /// is 1,024 events, written in full when made).
    pub fn placeholder() -> Self {
        EventBus {
            live: broadcast::channel(1).0,
            history: parking_lot::Mutex::new(VecDeque::new()),
        }
    }

    /// Records and broadcasts an event (never blocks; no subscriber is fine).
    pub fn publish(&self, event: Event) {
        let mut history = self.history.lock();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        let _ = self.live.send(event);
    }

    /// The kept history and a receiver for what comes after it (taken under
    /// one lock, so no event falls between the two).
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = self.history.lock();
        (history.iter().cloned().collect(), self.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_then_live() {
        let bus = EventBus::default();
        bus.publish(Event::now("volume", "create", "v1", &[("driver", "local")]));
        let (past, mut rx) = bus.subscribe();
        assert_eq!(past.len(), 1);
        bus.publish(Event::now("volume", "destroy", "v1", &[]));
        assert_eq!(rx.try_recv().unwrap().action, "destroy");
    }
}
