//! Login sessions and API tokens. Both are bearer secrets: only their SHA-256 digest is
//! stored, so a copy of the database (a backup, a stolen disk) logs nobody in. A 256-bit
//! random secret needs no slow hash: there is nothing to guess.

use std::time::{Duration, SystemTime};

use lunora_media::Secret;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::users::{USER_COLUMNS, load_user, user_from_row, user_info};
use crate::{Fail, Store, StoreError, TOKEN_PREFIX, UserInfo, UserRole, elapsed, millis, rfc3339};

/// Writes of `last_seen`/`last_used_at` happen at most this often per session or token, so an
/// ordinary request costs a read, not a synced write.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// An API token as listed; the secret itself is shown once, by [`Store::create_token`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Short random hex, for listing and revoking; not secret.
    pub id: String,
    pub name: String,
    pub owner: String,
    /// The most the token may do; its owner's current role caps it further.
    pub role: UserRole,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub last_used_at: Option<String>,
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(StoreError::Random)?;
    Ok(hex(&buffer))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Secrets are 64 hex characters (plus the token prefix); anything much longer is not one of
/// ours and is not worth hashing.
const LONGEST_SECRET: usize = 128;

fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && !name.chars().any(char::is_control)
        && !name.trim().is_empty()
}

const TOKEN_COLUMNS: &str = "id, name, owner, role, created_at, last_used_at";

type TokenRow = (String, String, String, String, i64, Option<i64>);

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn token_info(
    (id, name, owner, role, created_at, last_used_at): TokenRow,
) -> Result<TokenInfo, Fail> {
    let role = role
        .parse()
        .map_err(|e| Fail::Corrupt(format!("API token {id}: {e}")))?;
    Ok(TokenInfo {
        id,
        name,
        owner,
        role,
        created_at: rfc3339(created_at),
        last_used_at: last_used_at.map(rfc3339),
    })
}

fn load_token(connection: &Connection, id: &str) -> Result<Option<TokenInfo>, Fail> {
    connection
        .query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
            [id],
            token_from_row,
        )
        .optional()?
        .map(token_info)
        .transpose()
}

impl Store {
    /// Starts a session for `user` and returns the cookie value (64 hex characters of 32
    /// random bytes), which exists nowhere else afterwards.
    pub fn create_session(&self, user: &str, now: SystemTime) -> Result<Secret, StoreError> {
        let cookie = random_hex(32)?;
        let now = millis(now);
        self.write(|transaction| {
            if load_user(transaction, user)?.is_none() {
                return Err(StoreError::NoSuchUser {
                    name: user.to_string(),
                }
                .into());
            }
            transaction.execute(
                "INSERT INTO sessions (digest, username, created_at, last_seen) VALUES (?1, ?2, ?3, ?3)",
                params![digest(&cookie), user, now],
            )?;
            Ok(())
        })?;
        Ok(Secret::new(cookie))
    }

    /// The user a session cookie belongs to, with their current role; `None` when unknown or
    /// expired (idle longer than `idle`, or older than `absolute`). An expired session is
    /// deleted, and whenever this writes it also deletes every other expired session, so
    /// abandoned ones do not pile up.
    pub fn session_user(
        &self,
        cookie: &str,
        now: SystemTime,
        idle: Duration,
        absolute: Duration,
    ) -> Result<Option<UserInfo>, StoreError> {
        if cookie.len() > LONGEST_SECRET {
            return Ok(None);
        }
        let key = digest(cookie);
        let now = millis(now);
        let found = self.read(|connection| {
            connection
                .query_row(
                    &format!(
                        "SELECT {USER_COLUMNS}, s.created_at, s.last_seen FROM sessions s
                         JOIN users ON users.name = s.username WHERE s.digest = ?1"
                    ),
                    [&key],
                    |row| {
                        Ok((
                            user_from_row(row)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, i64>(5)?,
                        ))
                    },
                )
                .optional()?
                .map(|(user, created, seen)| Ok((user_info(user)?, created, seen)))
                .transpose()
        })?;
        let Some((user, created, seen)) = found else {
            return Ok(None);
        };
        let expired = elapsed(seen, now) > idle || elapsed(created, now) > absolute;
        if expired || elapsed(seen, now) >= TOUCH_INTERVAL {
            let idle_limit =
                now.saturating_sub(i64::try_from(idle.as_millis()).unwrap_or(i64::MAX));
            let absolute_limit =
                now.saturating_sub(i64::try_from(absolute.as_millis()).unwrap_or(i64::MAX));
            self.write(|transaction| {
                transaction.execute(
                    "DELETE FROM sessions WHERE last_seen < ?1 OR created_at < ?2",
                    params![idle_limit, absolute_limit],
                )?;
                if expired {
                    // Also gone when its limits sit exactly on the boundary of the sweep above.
                    transaction.execute("DELETE FROM sessions WHERE digest = ?1", [&key])?;
                } else {
                    transaction.execute(
                        "UPDATE sessions SET last_seen = ?2 WHERE digest = ?1",
                        params![key, now],
                    )?;
                }
                Ok(())
            })?;
        }
        Ok((!expired).then_some(user))
    }

