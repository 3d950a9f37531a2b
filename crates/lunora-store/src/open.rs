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
