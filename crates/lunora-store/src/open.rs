//! Opening the database: private files, durable settings, schema migrations, and what happens
//! to a file that cannot be read.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use tracing::{error, warn};

use crate::{Opened, Recovered, Store, StoreError};

pub(crate) const DB_FILE: &str = "lunora.db";

/// How long a call waits for another process (the daemon, or a `lunora user` command) to
/// finish its transaction before giving up. Transactions here are milliseconds long; five
/// seconds only runs out when something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one step per version: step `i` takes `user_version` from `i` to `i + 1`.
/// Never edit a step that has shipped (databases out there already ran it): append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: everything issue #9 needs.
    "CREATE TABLE users (
        name TEXT PRIMARY KEY NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'admin', 'superadmin')),
        password_hash TEXT NOT NULL,
        must_change_password INTEGER NOT NULL CHECK (must_change_password IN (0, 1)),
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE sessions (
        digest BLOB PRIMARY KEY NOT NULL,
        username TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX sessions_by_user ON sessions (username);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY NOT NULL,
        digest BLOB NOT NULL UNIQUE,
        name TEXT NOT NULL,
        owner TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'admin', 'superadmin')),
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    ) STRICT;
    CREATE INDEX tokens_by_owner ON tokens (owner);
    -- seq keeps the order of each component's first write: the graph lists components in it.
    CREATE TABLE overlay (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('channel', 'input', 'output')),
        id TEXT NOT NULL,
        value TEXT,
        UNIQUE (channel, kind, id),
        CHECK (channel <> '' AND id <> '' AND (kind <> 'channel' OR id = channel))
    ) STRICT;
    CREATE TABLE running (
        channel TEXT NOT NULL,
        output TEXT NOT NULL,
        started INTEGER NOT NULL CHECK (started IN (0, 1)),
        PRIMARY KEY (channel, output)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        username TEXT,
        address TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL
    ) STRICT;
    CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 2: the MediaLive setup asked for per channel, and since when its MediaLive channel runs
    // (MediaLive does not say; a restart of the box must not reset the figure).
    "CREATE TABLE medialive (
        channel TEXT PRIMARY KEY NOT NULL CHECK (channel <> ''),
        setup TEXT NOT NULL,
        running_since INTEGER
    ) STRICT;",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Why a database could not be opened.
enum Problem {
    /// The file is not a database we can use (garbage, corrupt, a newer schema): set it aside.
    Unreadable(String),
    /// The environment is at fault (permissions, disk, locks): moving the file would not help
    /// and could hide the user's data, so the caller gets an error.
    Fatal(StoreError),
}

pub(crate) fn open(dir: &Path) -> Result<Opened, StoreError> {
    create_private_dir(dir)?;
    let path = dir.join(DB_FILE);
    let (connection, recovered) = match connect(&path) {
        Ok(connection) => (connection, None),
        Err(Problem::Fatal(error)) => return Err(error),
        Err(Problem::Unreadable(reason)) => {
            let moved_to = set_aside(&path)?;
            error!(
                file = %path.display(),
                moved_to = %moved_to.display(),
                "the state database cannot be read ({reason}); it was moved aside and a fresh one started: users, tokens and API changes must be restored from it or made again"
            );
            let connection = connect(&path).map_err(|problem| match problem {
                Problem::Fatal(error) => error,
                Problem::Unreadable(reason) => StoreError::Unusable {
                    path: path.clone(),
                    reason,
                },
            })?;
            (connection, Some(Recovered { moved_to, reason }))
        }
    };
    let store = Store {
        path,
        connection: Mutex::new(connection),
    };
    let import_problem = crate::import::import_destinations(&store, dir);
    Ok(Opened {
        store,
        recovered,
        import_problem,
    })
}

/// The state directory holds password hashes and stream keys: when lunora creates it, only its
/// user may enter. An existing directory keeps its mode (systemd's `StateDirectory=` or the
/// operator chose it).
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::File {
            path: dir.to_path_buf(),
            source,
        })
}

