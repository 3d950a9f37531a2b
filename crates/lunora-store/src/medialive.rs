//! The MediaLive setup each channel asked for, kept so the box keeps watching (and stopping
//! when idle) what it provisioned after a restart. Values are opaque JSON, like the overlay:
//! the daemon owns their shape.

use std::time::{Duration, SystemTime};

use rusqlite::params;
use serde_json::Value;

use crate::{AuditEntry, Fail, Store, StoreError, millis, overlay::insert_audit};

/// One channel's saved MediaLive setup.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedMediaLive {
    pub channel: String,
    pub setup: Value,
    /// When the box first saw the MediaLive channel running, if it is.
    pub running_since: Option<SystemTime>,
}

fn from_millis(value: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

impl Store {
    /// Every saved setup, by channel id.
    pub fn medialive_setups(&self) -> Result<Vec<SavedMediaLive>, StoreError> {
        self.read(|connection| {
            let mut statement = connection
                .prepare("SELECT channel, setup, running_since FROM medialive ORDER BY channel")?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })?;
            let mut saved = Vec::new();
            for row in rows {
                let (channel, setup, running_since) = row?;
                let setup = serde_json::from_str(&setup).map_err(|e| {
                    Fail::Corrupt(format!("MediaLive setup of {channel}: not JSON: {e}"))
                })?;
                saved.push(SavedMediaLive {
                    channel,
                    setup,
                    running_since: running_since.map(from_millis),
                });
            }
            Ok(saved)
        })
    }

    /// Saves (`Some`) or forgets (`None`) a channel's setup, with the audit row that explains
    /// it, in one transaction. Saving again keeps `running_since`.
    pub fn save_medialive(
        &self,
        channel: &str,
        setup: Option<&Value>,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        self.write(|transaction| {
            match setup {
                Some(setup) => transaction.execute(
                    "INSERT INTO medialive (channel, setup) VALUES (?1, ?2)
                     ON CONFLICT (channel) DO UPDATE SET setup = excluded.setup",
                    params![channel, setup.to_string()],
                )?,
                None => {
                    transaction.execute("DELETE FROM medialive WHERE channel = ?1", [channel])?
                }
            };
            if let Some(entry) = audit {
                insert_audit(transaction, entry)?;
            }
            Ok(())
        })
    }

    /// Records since when the channel's MediaLive channel runs (`None`: it does not); a
    /// channel without a saved setup is left alone.
    pub fn set_medialive_running_since(
        &self,
        channel: &str,
        since: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        self.write(|transaction| {
            transaction.execute(
                "UPDATE medialive SET running_since = ?2 WHERE channel = ?1",
                params![channel, since.map(millis)],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Store;

    #[test]
    fn setups_survive_reopening_and_keep_running_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().store;
        store
            .save_medialive("program", Some(&json!({"mode": "edge"})), None)
            .unwrap();
        let since =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        store
            .set_medialive_running_since("program", Some(since))
            .unwrap();
        store
            .save_medialive("program", Some(&json!({"mode": "cloud"})), None)
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap().store;
        let saved = store.medialive_setups().unwrap();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].setup, json!({"mode": "cloud"}));
        assert_eq!(saved[0].running_since, Some(since));
        store.save_medialive("program", None, None).unwrap();
        assert!(store.medialive_setups().unwrap().is_empty());
    }
}
