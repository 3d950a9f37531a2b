//! What can go wrong, phrased for the operator who reads it: each message names the file or the
//! thing, and says what to do.

use std::path::PathBuf;

use crate::{PASSWORD_RULE, TOKEN_NAME_RULE, USER_NAME_RULE, UserRole};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory or one of the store's files cannot be created, read or secured.
    #[error(
        "cannot use {path}: {source}; check that the state directory exists and that the user lunora runs as owns it"
    )]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused an operation on a database that opened fine (disk full, I/O error, a lock
    /// held too long by another process, a constraint).
    #[error(
        "the state database {path} failed: {source}; check free disk space and the file's permissions, and that no other program holds it locked"
    )]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A database that could not be read was set aside, and the fresh one cannot be read either.
    #[error(
        "cannot start a fresh state database at {path}: {reason}; check the state directory and its file system"
    )]
    Unusable { path: PathBuf, reason: String },
    /// A row holds something this version cannot have written (edited by hand, or a bug).
    #[error(
        "the state database {path} holds a damaged entry ({what}); remove that entry with the API or the `lunora` command, or restore a backup"
    )]
    Corrupt { path: PathBuf, what: String },
    #[error("{name:?} is not a valid user name: {USER_NAME_RULE}")]
    BadUserName { name: String },
    #[error("{name:?} is not a valid token name: {TOKEN_NAME_RULE}")]
    BadTokenName { name: String },
    #[error("the password is too weak: {PASSWORD_RULE}")]
    Weak,
    #[error("the user {name} already exists; choose another name, or change that user instead")]
    Exists { name: String },
    #[error("there is no user named {name}; list the users with `lunora user list`")]
    NoSuchUser { name: String },
    #[error("there is no API token with id {id}; list the tokens with `lunora token list`")]
    NoSuchToken { id: String },
    #[error(
        "{name} is the last superadmin; make another user superadmin first, or nobody could manage users any more"
    )]
    LastSuperadmin { name: String },
    #[error(
        "a token of {owner} cannot have the role {requested}: {owner} is {owner_role}; choose a role up to {owner_role}"
    )]
    RoleTooHigh {
        owner: String,
        owner_role: UserRole,
        requested: UserRole,
    },
    #[error("cannot hash the password: {0}; this is a bug in lunora, please report it")]
    Hash(String),
    #[error(
        "the system's random number generator failed: {0}; lunora cannot salt passwords or make secrets without it"
    )]
    Random(getrandom::Error),
}