/// The database's companion files, which hold recent changes (the WAL) and the lock table.
fn companions(path: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Makes the database file exist with mode 0600 before SQLite opens it (SQLite would create it
/// with 0644 less the umask), and takes 0600 back for existing files, whoever left them wider.
/// SQLite creates the WAL and SHM files with the database file's mode, whatever the umask, and
/// this chmods any that are already there.
fn secure_files(path: &Path) -> Result<(), StoreError> {
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::File { path, source }
    };
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(file_error(path))?;
    for file in std::iter::once(path.to_path_buf()).chain(companions(path)) {
        match std::fs::set_permissions(&file, Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(&file)(e)),
        }
    }
    Ok(())
}

/// Opens `path`, checks it, and migrates it to [`SCHEMA_VERSION`].
fn connect(path: &Path) -> Result<Connection, Problem> {
    secure_files(path).map_err(Problem::Fatal)?;
    let sql = |stage: &'static str| move |error: rusqlite::Error| classify(path, stage, error);
    let mut connection = Connection::open(path).map_err(sql("open"))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sql("configure"))?;
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql("switch to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still durable with synchronous=FULL, only readers and writers block each other.
        warn!(file = %path.display(), journal_mode = %mode, "the state database cannot use WAL on this file system");
    }
    // FULL syncs the WAL on every commit: a committed change survives a power cut, not only a
    // crash of the process (NORMAL would only promise the latter).
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(sql("configure"))?;
    connection
        .pragma_update(None, "foreign_keys", "ON")
        .map_err(sql("configure"))?;
    secure_files(path).map_err(Problem::Fatal)?;

    let check: String = connection
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(sql("check"))?;
    if check != "ok" {
        return Err(Problem::Unreadable(format!("it is damaged: {check}")));
    }
    migrate(&mut connection, path)?;
    Ok(connection)
}

/// Applies the missing migration steps, each in its own transaction together with the new
/// `user_version`, so a crash between steps leaves a database at a version it really has.
fn migrate(connection: &mut Connection, path: &Path) -> Result<(), Problem> {
    let sql = |error| classify(path, "migrate", error);
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sql)?;
    let Ok(version) = usize::try_from(version) else {
        return Err(Problem::Unreadable(format!(
            "it has the invalid schema version {version}"
        )));
    };
    if version > SCHEMA_VERSION {
        return Err(Problem::Unreadable(format!(
            "it was written by a newer lunora (schema version {version}; this one knows up to {SCHEMA_VERSION})"
        )));
    }
    for (done, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        transaction.execute_batch(step).map_err(sql)?;
        // Bounded by MIGRATIONS.len(), a handful.
        let next = i64::try_from(done + 1).unwrap_or(i64::MAX);
        transaction
            .pragma_update(None, "user_version", next)
            .map_err(sql)?;
        transaction.commit().map_err(sql)?;
    }
    Ok(())
}

/// Tells a file that is not (or no longer) a usable database from an environment that keeps
/// us from using a good one.
fn classify(path: &Path, stage: &str, error: rusqlite::Error) -> Problem {
    let environment = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::PermissionDenied
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::OutOfMemory
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::NoLargeFileSupport
                | ErrorCode::OperationInterrupted
        )
    );
    if environment {
        Problem::Fatal(StoreError::Database {
            path: path.to_path_buf(),
            source: error,
        })
    } else {
        Problem::Unreadable(format!("{stage} failed: {error}"))
    }
}

