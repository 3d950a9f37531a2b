//! The runtime overlay (what the API changed on top of the config file), the operator's
//! start/stop choices, and the audit log. Overlay values are opaque JSON: the daemon owns
//! their shape, the store only keeps them safe and in order.

use std::time::SystemTime;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Fail, Store, StoreError, millis, rfc3339};

/// What an overlay entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Channel,
    Input,
    Output,
}

impl ComponentKind {
    /// The name stored in the database and used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::Channel => "channel",
            ComponentKind::Input => "input",
            ComponentKind::Output => "output",
        }
    }

    fn from_name(name: &str) -> Option<ComponentKind> {
        [
            ComponentKind::Channel,
            ComponentKind::Input,
            ComponentKind::Output,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// One component's saved settings: `value` replaces the config file's (or adds a component),
/// `None` removes the component the config file has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayEntry {
    pub channel: String,
    pub kind: ComponentKind,
    /// The input's or output's id; for [`ComponentKind::Channel`] the channel id again (the
    /// database refuses anything else, so one channel has one entry).
    pub id: String,
    pub value: Option<Value>,
}

/// An audit row to write: who did what to which thing, from where.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: SystemTime,
    /// `None` for changes nobody logged in made (the daemon itself, a CLI command).
    pub username: Option<String>,
    pub address: Option<String>,
    pub action: String,
    pub target: String,
    pub details: Value,
}

/// An audit row as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339 UTC.
    pub at: String,
    pub username: Option<String>,
    pub address: Option<String>,
    pub action: String,
    pub target: String,
    pub details: Value,
}

impl Store {
    /// Every overlay entry, in the order each component was first written (an update keeps its
    /// place), which is the order the graph lists components in.
    pub fn overlay(&self) -> Result<Vec<OverlayEntry>, StoreError> {
        self.read(|connection| {
            let mut statement =
                connection.prepare("SELECT channel, kind, id, value FROM overlay ORDER BY seq")?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            })?;
            let mut entries = Vec::new();
            for row in rows {
                let (channel, kind, id, value) = row?;
                let damaged = |what: &str| Fail::Corrupt(format!("overlay {channel}/{id}: {what}"));
                let kind = ComponentKind::from_name(&kind)
                    .ok_or_else(|| damaged(&format!("unknown kind {kind:?}")))?;
                let value = value
                    .map(|text| serde_json::from_str(&text))
                    .transpose()
                    .map_err(|e| damaged(&format!("its value is not JSON: {e}")))?;
                entries.push(OverlayEntry {
                    channel,
                    kind,
                    id,
                    value,
                });
            }
            Ok(entries)
        })
    }

    /// Saves overlay changes, run choices (`None` forgets the choice, so `autostart` decides
    /// again) and the audit row that explains them in ONE transaction: either all of it is on
    /// disk when this returns `Ok`, or none of it is, so the graph, the run state and the audit
    /// log never disagree after a crash or a refused change.
    pub fn apply(
        &self,
        changes: &[OverlayEntry],
        running: &[(String, String, Option<bool>)],
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        self.write(|transaction| {
            for change in changes {
                insert_overlay(
                    transaction,
                    &change.channel,
                    change.kind,
                    &change.id,
                    change.value.as_ref(),
                )?;
            }
            for (channel, output, started) in running {
                set_running(transaction, channel, output, *started)?;
            }
            if let Some(entry) = audit {
                insert_audit(transaction, entry)?;
            }
            Ok(())
        })
    }

    /// The operator's choices: `(channel, output, started)`, `started` false for stopped.
    pub fn running(&self) -> Result<Vec<(String, String, bool)>, StoreError> {
        self.read(|connection| {
            let mut statement = connection
                .prepare("SELECT channel, output, started FROM running ORDER BY channel, output")?;
            let rows =
                statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Writes one audit row on its own (for actions that change nothing else in the store,
    /// such as a login or a manual switch).
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write(|transaction| insert_audit(transaction, entry))
    }

    /// Up to `limit` audit rows, newest first, older than `before_id` when given (the API
    /// pages with the smallest id it has shown).
    pub fn audit_log(
        &self,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|connection| {
            let mut statement = connection.prepare(
                "SELECT id, at, username, address, action, target, details FROM audit
                 WHERE ?1 IS NULL OR id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![before_id, limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                ))
            })?;
            let mut records = Vec::new();
            for row in rows {
                let (id, at, username, address, action, target, details) = row?;
                let details = serde_json::from_str(&details).map_err(|e| {
                    Fail::Corrupt(format!("audit row {id}: its details are not JSON: {e}"))
                })?;
                records.push(AuditRecord {
                    id,
                    at: rfc3339(at),
                    username,
                    address,
                    action,
                    target,
                    details,
                });
            }
            Ok(records)
        })
    }
}

/// Upserts one overlay entry; a component keeps its place in the order when it changes again.
pub(crate) fn insert_overlay(
    connection: &Connection,
    channel: &str,
    kind: ComponentKind,
    id: &str,
    value: Option<&Value>,
) -> Result<(), Fail> {
    connection.execute(
        "INSERT INTO overlay (channel, kind, id, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (channel, kind, id) DO UPDATE SET value = excluded.value",
        params![channel, kind.name(), id, value.map(Value::to_string)],
    )?;
    Ok(())
}

/// Records (or with `None` forgets) an operator's start/stop choice.
pub(crate) fn set_running(
    connection: &Connection,
    channel: &str,
    output: &str,
    started: Option<bool>,
) -> Result<(), Fail> {
    match started {
        Some(started) => connection.execute(
            "INSERT INTO running (channel, output, started) VALUES (?1, ?2, ?3)
             ON CONFLICT (channel, output) DO UPDATE SET started = excluded.started",
            params![channel, output, started],
        )?,
        None => connection.execute(
            "DELETE FROM running WHERE channel = ?1 AND output = ?2",
            params![channel, output],
        )?,
    };
    Ok(())
}

