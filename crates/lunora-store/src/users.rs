//! Users: names, roles and argon2id password hashes.

use std::sync::OnceLock;
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use tracing::warn;

use crate::{Fail, Store, StoreError, UserRole, millis, rfc3339};

/// A user as the API and the CLI show it; the password hash never leaves the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    #[serde(rename = "username")]
    pub name: String,
    pub role: UserRole,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Set for accounts created with a first password someone else chose: the web UI asks for
    /// a new one before anything else.
    pub must_change_password: bool,
}

/// Columns [`user_from_row`] reads, in its order.
pub(crate) const USER_COLUMNS: &str =
    "users.name, users.role, users.created_at, users.must_change_password";

pub(crate) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, i64, bool)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// Turns the raw columns into a [`UserInfo`]; the role column has a CHECK, so a bad one means
/// someone edited the file.
pub(crate) fn user_info(
    (name, role, created_at, must_change_password): (String, String, i64, bool),
) -> Result<UserInfo, Fail> {
    let role = role
        .parse()
        .map_err(|e| Fail::Corrupt(format!("user {name}: {e}")))?;
    Ok(UserInfo {
        name,
        role,
        created_at: rfc3339(created_at),
        must_change_password,
    })
}

pub(crate) fn load_user(connection: &Connection, name: &str) -> Result<Option<UserInfo>, Fail> {
    connection
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
            [name],
            user_from_row,
        )
        .optional()?
        .map(user_info)
        .transpose()
}

fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn check_user_name(name: &str) -> Result<(), StoreError> {
    if valid_user_name(name) {
        Ok(())
    } else {
        Err(StoreError::BadUserName {
            name: name.to_string(),
        })
    }
}

/// Hashes with argon2id and its default parameters (19 MiB, 2 passes), as a PHC string that
/// carries its own parameters and salt, so that stronger defaults later still verify old hashes.
fn hash_password(password: &str) -> Result<String, StoreError> {
    if password.chars().count() < 8 {
        return Err(StoreError::Weak);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(StoreError::Random)?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

/// A hash nobody's password matches, verified against when the user does not exist so that a
/// wrong name takes as long as a wrong password and login timing does not reveal user names.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            Argon2::default()
                .hash_password_with_salt(b"lunora: no such user", b"lunora-no-user!!")
                .ok()
                .map(|hash| hash.to_string())
        })
        .as_deref()
}