/// Renames the database and its companions to `lunora.db.unreadable-<unix seconds>` (a suffix
/// counts up when that name is taken). The WAL goes first: a WAL left behind would be replayed
/// into the fresh database, which SQLite cannot tell from the old one.
fn set_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let seconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".unreadable-{seconds}"));
        PathBuf::from(name)
    };
    let mut target = base.clone();
    let mut n = 0u32;
    while target.exists() {
        n += 1;
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{n}"));
        target = PathBuf::from(name);
    }
    let moves = companions(path)
        .into_iter()
        .zip(companions(&target))
        .chain(std::iter::once((path.to_path_buf(), target.clone())));
    for (from, to) in moves {
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::File { path: from, source }),
        }
    }
    if let Some(dir) = path.parent() {
        // The renames must reach the disk before the fresh database is written.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::File {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::tests::{audit_entry, output};
    use crate::{ComponentKind, OverlayEntry, UserRole};
    use serde_json::json;
    use std::io::BufRead;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_directory_gets_a_migrated_private_database() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state/lunora");
        let opened = Store::open(&dir).unwrap();
        assert!(opened.recovered.is_none());
        assert!(opened.import_problem.is_none());
        let store = opened.store;
        assert_eq!(store.path(), dir.join("lunora.db"));
        assert_eq!(store.user_count().unwrap(), 0);
        assert_eq!(store.overlay().unwrap(), []);
        // Written, so that the WAL and SHM files exist while the store is open.
        store
            .add_user("root", UserRole::Superadmin, "long enough", false)
            .unwrap();
        assert_eq!(mode(&dir), 0o700);
        for file in std::iter::once(store.path().to_path_buf()).chain(companions(store.path())) {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        let journal: String = Connection::open(store.path())
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(
            user_version(store.path()),
            i64::try_from(SCHEMA_VERSION).unwrap()
        );
        assert!(format!("{store:?}").starts_with("Store { path: "));
    }

    #[test]
    fn reopening_keeps_everything_and_narrows_a_wider_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().store;
        store
            .add_user("root", UserRole::Superadmin, "long enough", false)
            .unwrap();
        let (token, secret) = store
            .create_token("root", "ci", None, SystemTime::now())
            .unwrap();
        store
            .apply(
                &[output("program", "yt", Some(json!({"stream_key": "k"})))],
                &[("program".into(), "yt".into(), Some(true))],
                Some(&audit_entry("output.add")),
            )
            .unwrap();
        let path = store.path().to_path_buf();
        drop(store);
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();

        let opened = Store::open(dir.path()).unwrap();
        assert!(opened.recovered.is_none());
        let store = opened.store;
        assert_eq!(mode(&path), 0o600);
        assert!(
            store
                .verify_password("root", "long enough")
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store
                .token_user(secret.expose(), SystemTime::now())
                .unwrap()
                .unwrap()
                .1
                .id,
            token.id
        );
        assert_eq!(store.overlay().unwrap()[0].kind, ComponentKind::Output);
        assert_eq!(
            store.running().unwrap(),
            [("program".into(), "yt".into(), true)]
        );
        assert_eq!(store.audit_log(10, None).unwrap().len(), 1);
    }

    #[test]
    fn an_unreadable_database_is_moved_aside_and_reported() {
        for garbage in [b"not a database".to_vec(), vec![0x5a; 8192]] {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join(DB_FILE);
            std::fs::write(&db, &garbage).unwrap();
            std::fs::write(companions(&db)[0].clone(), b"old wal").unwrap();

            let opened = Store::open(dir.path()).unwrap();
            let recovered = opened.recovered.unwrap();
            assert!(
                recovered.reason.contains("not a database"),
                "{}",
                recovered.reason
            );
            let moved = recovered
                .moved_to
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(moved.starts_with("lunora.db.unreadable-"), "{moved}");
            assert_eq!(std::fs::read(&recovered.moved_to).unwrap(), garbage);
            // SQLite itself discards a WAL that belongs to no readable database; either way the
            // stale one is never paired with the fresh database.
            let wal = std::fs::read(companions(&db)[0].clone()).unwrap_or_default();
            assert_ne!(wal, b"old wal");

            // The fresh database works.
            let store = opened.store;
            store
                .add_user("root", UserRole::Superadmin, "long enough", false)
                .unwrap();
            assert_eq!(store.user_count().unwrap(), 1);
        }
    }

    #[test]
    fn a_damaged_database_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().store;
        store
            .add_user("root", UserRole::Superadmin, "long enough", false)
            .unwrap();
        let path = store.path().to_path_buf();
        drop(store);
        // Keep the header (so SQLite recognises a database) and overwrite every page after the
        // first, where the tables live.
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 4096);
        bytes[4096..].fill(0x5a);
        std::fs::write(&path, &bytes).unwrap();

        let opened = Store::open(dir.path()).unwrap();
        let recovered = opened.recovered.unwrap();
        assert!(
            recovered.reason.contains("malformed") || recovered.reason.contains("damaged"),
            "{}",
            recovered.reason
        );
        assert_eq!(std::fs::read(&recovered.moved_to).unwrap(), bytes);
        assert_eq!(opened.store.user_count().unwrap(), 0);
    }

    #[test]
    fn setting_aside_moves_the_wal_and_shm_with_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        for (file, content) in std::iter::once(db.clone())
            .zip([b"db"])
            .chain(companions(&db).into_iter().zip([b"wa", b"sh"]))
        {
            std::fs::write(file, content).unwrap();
        }
        let moved = set_aside(&db).unwrap();
        let moved_name = moved.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            names(dir.path()),
            [
                moved_name.clone(),
                format!("{moved_name}-shm"),
                format!("{moved_name}-wal")
            ]
        );
        assert_eq!(std::fs::read(companions(&moved)[0].clone()).unwrap(), b"wa");
    }

    #[test]
    fn a_database_from_a_newer_lunora_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().store;
        store
            .add_user("root", UserRole::Superadmin, "long enough", false)
            .unwrap();
        drop(store);
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let opened = Store::open(dir.path()).unwrap();
        let recovered = opened.recovered.unwrap();
        assert!(
            recovered.reason.contains("newer lunora (schema version 99"),
            "{}",
            recovered.reason
        );
        assert_eq!(opened.store.user_count().unwrap(), 0);
        assert_eq!(user_version(&recovered.moved_to), 99);
        // Twice in the same second: the second one gets its own name.
        drop(opened.store);
        std::fs::write(dir.path().join(DB_FILE), b"garbage").unwrap();
        let again = Store::open(dir.path()).unwrap().recovered.unwrap();
        assert_ne!(again.moved_to, recovered.moved_to);
        assert_eq!(
            names(dir.path())
                .iter()
                .filter(|n| n.contains("unreadable"))
                .count(),
            2
        );
    }

    #[test]
    fn an_unusable_directory_is_an_error_not_a_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let error = Store::open(&not_a_dir).unwrap_err();
        assert!(matches!(error, StoreError::File { .. }), "{error}");
        assert!(
            error.to_string().contains(&*not_a_dir.to_string_lossy()),
            "{error}"
        );
        assert_eq!(names(dir.path()), ["file"]);
    }

    #[test]
    fn two_processes_worth_of_stores_write_in_turn() {
        // The daemon and a `lunora user` command each have their own connection to one file.
        fn assert_shareable<T: Send + Sync>() {}
        assert_shareable::<Store>();
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap().store;
        let second = Store::open(dir.path()).unwrap().store;
        std::thread::scope(|scope| {
            for (name, store) in [("a", &first), ("b", &second)] {
                scope.spawn(move || {
                    for n in 0..40 {
                        store
                            .apply(
                                &[output(name, &format!("o{n}"), Some(json!(n)))],
                                &[(name.into(), format!("o{n}"), Some(true))],
                                Some(&audit_entry(name)),
                            )
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(first.overlay().unwrap().len(), 80);
        assert_eq!(second.running().unwrap().len(), 80);
        assert_eq!(second.audit_log(1000, None).unwrap().len(), 80);
    }

    /// Set in the child process of the kill -9 test: the directory to write to.
    const CRASH_DIR: &str = "LUNORA_STORE_TEST_CRASH_DIR";
    /// The first change number the child writes.
    const CRASH_START: &str = "LUNORA_STORE_TEST_CRASH_START";

    fn numbered(n: u64) -> Vec<OverlayEntry> {
        vec![
            output("program", &format!("o{n}"), Some(json!({"n": n}))),
            OverlayEntry {
                channel: "program".into(),
                kind: ComponentKind::Channel,
                id: "program".into(),
                value: Some(json!({"last": n})),
            },
        ]
    }

    /// Not a test on its own: the kill -9 test runs the test binary again with only this test
    /// and [`CRASH_DIR`] set, and this then writes numbered changes until it is killed, saying
    /// on stdout which ones `apply` acknowledged. Without the variable it returns at once.
    #[test]
    fn crash_child_writes_until_killed() {
        let Some(dir) = std::env::var_os(CRASH_DIR) else {
            return;
        };
        let start: u64 = std::env::var(CRASH_START).unwrap().parse().unwrap();
        let store = Store::open(Path::new(&dir)).unwrap().store;
        let mut stdout = std::io::stdout().lock();
        for n in start.. {
            store
                .apply(
                    &numbered(n),
                    &[("program".into(), format!("o{n}"), Some(n % 2 == 0))],
                    Some(&audit_entry(&format!("change.{n}"))),
                )
                .unwrap();
            std::io::Write::write_all(&mut stdout, format!("ACK {n}\n").as_bytes()).unwrap();
            std::io::Write::flush(&mut stdout).unwrap();
        }
    }

    #[test]
    fn kill_9_keeps_every_acknowledged_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut next = 0u64;
        // Kill after a different number of acknowledgements each round, so the signal lands
        // at different points of a write.
        for (round, kill_after) in [25usize, 38, 51, 64].into_iter().enumerate() {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "open::tests::crash_child_writes_until_killed",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_DIR, dir.path())
                .env(CRASH_START, next.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut acknowledged = Vec::new();
            // Lines written before the kill landed are still in the pipe: read to its end.
            for line in stdout.lines() {
                let line = line.unwrap();
                if let Some(n) = line.strip_prefix("ACK ") {
                    acknowledged.push(n.parse::<u64>().unwrap());
                    if acknowledged.len() == kill_after {
                        child.kill().unwrap(); // SIGKILL
                    }
                }
            }
            let status = child.wait().unwrap();
            assert!(!status.success(), "round {round}: the child was killed");
            assert!(
                acknowledged.len() >= kill_after,
                "round {round}: {acknowledged:?}"
            );

            let opened = Store::open(dir.path()).unwrap();
            assert!(
                opened.recovered.is_none(),
                "round {round}: {:?}",
                opened.recovered
            );
            let store = opened.store;
            let overlay = store.overlay().unwrap();
            let running = store.running().unwrap();
            let audit = store.audit_log(usize::MAX, None).unwrap();
            for &n in &acknowledged {
                let id = format!("o{n}");
                assert!(
                    overlay
                        .iter()
                        .any(|e| e.id == id && e.value == Some(json!({"n": n}))),
                    "round {round}: change {n} was acknowledged but is gone"
                );
                assert!(running.contains(&("program".into(), id, n % 2 == 0)));
                assert!(audit.iter().any(|r| r.action == format!("change.{n}")));
            }
            let last = acknowledged.last().copied().unwrap();
            let channel = overlay
                .iter()
                .find(|e| e.kind == ComponentKind::Channel)
                .unwrap();
            let saved_last = channel.value.as_ref().unwrap()["last"].as_u64().unwrap();
            // The change in flight when the kill came may or may not have committed.
            assert!(
                saved_last == last || saved_last == last + 1,
                "round {round}"
            );
            next = saved_last + 1;
        }
    }
}