    /// Ends one session (logout). Unknown cookies are fine: logging out twice is not an error.
    pub fn delete_session(&self, cookie: &str) -> Result<(), StoreError> {
        let key = digest(cookie);
        self.write(|transaction| {
            transaction.execute("DELETE FROM sessions WHERE digest = ?1", [key])?;
            Ok(())
        })
    }

    /// Ends all of `user`'s sessions except the one with cookie `keep` (after a password
    /// change, the browser that made it stays logged in); returns how many ended.
    pub fn end_sessions(&self, user: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let keep = keep.map(digest);
        self.write(|transaction| {
            Ok(transaction.execute(
                "DELETE FROM sessions WHERE username = ?1 AND (?2 IS NULL OR digest <> ?2)",
                params![user, keep],
            )?)
        })
    }

    /// Creates an API token for `owner` and returns it with its secret (`lun_` + 64 hex
    /// characters), which is shown this once. `role` defaults to the owner's role and may not
    /// exceed it.
    pub fn create_token(
        &self,
        owner: &str,
        name: &str,
        role: Option<UserRole>,
        now: SystemTime,
    ) -> Result<(TokenInfo, Secret), StoreError> {
        if !valid_token_name(name) {
            return Err(StoreError::BadTokenName {
                name: name.to_string(),
            });
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
        let id = random_hex(6)?;
        let now = millis(now);
        let info = self.write(|transaction| {
            let owner_info = load_user(transaction, owner)?.ok_or_else(|| StoreError::NoSuchUser {
                name: owner.to_string(),
            })?;
            let role = role.unwrap_or(owner_info.role);
            if role > owner_info.role {
                return Err(StoreError::RoleTooHigh {
                    owner: owner.to_string(),
                    owner_role: owner_info.role,
                    requested: role,
                }
                .into());
            }
            transaction.execute(
                "INSERT INTO tokens (id, digest, name, owner, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, digest(&secret), name, owner, role.name(), now],
            )?;
            Ok(TokenInfo {
                id: id.clone(),
                name: name.to_string(),
                owner: owner.to_string(),
                role,
                created_at: rfc3339(now),
                last_used_at: None,
            })
        })?;
        Ok((info, Secret::new(secret)))
    }

    /// Tokens of `owner`, or everybody's, oldest first.
    pub fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR owner = ?1
                 ORDER BY created_at, id"
            ))?;
            let rows = statement.query_map([owner], token_from_row)?;
            rows.map(|row| token_info(row?)).collect()
        })
    }

    /// Revokes a token at once; returns what it was, for the audit log.
    pub fn revoke_token(&self, id: &str) -> Result<TokenInfo, StoreError> {
        self.write(|transaction| {
            let token = load_token(transaction, id)?
                .ok_or_else(|| StoreError::NoSuchToken { id: id.to_string() })?;
            transaction.execute("DELETE FROM tokens WHERE id = ?1", [id])?;
            Ok(token)
        })
    }

    /// The user a token acts for and the token. The returned user's `role` is the token's
    /// effective role, `min(token role, owner's current role)`: a demoted owner's tokens lose
    /// power at once, and callers authorise with that one field whichever way a request came.
    pub fn token_user(
        &self,
        secret: &str,
        now: SystemTime,
    ) -> Result<Option<(UserInfo, TokenInfo)>, StoreError> {
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > LONGEST_SECRET {
            return Ok(None);
        }
        let key = digest(secret);
        let now = millis(now);
        let found = self.read(|connection| {
            let Some(row) = connection
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE digest = ?1"),
                    [&key],
                    token_from_row,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let last_used = row.5;
            let token = token_info(row)?;
            let Some(owner) = load_user(connection, &token.owner)? else {
                return Ok(None);
            };
            Ok(Some((owner, token, last_used)))
        })?;
        let Some((owner, mut token, last_used)) = found else {
            return Ok(None);
        };
        if last_used.is_none_or(|last| elapsed(last, now) >= TOUCH_INTERVAL) {
            self.write(|transaction| {
                transaction.execute(
                    "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
                    params![token.id, now],
                )?;
                Ok(())
            })?;
            token.last_used_at = Some(rfc3339(now));
        }
        let role = owner.role.min(token.role);
        Ok(Some((UserInfo { role, ..owner }, token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{t0, temp_store};

    const IDLE: Duration = Duration::from_secs(100);
    const ABSOLUTE: Duration = Duration::from_secs(1000);

    fn at(seconds: u64) -> SystemTime {
        t0() + Duration::from_secs(seconds)
    }

    fn store_with_users() -> (tempfile::TempDir, Store) {
        let (dir, store) = temp_store();
        store
            .add_user("root", UserRole::Superadmin, "long enough", false)
            .unwrap();
        store
            .add_user("ops", UserRole::Admin, "long enough", false)
            .unwrap();
        (dir, store)
    }

    /// Every byte the database has on disk, WAL included.
    fn database_bytes(store: &Store) -> Vec<u8> {
        let mut wal = store.path().as_os_str().to_owned();
        wal.push("-wal");
        let mut bytes = std::fs::read(store.path()).unwrap();
        bytes.extend(std::fs::read(wal).unwrap_or_default());
        bytes
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn a_session_ends_when_idle_or_too_old_and_is_not_written_on_every_request() {
        let (_dir, store) = store_with_users();
        let check = |cookie: &Secret, seconds| {
            store
                .session_user(cookie.expose(), at(seconds), IDLE, ABSOLUTE)
                .unwrap()
                .map(|user| user.name)
        };

        let idle = store.create_session("ops", at(0)).unwrap();
        assert_eq!(idle.expose().len(), 64);
        assert_eq!(check(&idle, 50).as_deref(), Some("ops"));
        // 50 s after the last write is under the touch interval: last_seen stayed at 0, so at
        // 120 s the session has been idle for 120 s.
        assert_eq!(check(&idle, 120), None);
        assert_eq!(check(&idle, 121), None, "an expired session is gone");

        let busy = store.create_session("ops", at(0)).unwrap();
        // Requests more than a minute apart keep it alive past the idle limit...
        for seconds in (70..1000).step_by(70) {
            assert_eq!(check(&busy, seconds).as_deref(), Some("ops"), "{seconds}");
        }
        // ...but not past the absolute one.
        assert_eq!(check(&busy, 1001), None);

        assert_eq!(check(&Secret::new("not a session"), 1), None);
        assert_eq!(check(&Secret::new("x".repeat(10_000)), 1), None);
    }

    #[test]
    fn a_session_follows_its_user_and_ends_on_logout() {
        let (_dir, store) = store_with_users();
        let first = store.create_session("ops", at(0)).unwrap();
        let second = store.create_session("ops", at(0)).unwrap();
        let user = |cookie: &Secret| {
            store
                .session_user(cookie.expose(), at(1), IDLE, ABSOLUTE)
                .unwrap()
        };
        store.set_role("ops", UserRole::User).unwrap();
        assert_eq!(user(&first).unwrap().role, UserRole::User);

        store.delete_session(first.expose()).unwrap();
        store.delete_session(first.expose()).unwrap();
        assert_eq!(user(&first), None);
        assert!(user(&second).is_some());

        let third = store.create_session("ops", at(0)).unwrap();
        assert_eq!(store.end_sessions("ops", Some(third.expose())).unwrap(), 1);
        assert_eq!(user(&second), None);
        assert!(user(&third).is_some());

        store.remove_user("ops").unwrap();
        assert_eq!(user(&third), None);
        assert!(matches!(
            store.create_session("ops", at(0)),
            Err(StoreError::NoSuchUser { .. })
        ));
    }

    #[test]
    fn secrets_are_never_stored() {
        let (_dir, store) = store_with_users();
        let cookie = store.create_session("ops", at(0)).unwrap();
        let (_, token) = store.create_token("ops", "ci", None, at(0)).unwrap();
        let bytes = database_bytes(&store);
        assert!(contains(&bytes, "ops"), "the check reads the data");
        assert!(!contains(&bytes, cookie.expose()));
        assert!(!contains(&bytes, token.expose()));
        assert_eq!(format!("{token:?} {cookie}"), "*** ***");
    }

    #[test]
    fn a_token_acts_with_at_most_its_owners_current_role() {
        let (_dir, store) = store_with_users();
        let error = store
            .create_token("ops", "deploy", Some(UserRole::Superadmin), at(0))
            .unwrap_err();
        assert!(matches!(error, StoreError::RoleTooHigh { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "a token of ops cannot have the role superadmin: ops is admin; choose a role up to admin"
        );

        let (info, secret) = store.create_token("ops", "deploy", None, at(0)).unwrap();
        assert_eq!(info.role, UserRole::Admin, "defaults to the owner's role");
        assert_eq!(info.id.len(), 12);
        assert!(secret.expose().starts_with("lun_"));
        let (user, token) = store.token_user(secret.expose(), at(1)).unwrap().unwrap();
        assert_eq!((user.name.as_str(), user.role), ("ops", UserRole::Admin));
        assert_eq!(token.id, info.id);

        let (_, low) = store
            .create_token("root", "viewer", Some(UserRole::User), at(0))
            .unwrap();
        let (user, _) = store.token_user(low.expose(), at(1)).unwrap().unwrap();
        assert_eq!(
            (user.name.as_str(), user.role),
            ("root", UserRole::User),
            "capped by the token's role"
        );

        store.set_role("ops", UserRole::User).unwrap();
        let (user, token) = store.token_user(secret.expose(), at(2)).unwrap().unwrap();
        assert_eq!(user.role, UserRole::User, "capped by the owner's new role");
        assert_eq!(token.role, UserRole::Admin, "the token itself is unchanged");

        assert_eq!(store.token_user("lun_nope", at(1)).unwrap(), None);
        assert_eq!(store.token_user("not-a-token", at(1)).unwrap(), None);
        assert!(matches!(
            store.create_token("ghost", "x", None, at(0)),
            Err(StoreError::NoSuchUser { .. })
        ));
        for bad in ["", "   ", "a\nb", &"n".repeat(65)] {
            assert!(matches!(
                store.create_token("ops", bad, None, at(0)),
                Err(StoreError::BadTokenName { .. })
            ));
        }
    }

    #[test]
    fn revoked_tokens_and_tokens_of_removed_users_stop_working() {
        let (_dir, store) = store_with_users();
        let (first, first_secret) = store.create_token("ops", "one", None, at(0)).unwrap();
        let (second, second_secret) = store.create_token("ops", "two", None, at(1)).unwrap();
        let (theirs, _) = store.create_token("root", "three", None, at(2)).unwrap();
        let ids = |owner| -> Vec<String> {
            store
                .tokens(owner)
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect()
        };
        assert_eq!(ids(Some("ops")), [first.id.clone(), second.id.clone()]);
        assert_eq!(
            ids(None),
            [first.id.clone(), second.id.clone(), theirs.id.clone()]
        );

        assert_eq!(store.revoke_token(&first.id).unwrap(), first);
        assert_eq!(
            store.token_user(first_secret.expose(), at(3)).unwrap(),
            None
        );
        assert!(matches!(
            store.revoke_token(&first.id),
            Err(StoreError::NoSuchToken { .. })
        ));

        store.remove_user("ops").unwrap();
        assert_eq!(
            store.token_user(second_secret.expose(), at(3)).unwrap(),
            None
        );
        assert_eq!(ids(None), [theirs.id]);
    }

    #[test]
    fn last_use_is_recorded_at_most_once_a_minute() {
        let (_dir, store) = store_with_users();
        let (_, secret) = store.create_token("ops", "ci", None, at(0)).unwrap();
        let last_used = || store.tokens(Some("ops")).unwrap()[0].last_used_at.clone();
        assert_eq!(last_used(), None);
        store.token_user(secret.expose(), at(10)).unwrap();
        assert_eq!(last_used(), Some(rfc3339(millis(at(10)))));
        store.token_user(secret.expose(), at(69)).unwrap();
        assert_eq!(last_used(), Some(rfc3339(millis(at(10)))));
        store.token_user(secret.expose(), at(70)).unwrap();
        assert_eq!(last_used(), Some("2023-11-14T22:14:30.000Z".to_string()));
    }
}
