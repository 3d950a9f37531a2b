//! Lunora Edge's on-disk state in one SQLite file, `<state dir>/lunora.db`: users (argon2id
//! hashes), login sessions and API tokens (only SHA-256 digests of their secrets), the runtime
//! overlay of channels, inputs and outputs that the API changed on top of the config file, the
//! operator's start/stop choices per destination, the MediaLive setup per channel, and the
//! audit log.
//!
//! Why SQLite: several writers (the daemon and the `lunora user`/`lunora token` commands run
//! while the daemon does) and changes that must land together (an overlay change, its run
//! choice and its audit row) need transactions, and a crash or a power cut at any moment must
//! leave the last committed change. WAL with `synchronous=FULL` gives exactly that, and
//! `busy_timeout` lets the processes take turns.
//!
//! The API is blocking: every call is a short SQLite transaction, and password hashing takes
//! tens of milliseconds on purpose. Async callers wrap calls in `spawn_blocking`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod auth;
mod error;
mod import;
mod medialive;
mod open;
mod overlay;
mod role;
mod users;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use auth::TokenInfo;
pub use error::StoreError;
pub use medialive::SavedMediaLive;
pub use overlay::{AuditEntry, AuditRecord, ComponentKind, OverlayEntry};
pub use role::{UnknownRole, UserRole};
pub use users::UserInfo;

/// How user names are explained to a user.
pub const USER_NAME_RULE: &str =
    "user names are 1–64 characters of lowercase letters, digits, '.', '_' and '-'";
/// How token names are explained to a user.
pub const TOKEN_NAME_RULE: &str =
    "token names are 1–64 characters without control characters, and not only spaces";
/// How the password rule is explained to a user.
pub const PASSWORD_RULE: &str = "passwords need at least 8 characters";
/// What a token secret starts with, so that a leaked one is recognisable (secret scanners,
/// logs) and a session cookie is never mistaken for one.
pub const TOKEN_PREFIX: &str = "lun_";

/// The open state database. One connection behind a mutex: SQLite serialises writers anyway,
/// and each call holds the lock only for its own short transaction (never while hashing a
/// password).
pub struct Store {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    /// The path only: the connection's contents (hashes, stream keys in the overlay) stay out
    /// of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What [`Store::open`] found besides the store itself. Both fields are for the operator: the
/// caller logs them and shows them in the system status, so that nothing is lost silently.
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    /// Set when the database could not be read and a fresh one was started.
    pub recovered: Option<Recovered>,
    /// Set when `destinations.json` (the previous format) exists but was not imported.
    pub import_problem: Option<String>,
}

/// Where an unreadable database went, and why it was unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub moved_to: PathBuf,
    pub reason: String,
}

impl Store {
    /// Opens (or creates) `<dir>/lunora.db` and migrates it to this version's schema.
    ///
    /// The directory is created (mode 0700) if needed. The database and its WAL and SHM files
    /// are readable by lunora's user only (0600, whatever the umask): they hold password
    /// hashes and stream keys. Every commit is synced (WAL, `synchronous=FULL`), so a crash or
    /// power cut keeps the last committed change.
    ///
    /// A database that cannot be read (not a database, damaged, or written by a newer lunora)
    /// is renamed to `lunora.db.unreadable-<unix seconds>` with its WAL and SHM, a fresh one is
    /// started, and [`Opened::recovered`] says where the old one went and why: the daemon keeps
    /// running on its config file instead of refusing to start. Errors of the environment
    /// (permissions, a full disk) are returned instead, since moving the file would not help.
    ///
    /// `<dir>/destinations.json` (the state file of earlier versions) is imported once into the
    /// overlay and the run choices, in one transaction, and renamed to
    /// `destinations.json.migrated`; one that cannot be imported stays in place and
    /// [`Opened::import_problem`] says why.
    pub fn open(dir: &Path) -> Result<Opened, StoreError> {
        open::open(dir)
    }

    /// The database file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held rolled its transaction back when the transaction was
        // dropped; the connection itself is still good.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the connection (reads, or writes that are one statement).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Fail>) -> Result<T, StoreError> {
        f(&self.lock()).map_err(|fail| fail.at(&self.path))
    }

    /// Runs `f` in one transaction that commits only if `f` succeeds. `IMMEDIATE` takes the
    /// write lock up front: a deferred transaction that reads and then writes can fail at once
    /// with `SQLITE_BUSY` when another process wrote in between, whatever `busy_timeout` says.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        let mut connection = self.lock();
        let result = (|| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&transaction)?;
            transaction.commit()?;
            Ok(value)
        })();
        result.map_err(|fail: Fail| fail.at(&self.path))
    }
}

/// An error inside the store before it knows which file to name.
#[derive(Debug)]
enum Fail {
    Sql(rusqlite::Error),
    Corrupt(String),
    Store(StoreError),
}

impl Fail {
    fn at(self, path: &Path) -> StoreError {
        match self {
            Fail::Sql(source) => StoreError::Database {
                path: path.to_path_buf(),
                source,
            },
            Fail::Corrupt(what) => StoreError::Corrupt {
                path: path.to_path_buf(),
                what,
            },
            Fail::Store(error) => error,
        }
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(error: rusqlite::Error) -> Self {
        Fail::Sql(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Fail::Store(error)
    }
}

/// Times are stored as milliseconds since the Unix epoch: integers compare and index cheaply,
/// and the API formats them as RFC 3339 on the way out. A clock before 1970 counts as 1970.
fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Milliseconds since the epoch as RFC 3339 UTC.
fn rfc3339(millis: i64) -> String {
    let since_epoch = Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    lunora_media::rfc3339(SystemTime::UNIX_EPOCH + since_epoch)
}

/// Milliseconds as a duration for comparisons against idle and absolute limits; negative
/// (a clock that went backwards) counts as no time.
fn elapsed(from: i64, to: i64) -> Duration {
    Duration::from_millis(u64::try_from(to.saturating_sub(from)).unwrap_or(0))
}

#[cfg(test)]
mod test_support {
    use super::*;

    /// A fresh store in its own temporary directory (kept alive by the returned guard).
    pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let opened = Store::open(dir.path()).unwrap();
        assert!(opened.recovered.is_none() && opened.import_problem.is_none());
        (dir, opened.store)
    }

    /// A fixed "now" for tests of expiry (2023-11-14T22:13:20Z).
    pub(crate) fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }
}
