//! `lunora user …` and `lunora token …`: account management from the shell, for the first
//! superadmin, for scripts, and for the day nobody remembers a password.
//!
//! These work while the daemon runs: both open the same SQLite file, which takes turns between
//! processes (WAL and a busy timeout), and the daemon reads users, roles and tokens from it on
//! every request, so a change here applies at once.
//!
//! Passwords come as one line on standard input (`echo PASS | lunora user add NAME --role
//! admin`) rather than as arguments, which other users of the machine can read in the process
//! list and which land in shell history. Nothing here prints a password.

use std::io::{BufRead, Write};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use lunora_control::{Actor, Command, Outcome};
use lunora_media::Secret;
use lunora_store::{Store, UserRole};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user; the password is read as one line from standard input.
    Add {
        /// 1–64 characters: lowercase letters, digits, '.', '_' and '-'.
        name: String,
        /// user, admin or superadmin.
        #[arg(long)]
        role: UserRole,
    },
    /// Set a user's password (read as one line from standard input) and end their sessions.
    Passwd { name: String },
    /// Remove a user with their sessions and API tokens.
    Remove { name: String },
    /// List the users.
    List,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token for a user; the token is printed once.
    Create {
        /// What the token is for (shown in lists), e.g. "ci" or "stream deck".
        name: String,
        /// The user the token acts for.
        #[arg(long)]
        user: String,
        /// At most the user's role; the user's role when left out.
        #[arg(long)]
        role: Option<UserRole>,
    },
    /// List API tokens (not their secrets).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an API token by its id (see `lunora token list`); it stops working at once.
    Revoke { id: String },
}

/// Runs a `lunora user` command. `stdin` supplies passwords; `out` gets what the operator
/// reads.
pub(crate) fn user_command(
    store: &Store,
    command: UserCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        UserCommand::Add { name, role } => {
            let password = read_password(stdin, "lunora user add NAME --role ROLE")?;
            let command = Command::AddUser {
                name,
                role,
                password: Secret::new(password),
                temporary: false,
            };
            if let Outcome::User(user) = execute(store, command)? {
                writeln!(out, "added user {} ({})", user.name, user.role)?;
            }
        }
        UserCommand::Passwd { name } => {
            // Checked first, so an unknown name is reported before anything waits on stdin.
            if store.user(&name)?.is_none() {
                bail!(lunora_store::StoreError::NoSuchUser { name });
            }
            let password = read_password(stdin, "lunora user passwd NAME")?;
            let command = Command::UpdateUser {
                name: name.clone(),
                role: None,
                password: Some(Secret::new(password)),
                temporary: false,
            };
            execute(store, command)?;
            writeln!(
                out,
                "changed the password of {name} and ended their sessions"
            )?;
        }
        UserCommand::Remove { name } => {
            execute(store, Command::RemoveUser { name: name.clone() })?;
            writeln!(
                out,
                "removed user {name} with their sessions and API tokens"
            )?;
        }
        UserCommand::List => {
            let users = store.users()?;
            if users.is_empty() {
                writeln!(
                    out,
                    "no users yet; add one with: echo PASSWORD | lunora user add NAME --role superadmin"
                )?;
                return Ok(());
            }
            let mut rows = vec![header(&["NAME", "ROLE", "CREATED", "MUST CHANGE PASSWORD"])];
            rows.extend(users.into_iter().map(|user| {
                vec![
                    user.name,
                    user.role.to_string(),
                    user.created_at,
                    yes_no(user.must_change_password),
                ]
            }));
            write_table(out, &rows)?;
        }
    }
    Ok(())
}

/// Who acts from the shell: whoever can open the state database is trusted as a superadmin
/// (the file is readable by lunora's user only); the audit log names the login.
fn shell_actor() -> Actor {
    let login = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Actor {
        username: format!("{login}@shell"),
        role: UserRole::Superadmin,
        address: None,
    }
}

/// Runs an account change through the same command path as the API.
fn execute(store: &Store, command: Command) -> Result<Outcome> {
    lunora_control::execute_account(store, &shell_actor(), command, SystemTime::now())
        .map_err(anyhow::Error::from)
}

