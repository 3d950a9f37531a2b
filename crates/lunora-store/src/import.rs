//! One-time import of `destinations.json`, the state file of lunora before the database
//! (crates/lunora/src/state.rs): the RTMP destinations the API added, changed or removed per
//! channel, and whether an operator last started or stopped each one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::info;

use crate::overlay::{insert_overlay, set_running};
use crate::{ComponentKind, Fail, Store, millis, rfc3339};

const OLD_FILE: &str = "destinations.json";
const MIGRATED_FILE: &str = "destinations.json.migrated";
const OLD_FORMAT_VERSION: u32 = 1;
/// The `meta` row that says the import happened, so a file that reappears (an older lunora ran
/// again) is reported rather than imported over newer changes.
const IMPORTED_KEY: &str = "destinations_json_imported_at";

/// The old file, as state.rs wrote it. Destinations stay JSON objects: the overlay holds the
/// settings opaquely, and the daemon that reads them back knows their shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OldStateFile {
    version: u32,
    channels: BTreeMap<String, BTreeMap<String, Option<Map<String, Value>>>>,
    #[serde(default)]
    running: BTreeMap<String, BTreeMap<String, bool>>,
}

/// Imports `<dir>/destinations.json` if it is there and was never imported, in one
/// transaction, then renames it to `destinations.json.migrated`. Returns why it was left
/// alone, if it was: a file that cannot be read is reported, never dropped.
pub(crate) fn import_destinations(store: &Store, dir: &Path) -> Option<String> {
    let path = dir.join(OLD_FILE);
    let shown = path.display();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(format!(
                "cannot read {shown}: {e}; its destination changes are not applied until lunora can read it (check its owner and mode) and restarts"
            ));
        }
    };
    let imported_at = store.read(|connection| {
        Ok(connection
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [IMPORTED_KEY],
                |row| row.get::<_, String>(0),
            )
            .optional()?)
    });
    match imported_at {
        Ok(Some(at)) => {
            return Some(format!(
                "{shown} was already imported into {} at {at}, so it is not read again; remove it if it is stale",
                store.path().display()
            ));
        }
        Ok(None) => {}
        Err(e) => return Some(format!("cannot import {shown}: {e}")),
    }
    let old: OldStateFile = match serde_json::from_slice(&bytes) {
        Ok(old) => old,
        Err(e) => {
            return Some(format!(
                "cannot import {shown}: it is not valid ({e}); it is left in place and its destination changes are not applied: fix or remove it, then restart lunora"
            ));
        }
    };
    if old.version != OLD_FORMAT_VERSION {
        return Some(format!(
            "cannot import {shown}: it has format version {}, this lunora imports version {OLD_FORMAT_VERSION}; it is left in place and its destination changes are not applied",
            old.version
        ));
    }
    let destinations: usize = old.channels.values().map(BTreeMap::len).sum();
    let imported = store.write(|transaction| {
        for (channel, changes) in &old.channels {
            for (id, spec) in changes {
                let value = spec.as_ref().map(|spec| {
                    let mut spec = spec.clone();
                    spec.insert("type".into(), Value::from("rtmp"));
                    spec.insert("id".into(), Value::from(id.as_str()));
                    Value::Object(spec)
                });
                insert_overlay(
                    transaction,
                    channel,
                    ComponentKind::Output,
                    id,
                    value.as_ref(),
                )?;
            }
        }
        for (channel, outputs) in &old.running {
            for (output, started) in outputs {
                set_running(transaction, channel, output, Some(*started))?;
            }
        }
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![IMPORTED_KEY, rfc3339(millis(SystemTime::now()))],
        )?;
        Ok::<_, Fail>(())
    });
    if let Err(e) = imported {
        return Some(format!(
            "cannot import {shown}: {e}; it is left in place and will be imported at the next start"
        ));
    }
    info!(from = %shown, into = %store.path().display(), destinations, "imported the saved destination changes");
    let migrated = dir.join(MIGRATED_FILE);
    match std::fs::rename(&path, &migrated) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "imported {shown}, but cannot rename it to {}: {e}; rename or remove it by hand",
            migrated.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OverlayEntry;
    use serde_json::json;

    /// A file as crates/lunora/src/state.rs wrote it: a changed destination with its stream
    /// key, a removed one, and run choices (pretty-printed, as it was).
    const OLD_FILE_TEXT: &str = r#"{
  "version": 1,
  "channels": {
    "program": {
      "old": null,
      "yt": {
        "preset": "youtube",
        "backup_ingest": false,
        "stream_key": "key-1",
        "autostart": false
      }
    },
    "studio": {
      "custom": {
        "preset": "custom",
        "url": "rtmp://example.net/live",
        "backup_ingest": false,
        "stream_key": "key-2",
        "autostart": true,
        "retry_min_ms": 500
      }
    }
  },
  "running": {
    "program": {
      "yt": true
    },
    "studio": {
      "custom": false
    }
  }
}"#;

    fn output(channel: &str, id: &str, value: Option<Value>) -> OverlayEntry {
        OverlayEntry {
            channel: channel.into(),
            kind: ComponentKind::Output,
            id: id.into(),
            value,
        }
    }

    #[test]
    fn the_old_state_file_is_imported_once_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OLD_FILE), OLD_FILE_TEXT).unwrap();
        let opened = Store::open(dir.path()).unwrap();
        assert_eq!(opened.import_problem, None);
        let store = opened.store;
        assert_eq!(
            store.overlay().unwrap(),
            [
                output("program", "old", None),
                output(
                    "program",
                    "yt",
                    Some(json!({
                        "type": "rtmp", "id": "yt", "preset": "youtube",
                        "backup_ingest": false, "stream_key": "key-1", "autostart": false
                    }))
                ),
                output(
                    "studio",
                    "custom",
                    Some(json!({
                        "type": "rtmp", "id": "custom", "preset": "custom",
                        "url": "rtmp://example.net/live", "backup_ingest": false,
                        "stream_key": "key-2", "autostart": true, "retry_min_ms": 500
                    }))
                ),
            ]
        );
        assert_eq!(
            store.running().unwrap(),
            [
                ("program".into(), "yt".into(), true),
                ("studio".into(), "custom".into(), false),
            ]
        );
        assert!(!dir.path().join(OLD_FILE).exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(MIGRATED_FILE)).unwrap(),
            OLD_FILE_TEXT
        );
        drop(store);

        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.import_problem, None);
        assert_eq!(reopened.store.overlay().unwrap().len(), 3);
        drop(reopened);

        // The file reappears (an older lunora ran again): reported, not imported over the
        // changes made since.
        std::fs::write(dir.path().join(OLD_FILE), OLD_FILE_TEXT).unwrap();
        let again = Store::open(dir.path()).unwrap();
        let problem = again.import_problem.unwrap();
        assert!(problem.contains("was already imported"), "{problem}");
        assert!(dir.path().join(OLD_FILE).exists());
    }

    #[test]
    fn a_file_that_cannot_be_imported_stays_and_is_reported() {
        for (text, expected) in [
            ("{\"version\": 1, \"chan", "it is not valid"),
            (
                r#"{"version": 2, "channels": {}}"#,
                "it has format version 2, this lunora imports version 1",
            ),
            (
                r#"{"version": 1, "channels": {"p": {"x": 5}}}"#,
                "it is not valid",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(OLD_FILE), text).unwrap();
            let opened = Store::open(dir.path()).unwrap();
            let problem = opened.import_problem.clone().unwrap();
            assert!(problem.contains(expected), "{problem}");
            assert!(problem.contains("destinations.json"), "{problem}");
            assert_eq!(opened.store.overlay().unwrap(), []);
            assert_eq!(
                std::fs::read_to_string(dir.path().join(OLD_FILE)).unwrap(),
                text
            );

            // Fixed by hand, it is imported at the next start.
            drop(opened);
            std::fs::write(dir.path().join(OLD_FILE), OLD_FILE_TEXT).unwrap();
            let opened = Store::open(dir.path()).unwrap();
            assert_eq!(opened.import_problem, None);
            assert_eq!(opened.store.overlay().unwrap().len(), 3);
        }
    }
}
