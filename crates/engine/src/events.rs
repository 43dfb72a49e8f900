//! The event log behind `docker events`: the last events in memory (as dockerd
//! keeps them), each with a sequence number, and a condition variable that wakes
//! the followers when one is added.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How many events are kept for `--since`.
const KEPT: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`, `daemon`.
    pub kind: String,
    pub action: String,
    pub actor_id: String,
    pub attributes: BTreeMap<String, String>,
    pub time_nano: i128,
}

impl Event {
    pub fn time(&self) -> i64 {
        (self.time_nano / 1_000_000_000) as i64
    }

    /// The Engine API's JSON message (with the old `status`/`id`/`from` fields
    /// that API versions before 1.22 read, still sent by dockerd).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time(),
            "timeNano": self.time_nano as i64,
        });
        if self.kind == "container" || self.kind == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.actor_id);
            if let Some(image) = self.attributes.get("image") {
                v["from"] = json!(image);
            }
        }
        v
    }
}

#[derive(Default)]
struct Log {
    /// The sequence number of `events[0]`.
    first: u64,
    events: VecDeque<Event>,
}

#[derive(Default)]
pub struct Events {
    log: Mutex<Log>,
    added: Condvar,
}

fn now_nano() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl Events {
    pub fn publish(
        &self,
        kind: &str,
        action: &str,
        actor_id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let event = Event {
            kind: kind.to_string(),
            action: action.to_string(),
            actor_id: actor_id.to_string(),
            attributes,
            time_nano: now_nano(),
        };
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.events.push_back(event);
        if log.events.len() > KEPT {
            log.events.pop_front();
            log.first += 1;
        }
        drop(log);
        self.added.notify_all();
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.first + log.events.len() as u64
    }

    /// Events from sequence number `from` on (those still kept), waiting up to
    /// `timeout` for one when there are none; with the next number to ask for.
    pub fn read_from(&self, from: u64, timeout: Duration) -> (Vec<Event>, u64) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.first + (log.events.len() as u64) <= from {
            log = self
                .added
                .wait_timeout(log, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let start = from.max(log.first);
        let skip = (start - log.first) as usize;
        let out: Vec<Event> = log.events.iter().skip(skip).cloned().collect();
        let next = log.first + log.events.len() as u64;
        (out, next)
    }

    /// Every kept event, oldest first.
    pub fn kept(&self) -> (Vec<Event>, u64) {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        (
            log.events.iter().cloned().collect(),
            log.first + log.events.len() as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_and_wakes_followers() {
        let events = std::sync::Arc::new(Events::default());
        for i in 0..(KEPT + 10) {
            events.publish("container", "start", &format!("c{i}"), BTreeMap::new());
        }
        let (kept, next) = events.kept();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].actor_id, "c10");
        assert_eq!(next, (KEPT + 10) as u64);
        let (none, _) = events.read_from(next, Duration::from_millis(10));
        assert!(none.is_empty());
        let e2 = events.clone();
        let t = std::thread::spawn(move || e2.read_from(next, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        events.publish("image", "tag", "sha256:x", BTreeMap::new());
        let (got, after) = t.join().expect("follower");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to_json()["Action"], "tag");
        assert_eq!(after, next + 1);
    }
}