/// Runs a `lunora token` command.
pub(crate) fn token_command(
    store: &Store,
    command: TokenCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        TokenCommand::Create { name, user, role } => {
            let command = Command::CreateToken {
                owner: user,
                name,
                role,
            };
            if let Outcome::Token(token, secret) = execute(store, command)? {
                writeln!(
                    out,
                    "created API token {} ({:?}) for {} with role {}:",
                    token.id, token.name, token.owner, token.role
                )?;
                // Alone on its line, so scripts can take it with `tail -n 2 | head -n 1`.
                writeln!(out, "{}", secret.expose())?;
                writeln!(
                    out,
                    "It will not be shown again: store it now. Send it as `Authorization: Bearer <token>`."
                )?;
            }
        }
        TokenCommand::List { user } => {
            let tokens = store.tokens(user.as_deref())?;
            if tokens.is_empty() {
                writeln!(out, "no API tokens")?;
                return Ok(());
            }
            let mut rows = vec![header(&[
                "ID",
                "NAME",
                "OWNER",
                "ROLE",
                "CREATED",
                "LAST USED",
            ])];
            rows.extend(tokens.into_iter().map(|token| {
                vec![
                    token.id,
                    token.name,
                    token.owner,
                    token.role.to_string(),
                    token.created_at,
                    token.last_used_at.unwrap_or_else(|| "never".into()),
                ]
            }));
            write_table(out, &rows)?;
        }
        TokenCommand::Revoke { id } => {
            execute(store, Command::RevokeToken { id: id.clone() })?;
            writeln!(out, "revoked API token {id}")?;
        }
    }
    Ok(())
}

/// One line from `stdin`, without its line ending; everything else (spaces included) is part
/// of the password.
fn read_password(stdin: &mut dyn BufRead, usage: &str) -> Result<String> {
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        bail!("no password on standard input: pipe it in, e.g. `echo PASSWORD | {usage}`");
    }
    Ok(password.to_string())
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_string()).collect()
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