fn password_matches(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Runs a `SELECT count(*)`; SQLite counts in i64, and a count is never negative.
fn count(connection: &Connection, sql: &str) -> Result<u64, Fail> {
    let n: i64 = connection.query_row(sql, [], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn superadmins(connection: &Connection) -> Result<u64, Fail> {
    count(
        connection,
        "SELECT count(*) FROM users WHERE role = 'superadmin'",
    )
}

impl Store {
    /// How many users exist; zero means the daemon must create the first superadmin.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        self.read(|connection| count(connection, "SELECT count(*) FROM users"))
    }

    /// Creates a user. `must_change_password` is for passwords someone else chose (a first
    /// superadmin's generated one, an admin creating an account).
    pub fn add_user(
        &self,
        name: &str,
        role: UserRole,
        password: &str,
        must_change_password: bool,
    ) -> Result<UserInfo, StoreError> {
        check_user_name(name)?;
        // Hashing takes tens of milliseconds: done before taking the connection's lock.
        let hash = hash_password(password)?;
        let created_at = millis(SystemTime::now());
        self.write(|transaction| {
            let inserted = transaction.execute(
                "INSERT INTO users (name, role, password_hash, must_change_password, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
                params![name, role.name(), hash, must_change_password, created_at],
            )?;
            if inserted == 0 {
                return Err(StoreError::Exists {
                    name: name.to_string(),
                }
                .into());
            }
            Ok(UserInfo {
                name: name.to_string(),
                role,
                created_at: rfc3339(created_at),
                must_change_password,
            })
        })
    }

    /// Replaces a user's password. Sessions stay (the caller decides whether to end others
    /// with [`Store::end_sessions`]).
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
        must_change_password: bool,
    ) -> Result<(), StoreError> {
        let hash = hash_password(password)?;
        self.write(|transaction| {
            let changed = transaction.execute(
                "UPDATE users SET password_hash = ?2, must_change_password = ?3 WHERE name = ?1",
                params![name, hash, must_change_password],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchUser {
                    name: name.to_string(),
                }
                .into());
            }
            Ok(())
        })
    }

    /// Changes a user's role; refuses to demote the last superadmin. Sessions and tokens see
    /// the new role on their next request (they read it from here each time).
    pub fn set_role(&self, name: &str, role: UserRole) -> Result<UserInfo, StoreError> {
        self.write(|transaction| {
            let user = load_user(transaction, name)?.ok_or_else(|| StoreError::NoSuchUser {
                name: name.to_string(),
            })?;
            if user.role == UserRole::Superadmin
                && role < UserRole::Superadmin
                && superadmins(transaction)? <= 1
            {
                return Err(StoreError::LastSuperadmin {
                    name: name.to_string(),
                }
                .into());
            }
            transaction.execute(
                "UPDATE users SET role = ?2 WHERE name = ?1",
                params![name, role.name()],
            )?;
            Ok(UserInfo { role, ..user })
        })
    }

    /// Removes a user with their sessions and tokens; refuses to remove the last superadmin.
    pub fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.write(|transaction| {
            let user = load_user(transaction, name)?.ok_or_else(|| StoreError::NoSuchUser {
                name: name.to_string(),
            })?;
            if user.role == UserRole::Superadmin && superadmins(transaction)? <= 1 {
                return Err(StoreError::LastSuperadmin {
                    name: name.to_string(),
                }
                .into());
            }
            // Explicit, rather than relying on ON DELETE CASCADE alone: the cascade needs
            // `foreign_keys=ON` on whichever connection deletes.
            transaction.execute("DELETE FROM sessions WHERE username = ?1", [name])?;
            transaction.execute("DELETE FROM tokens WHERE owner = ?1", [name])?;
            transaction.execute("DELETE FROM users WHERE name = ?1", [name])?;
            Ok(())
        })
    }

    /// All users, by name.
    pub fn users(&self) -> Result<Vec<UserInfo>, StoreError> {
        self.read(|connection| {
            let mut statement =
                connection.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
            let rows = statement.query_map([], user_from_row)?;
            rows.map(|row| user_info(row?)).collect()
        })
    }

    pub fn user(&self, name: &str) -> Result<Option<UserInfo>, StoreError> {
        self.read(|connection| load_user(connection, name))
    }

    /// The user, if `password` is theirs. An unknown name costs one argon2 verification like a
    /// known one, so response times do not tell which names exist.
    pub fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserInfo>, StoreError> {
        let found = self.read(|connection| {
            connection
                .query_row(
                    &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = ?1"),
                    [name],
                    |row| Ok((user_from_row(row)?, row.get::<_, String>(4)?)),
                )
                .optional()?
                .map(|(user, hash)| Ok((user_info(user)?, hash)))
                .transpose()
        })?;
        let Some((user, hash)) = found else {
            if let Some(dummy) = dummy_hash() {
                password_matches(password, dummy);
            }
            return Ok(None);
        };
        if password_matches(password, &hash) {
            return Ok(Some(user));
        }
        if argon2::password_hash::phc::PasswordHash::new(&hash).is_err() {
            warn!(user = %user.name, "the stored password hash cannot be read; set a new password with `lunora user passwd`");
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) fn stored_hash(store: &Store, name: &str) -> String {
    store
        .read(|connection| {
            Ok(connection.query_row(
                "SELECT password_hash FROM users WHERE name = ?1",
                [name],
                |row| row.get(0),
            )?)
        })
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    #[test]
    fn passwords_are_stored_as_salted_argon2id_hashes() {
        let (_dir, store) = temp_store();
        store
            .add_user("alice", UserRole::Admin, "correct horse", false)
            .unwrap();
        store
            .add_user("bob", UserRole::User, "correct horse", true)
            .unwrap();
        let alice = stored_hash(&store, "alice");
        let bob = stored_hash(&store, "bob");
        assert!(alice.starts_with("$argon2id$v=19$"), "{alice}");
        assert!(!alice.contains("correct horse"));
        assert_ne!(alice, bob, "each hash has its own salt");
    }

    #[test]
    fn only_the_right_password_of_an_existing_user_verifies() {
        let (_dir, store) = temp_store();
        let added = store
            .add_user("alice", UserRole::Admin, "correct horse", true)
            .unwrap();
        assert_eq!(added.role, UserRole::Admin);
        assert!(added.must_change_password);
        let verified = store.verify_password("alice", "correct horse").unwrap();
        assert_eq!(verified, Some(added.clone()));
        assert_eq!(store.verify_password("alice", "wrong horse").unwrap(), None);
        assert_eq!(
            store.verify_password("nobody", "correct horse").unwrap(),
            None
        );
        assert_eq!(store.verify_password("", "").unwrap(), None);

        store
            .set_password("alice", "battery staple", false)
            .unwrap();
        assert_eq!(
            store.verify_password("alice", "correct horse").unwrap(),
            None
        );
        let alice = store
            .verify_password("alice", "battery staple")
            .unwrap()
            .unwrap();
        assert!(!alice.must_change_password);
        assert!(matches!(
            store.set_password("nobody", "battery staple", false),
            Err(StoreError::NoSuchUser { .. })
        ));
    }

    #[test]
    fn names_passwords_and_duplicates_are_checked() {
        let (_dir, store) = temp_store();
        for bad in ["", "Alice", "a b", "ünï", "a/b", &"x".repeat(65)] {
            let error = store
                .add_user(bad, UserRole::User, "long enough", false)
                .unwrap_err();
            assert!(
                matches!(error, StoreError::BadUserName { .. }),
                "{bad:?}: {error}"
            );
        }
        let error = store
            .add_user("alice", UserRole::User, "short", false)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the password is too weak: passwords need at least 8 characters"
        );
        store
            .add_user("a.l-i_c3", UserRole::User, "long enough", false)
            .unwrap();
        store
            .add_user(&"x".repeat(64), UserRole::User, "long enough", false)
            .unwrap();
        let error = store
            .add_user("a.l-i_c3", UserRole::Admin, "long enough", false)
            .unwrap_err();
        assert!(matches!(error, StoreError::Exists { .. }), "{error}");
        assert_eq!(
            store.user("a.l-i_c3").unwrap().unwrap().role,
            UserRole::User
        );
        assert_eq!(store.user_count().unwrap(), 2);
    }

    #[test]
    fn the_last_superadmin_cannot_be_removed_or_demoted() {
        let (_dir, store) = temp_store();
        store
            .add_user("root", UserRole::Superadmin, "long enough", false)
            .unwrap();
        store
            .add_user("ops", UserRole::Admin, "long enough", false)
            .unwrap();
        for error in [
            store.remove_user("root").unwrap_err(),
            store.set_role("root", UserRole::Admin).unwrap_err(),
        ] {
            assert!(
                matches!(error, StoreError::LastSuperadmin { .. }),
                "{error}"
            );
            assert!(
                error
                    .to_string()
                    .contains("make another user superadmin first")
            );
        }
        assert_eq!(
            store.user("root").unwrap().unwrap().role,
            UserRole::Superadmin
        );

        // With a second superadmin, the first may go.
        let ops = store.set_role("ops", UserRole::Superadmin).unwrap();
        assert_eq!(ops.role, UserRole::Superadmin);
        store.set_role("root", UserRole::User).unwrap();
        assert!(store.remove_user("ops").is_err(), "ops is now the last one");
        store.remove_user("root").unwrap();
        let names: Vec<String> = store.users().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["ops"]);
        assert!(matches!(
            store.remove_user("root"),
            Err(StoreError::NoSuchUser { .. })
        ));
    }

    #[test]
    fn users_serialize_as_the_api_shows_them() {
        let (_dir, store) = temp_store();
        let user = store
            .add_user("alice", UserRole::Admin, "long enough", false)
            .unwrap();
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(json["username"], "alice");
        assert_eq!(json["role"], "admin");
        assert_eq!(json["must_change_password"], false);
        let created = json["created_at"].as_str().unwrap();
        assert!(created.ends_with('Z') && created.len() == 24, "{created}");
        assert_eq!(store.users().unwrap(), [user]);
    }
}