pub(crate) fn insert_audit(connection: &Connection, entry: &AuditEntry) -> Result<(), Fail> {
    connection.execute(
        "INSERT INTO audit (at, username, address, action, target, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            millis(entry.at),
            entry.username,
            entry.address,
            entry.action,
            entry.target,
            entry.details.to_string()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{t0, temp_store};
    use serde_json::json;

    pub(crate) fn output(channel: &str, id: &str, value: Option<Value>) -> OverlayEntry {
        OverlayEntry {
            channel: channel.into(),
            kind: ComponentKind::Output,
            id: id.into(),
            value,
        }
    }

    pub(crate) fn audit_entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: t0(),
            username: Some("ops".into()),
            address: Some("192.0.2.7".into()),
            action: action.into(),
            target: "program/yt".into(),
            details: json!({"why": action}),
        }
    }

    #[test]
    fn the_overlay_keeps_the_order_of_first_writes() {
        let (_dir, store) = temp_store();
        let channel = OverlayEntry {
            channel: "program".into(),
            kind: ComponentKind::Channel,
            id: "program".into(),
            value: Some(json!({"mode": "failover"})),
        };
        store
            .apply(
                &[
                    output("program", "yt", Some(json!({"type": "rtmp", "n": 1}))),
                    channel.clone(),
                    output("program", "fb", Some(json!({"type": "rtmp"}))),
                ],
                &[],
                None,
            )
            .unwrap();
        // Changing "yt" and removing "fb" keeps both in place; "li" comes last.
        store
            .apply(
                &[
                    output("program", "li", Some(json!({}))),
                    output("program", "fb", None),
                    output("program", "yt", Some(json!({"type": "rtmp", "n": 2}))),
                ],
                &[],
                None,
            )
            .unwrap();
        assert_eq!(
            store.overlay().unwrap(),
            [
                output("program", "yt", Some(json!({"type": "rtmp", "n": 2}))),
                channel,
                output("program", "fb", None),
                output("program", "li", Some(json!({}))),
            ]
        );
    }

    #[test]
    fn run_choices_are_set_changed_and_forgotten() {
        let (_dir, store) = temp_store();
        let choice = |channel: &str, output: &str, started| {
            (channel.to_string(), output.to_string(), started)
        };
        store
            .apply(
                &[],
                &[
                    choice("program", "yt", Some(true)),
                    choice("backup", "fb", Some(false)),
                ],
                None,
            )
            .unwrap();
        store
            .apply(
                &[],
                &[
                    choice("program", "yt", Some(false)),
                    choice("program", "li", Some(true)),
                ],
                None,
            )
            .unwrap();
        assert_eq!(
            store.running().unwrap(),
            [
                ("backup".into(), "fb".into(), false),
                ("program".into(), "li".into(), true),
                ("program".into(), "yt".into(), false),
            ]
        );
        store
            .apply(&[], &[choice("program", "yt", None)], None)
            .unwrap();
        assert_eq!(store.running().unwrap().len(), 2);
    }

    #[test]
    fn apply_is_all_or_nothing() {
        let (_dir, store) = temp_store();
        // The last change is refused by the database (a channel entry must carry the channel's
        // own id) after the others were written inside the transaction.
        let refused = OverlayEntry {
            channel: "program".into(),
            kind: ComponentKind::Channel,
            id: "other".into(),
            value: None,
        };
        let error = store
            .apply(
                &[output("program", "yt", Some(json!({}))), refused],
                &[("program".into(), "yt".into(), Some(true))],
                Some(&audit_entry("output.add")),
            )
            .unwrap_err();
        assert!(
            error.to_string().contains("CHECK constraint failed"),
            "{error}"
        );
        assert_eq!(store.overlay().unwrap(), []);
        assert_eq!(store.running().unwrap(), []);
        assert_eq!(store.audit_log(10, None).unwrap(), []);

        store
            .apply(
                &[output("program", "yt", Some(json!({})))],
                &[("program".into(), "yt".into(), Some(true))],
                Some(&audit_entry("output.add")),
            )
            .unwrap();
        assert_eq!(store.overlay().unwrap().len(), 1);
        assert_eq!(store.running().unwrap().len(), 1);
        assert_eq!(store.audit_log(10, None).unwrap().len(), 1);
    }

    #[test]
    fn the_audit_log_pages_newest_first() {
        let (_dir, store) = temp_store();
        for n in 0..5 {
            store.audit(&audit_entry(&format!("action.{n}"))).unwrap();
        }
        let page = store.audit_log(2, None).unwrap();
        let actions = |records: &[AuditRecord]| -> Vec<String> {
            records.iter().map(|r| r.action.clone()).collect()
        };
        assert_eq!(actions(&page), ["action.4", "action.3"]);
        let next = store.audit_log(2, Some(page[1].id)).unwrap();
        assert_eq!(actions(&next), ["action.2", "action.1"]);
        assert_eq!(store.audit_log(0, None).unwrap(), []);

        let json = serde_json::to_value(&page[0]).unwrap();
        assert_eq!(
            json,
            json!({
                "id": page[0].id,
                "at": "2023-11-14T22:13:20.000Z",
                "username": "ops",
                "address": "192.0.2.7",
                "action": "action.4",
                "target": "program/yt",
                "details": {"why": "action.4"},
            })
        );
    }
}