/// Left-aligned columns two spaces apart, without trailing spaces.
fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().store;
        (dir, store)
    }

    /// Runs a user command with `input` on stdin; returns what it printed.
    fn user(store: &Store, command: UserCommand, input: &str) -> Result<String> {
        let mut out = Vec::new();
        user_command(store, command, &mut input.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn token(store: &Store, command: TokenCommand) -> Result<String> {
        let mut out = Vec::new();
        token_command(store, command, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn add(name: &str, role: UserRole) -> UserCommand {
        UserCommand::Add {
            name: name.into(),
            role,
        }
    }

    #[test]
    fn users_are_added_from_a_piped_password_and_listed() {
        let (_dir, store) = store();
        assert!(
            user(&store, UserCommand::List, "")
                .unwrap()
                .starts_with("no users yet")
        );
        let printed = user(&store, add("root", UserRole::Superadmin), "s3cret pass\n").unwrap();
        assert_eq!(printed, "added user root (superadmin)\n");
        assert!(!printed.contains("s3cret"));
        // Windows line endings and no final newline both work; inner spaces are kept.
        user(&store, add("ops", UserRole::Admin), "with space\r\n").unwrap();
        user(&store, add("viewer", UserRole::User), "no newline").unwrap();
        assert!(
            store
                .verify_password("root", "s3cret pass")
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .verify_password("ops", "with space")
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .verify_password("viewer", "no newline")
                .unwrap()
                .is_some()
        );

        let list = user(&store, UserCommand::List, "").unwrap();
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 4, "{list}");
        assert!(
            lines[0].starts_with("NAME    ROLE        CREATED"),
            "{list}"
        );
        assert!(lines[1].starts_with("ops     admin       20"), "{list}");
        assert!(lines[1].ends_with("  no"), "{list}");

        let audit = store.audit_log(10, None).unwrap();
        assert_eq!(audit.len(), 3);
        assert_eq!(audit[0].action, "user.add");
        assert_eq!(audit[0].target, "viewer");
        assert!(
            audit[0]
                .username
                .as_deref()
                .is_some_and(|u| u.ends_with("@shell")),
            "{:?}",
            audit[0].username
        );
        assert!(
            !audit
                .iter()
                .any(|r| r.details.to_string().contains("newline"))
        );
    }

    #[test]
    fn user_errors_say_what_to_do() {
        let (_dir, store) = store();
        let error = user(&store, add("root", UserRole::Superadmin), "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no password on standard input: pipe it in, e.g. `echo PASSWORD | lunora user add NAME --role ROLE`"
        );
        let error = user(&store, add("root", UserRole::Superadmin), "short\n").unwrap_err();
        assert!(
            error.to_string().contains("at least 8 characters"),
            "{error}"
        );
        let error = user(
            &store,
            UserCommand::Passwd {
                name: "ghost".into(),
            },
            "long enough\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("lunora user list"), "{error}");

        user(&store, add("root", UserRole::Superadmin), "long enough\n").unwrap();
        let error = user(&store, add("root", UserRole::User), "long enough\n").unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        let error = user(
            &store,
            UserCommand::Remove {
                name: "root".into(),
            },
            "",
        )
        .unwrap_err();
        assert!(error.to_string().contains("last superadmin"), "{error}");
        assert_eq!(store.user_count().unwrap(), 1);
    }

    #[test]
    fn passwd_replaces_the_password_and_logs_everyone_out() {
        let (_dir, store) = store();
        user(&store, add("ops", UserRole::Admin), "old password\n").unwrap();
        let now = SystemTime::now();
        let cookie = store.create_session("ops", now).unwrap();
        let printed = user(
            &store,
            UserCommand::Passwd { name: "ops".into() },
            "new password\n",
        )
        .unwrap();
        assert_eq!(
            printed,
            "changed the password of ops and ended their sessions\n"
        );
        assert!(
            store
                .verify_password("ops", "old password")
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .verify_password("ops", "new password")
                .unwrap()
                .is_some()
        );
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            store.session_user(cookie.expose(), now, day, day).unwrap(),
            None
        );

        user(&store, UserCommand::Remove { name: "ops".into() }, "").unwrap();
        assert!(store.user("ops").unwrap().is_none());
    }

    #[test]
    fn a_token_is_shown_once_works_and_can_be_revoked() {
        let (_dir, store) = store();
        user(&store, add("ops", UserRole::Admin), "long enough\n").unwrap();
        let printed = token(
            &store,
            TokenCommand::Create {
                name: "ci".into(),
                user: "ops".into(),
                role: Some(UserRole::User),
            },
        )
        .unwrap();
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines.len(), 3, "{printed}");
        assert!(
            lines[0].ends_with("(\"ci\") for ops with role user:"),
            "{printed}"
        );
        assert!(
            lines[2].starts_with("It will not be shown again"),
            "{printed}"
        );
        let secret = lines[1];
        let (acting, info) = store
            .token_user(secret, SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!((acting.name.as_str(), acting.role), ("ops", UserRole::User));

        let list = token(
            &store,
            TokenCommand::List {
                user: Some("ops".into()),
            },
        )
        .unwrap();
        assert!(list.contains(&info.id) && list.contains("ci"), "{list}");
        assert!(!list.contains(secret), "lists never show the secret");
        assert_eq!(
            token(
                &store,
                TokenCommand::List {
                    user: Some("nobody".into())
                }
            )
            .unwrap(),
            "no API tokens\n"
        );

        let revoked = token(
            &store,
            TokenCommand::Revoke {
                id: info.id.clone(),
            },
        )
        .unwrap();
        assert_eq!(revoked, format!("revoked API token {}\n", info.id));
        assert_eq!(store.token_user(secret, SystemTime::now()).unwrap(), None);
        let error = token(&store, TokenCommand::Revoke { id: info.id }).unwrap_err();
        assert!(error.to_string().contains("lunora token list"), "{error}");

        let error = token(
            &store,
            TokenCommand::Create {
                name: "x".into(),
                user: "ops".into(),
                role: Some(UserRole::Superadmin),
            },
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("choose a role up to admin"),
            "{error}"
        );
    }

    #[test]
    fn roles_parse_on_the_command_line() {
        use clap::{Parser, Subcommand};
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Command,
        }
        #[derive(Debug, Subcommand)]
        enum Command {
            #[command(subcommand)]
            User(UserCommand),
            #[command(subcommand)]
            Token(TokenCommand),
        }
        let cli = Cli::try_parse_from(["lunora", "user", "add", "ann", "--role", "admin"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::User(UserCommand::Add {
                role: UserRole::Admin,
                ..
            })
        ));
        let cli =
            Cli::try_parse_from(["lunora", "token", "create", "ci", "--user", "ann"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Token(TokenCommand::Create { role: None, .. })
        ));
        let error = Cli::try_parse_from(["lunora", "user", "add", "ann", "--role", "root"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("use user, admin or superadmin"), "{error}");
    }
}
