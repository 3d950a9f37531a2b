//! Changes made through the API at run time, kept on disk so they survive a restart or a crash.
//!
//! The file holds, per channel, the RTMP destinations the API added, changed or removed, on top
//! of the config file: the config stays the operator's, the state file the users'. Every change
//! is written to a temporary file, synced, and renamed over the old one, so a crash leaves
//! either the old or the new file, never half of one. The file holds stream keys: it is created
//! readable by the daemon's user only.
//!
//! It also keeps whether an operator last started or stopped each destination, so that after a
//! crash or a restart what was live goes live again (and what was stopped stays stopped),
//! whatever `autostart` says.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lunora_egress::DestinationSpec;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

const FILE_NAME: &str = "destinations.json";
const FORMAT_VERSION: u32 = 1;

/// One channel's changes: an id mapped to its destination, or to `None` when removed.
pub(crate) type ChannelChanges = BTreeMap<String, Option<DestinationSpec>>;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    channels: BTreeMap<String, ChannelChanges>,
    /// channel → destination id → started (true) or stopped (false) by an operator.
    #[serde(default)]
    running: BTreeMap<String, BTreeMap<String, bool>>,
}

impl Default for StateFile {
    /// Nothing changed yet, in the format this version writes.
    fn default() -> Self {
        StateFile {
            version: FORMAT_VERSION,
            channels: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct StateStore {
    path: PathBuf,
    state: Mutex<StateFile>,
}

impl StateStore {
    /// Opens (or starts) the state in `dir`. A file that cannot be read is moved aside with a
    /// log line rather than stopping the daemon: the config file's destinations still run.
    pub(crate) fn open(dir: &Path) -> std::io::Result<StateStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(state) if state.version == FORMAT_VERSION => state,
                Ok(state) => {
                    set_aside(
                        &path,
                        &format!(
                            "it has format version {}, this lunora reads {FORMAT_VERSION}",
                            state.version
                        ),
                    );
                    StateFile::default()
                }
                Err(e) => {
                    set_aside(&path, &format!("it is not valid: {e}"));
                    StateFile::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(e),
        };
        Ok(StateStore {
            path,
            state: Mutex::new(state),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn changes(&self, channel: &str) -> ChannelChanges {
        self.lock()
            .channels
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether an operator last left `id` started (`Some(true)`) or stopped.
    pub(crate) fn running(&self, channel: &str, id: &str) -> Option<bool> {
        self.lock()
            .running
            .get(channel)
            .and_then(|c| c.get(id))
            .copied()
    }

    /// Records `id` as `spec` (`None`: removed, with its run state) and writes the file before
    /// returning; on error nothing is recorded, so the caller can refuse the change.
    pub(crate) fn record(
        &self,
        channel: &str,
        id: &str,
        spec: Option<DestinationSpec>,
    ) -> std::io::Result<()> {
        let mut state = self.lock();
        let removed = spec.is_none();
        let previous = state
            .channels
            .entry(channel.to_string())
            .or_default()
            .insert(id.to_string(), spec);
        let previous_running = if removed {
            state.running.get_mut(channel).and_then(|c| c.remove(id))
        } else {
            None
        };
        let result = self.write(&state);
        if result.is_err() {
            let changes = state.channels.entry(channel.to_string()).or_default();
            match previous {
                Some(previous) => changes.insert(id.to_string(), previous),
                None => changes.remove(id),
            };
            if let Some(running) = previous_running {
                state
                    .running
                    .entry(channel.to_string())
                    .or_default()
                    .insert(id.to_string(), running);
            }
        }
        result
    }

    /// Records that an operator started or stopped these destinations.
    pub(crate) fn record_running(
        &self,
        channel: &str,
        ids: &[&str],
        running: bool,
    ) -> std::io::Result<()> {
        let mut state = self.lock();
        let entry = state.running.entry(channel.to_string()).or_default();
        for id in ids {
            entry.insert((*id).to_string(), running);
        }
        self.write(&state)
    }

    fn write(&self, state: &StateFile) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateFile> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension(format!("json.unreadable-{}", std::process::id()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {
            error!(file = %path.display(), moved_to = %aside.display(), "ignoring the saved destination changes: {why}; the config file's destinations run as written")
        }
        Err(e) => {
            warn!(file = %path.display(), error = %e, "ignoring the saved destination changes ({why}) and cannot move the file aside")
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // The rename itself must reach the disk, or a power cut can bring back the old file.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Where state lives when the config does not say: `$LUNORA_STATE_DIR`, systemd's
/// `$STATE_DIRECTORY`, `$XDG_STATE_HOME/lunora`, `~/.local/state/lunora`, else `./lunora-state`.
pub(crate) fn default_dir() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("LUNORA_STATE_DIR")
        .or_else(|| var("STATE_DIRECTORY"))
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("lunora")))
        .or_else(|| var("HOME").map(|d| d.join(".local/state/lunora")))
        .unwrap_or_else(|| PathBuf::from("lunora-state"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lunora_egress::Preset;
    use lunora_media::Secret;

    fn spec(key: &str) -> DestinationSpec {
        DestinationSpec {
            preset: Preset::Youtube,
            stream_key: Some(Secret::new(key)),
            ..Default::default()
        }
    }

    #[test]
    fn changes_survive_a_reopen_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.record("program", "yt", Some(spec("key-1"))).unwrap();
        store.record("program", "old", None).unwrap();
        let reopened = StateStore::open(dir.path()).unwrap();
        let changes = reopened.changes("program");
        assert_eq!(changes.get("yt"), Some(&Some(spec("key-1"))));
        assert_eq!(changes.get("old"), Some(&None));
        store.record_running("program", &["yt"], true).unwrap();
        assert_eq!(
            StateStore::open(dir.path())
                .unwrap()
                .running("program", "yt"),
            Some(true)
        );
        store.record("program", "yt", None).unwrap();
        assert_eq!(
            StateStore::open(dir.path())
                .unwrap()
                .running("program", "yt"),
            None,
            "removal forgets the run state"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn a_damaged_file_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"version\": 1, \"chan").unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.changes("program").is_empty());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.contains("unreadable")), "{names:?}");
    }

    #[test]
    fn a_failed_write_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        // A directory where the temporary file goes makes the write fail.
        std::fs::create_dir(dir.path().join("destinations.json.tmp")).unwrap();
        assert!(store.record("program", "yt", Some(spec("k"))).is_err());
        assert!(store.changes("program").is_empty());
    }
}
