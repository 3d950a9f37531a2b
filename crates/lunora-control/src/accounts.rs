//! Users, passwords and API tokens: the account [`Command`]s, run on the store. The daemon runs
//! them off its async threads; `lunora user …` and `lunora token …` run them directly, so the
//! shell and the API share one set of rules and one audit trail.

use std::time::SystemTime;

use lunora_store::{AuditEntry, Store, StoreError, UserRole};
use tracing::warn;

use crate::control::{Actor, Command, CommandError, Outcome, audit_of};

/// Runs an account command for `actor`: role check, the change, its audit row.
pub fn execute_account(
    store: &Store,
    actor: &Actor,
    command: Command,
    now: SystemTime,
) -> Result<Outcome, CommandError> {
    if actor.role < command.required_role() {
        return Err(CommandError::Forbidden(format!(
            "{} needs the role {} ({} is {})",
            command.action(),
            command.required_role(),
            actor.username,
            actor.role
        )));
    }
    let action = command.action();
    let (target, details) = audit_of(&command);
    let outcome = match command {
        Command::AddUser {
            name,
            role,
            password,
            temporary,
        } => Outcome::User(store.add_user(&name, role, password.expose(), temporary)?),
        Command::UpdateUser {
            name,
            role,
            password,
            temporary,
        } => {
            if let Some(password) = &password {
                store.set_password(&name, password.expose(), temporary)?;
                // A reset is usually because the old password leaked or was lost: whoever is
                // logged in with it must log in again.
                store.end_sessions(&name, None)?;
            }
            Outcome::User(match role {
                Some(role) => store.set_role(&name, role)?,
                None => store
                    .user(&name)?
                    .ok_or(StoreError::NoSuchUser { name: name.clone() })?,
            })
        }
        Command::RemoveUser { name } => {
            if name == actor.username {
                return Err(CommandError::Conflict(
                    "you cannot remove yourself; another superadmin can".into(),
                ));
            }
            store.remove_user(&name)?;
            Outcome::Done
        }
        Command::ChangeOwnPassword { current, new } => {
            if store
                .verify_password(&actor.username, current.expose())?
                .is_none()
            {
                return Err(CommandError::Invalid(vec![
                    "the current password is wrong".into(),
                ]));
            }
            store.set_password(&actor.username, new.expose(), false)?;
            Outcome::Done
        }
        Command::CreateToken { owner, name, role } => {
            if owner != actor.username && actor.role < UserRole::Superadmin {
                return Err(CommandError::Forbidden(
                    "only a superadmin creates tokens for other users".into(),
                ));
            }
            // A token never has more power than the one who made it (nor than its owner: the
            // store checks that, and takes the owner's role when none is asked for).
            let role = role.map(|r| r.min(actor.role));
            let (info, secret) = store.create_token(&owner, &name, role, now)?;
            Outcome::Token(info, secret)
        }
        Command::RevokeToken { id } => {
            let mine = store
                .tokens(Some(&actor.username))?
                .iter()
                .any(|t| t.id == id);
            if !mine && actor.role < UserRole::Superadmin {
                return Err(CommandError::NotFound(format!(
                    "you have no API token with id {id:?}"
                )));
            }
            store.revoke_token(&id)?;
            Outcome::Done
        }
        other => {
            return Err(CommandError::Invalid(vec![format!(
                "{} is not an account command",
                other.action()
            )]));
        }
    };
    let entry = AuditEntry {
        at: now,
        username: Some(actor.username.clone()),
        address: actor.address.clone(),
        action: action.to_string(),
        target,
        details,
    };
    // The change is made; a log that cannot take it must not turn it into a failure that
    // someone would retry.
    if let Err(e) = store.audit(&entry) {
        warn!(error = %e, action, "the change is made, but cannot be recorded in the audit log");
    }
    Ok(outcome)
}
