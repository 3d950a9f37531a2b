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
            let id = connection
                .query_row("SELECT id FROM tokens WHERE digest = ?1", [&key], |row| {
                    row.get::<_, String>(0)
                })
                .optional()?;
            let Some(token) = id
                .map(|id| load_token(connection, &id))
                .transpose()?
                .flatten()
            else {
                return Ok(None);
            };
            let Some(owner) = load_user(connection, &token.owner)? else {
                return Ok(None);
            };
            let last_used: Option<i64> = connection.query_row(
                "SELECT last_used_at FROM tokens WHERE id = ?1",
                [&token.id],
                |row| row.get(0),
            )?;
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
