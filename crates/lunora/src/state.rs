//! Where lunora keeps its state, and the first account on a new box.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lunora_control::{Store, UserRole};
use tracing::{info, warn};

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

const FIRST_ADMIN: &str = "admin";
const PASSWORD_FILE: &str = "initial-admin-password";

/// A box with no users gets the superadmin `admin`: with `$LUNORA_ADMIN_PASSWORD`, or with a
/// random password printed once to the log and left in `<state dir>/initial-admin-password`
/// (0600) until it is changed.
pub(crate) fn first_admin(store: &Store, dir: &Path) -> Result<()> {
    if store.user_count()? > 0 {
        return Ok(());
    }
    let (password, chosen) = match std::env::var("LUNORA_ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => (password, true),
        _ => {
            let mut bytes = [0u8; 12];
            getrandom::fill(&mut bytes).context("cannot make a random first password")?;
            (bytes.iter().map(|b| format!("{b:02x}")).collect(), false)
        }
    };
    store
        .add_user(FIRST_ADMIN, UserRole::Superadmin, &password, !chosen)
        .context("cannot create the first user")?;
    if chosen {
        info!(
            user = FIRST_ADMIN,
            "first start: created the superadmin with the password from LUNORA_ADMIN_PASSWORD"
        );
        return Ok(());
    }
    let path = dir.join(PASSWORD_FILE);
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{password}"));
    if let Err(e) = written {
        warn!(file = %path.display(), error = %e, "cannot write the first password to a file; it is only in this log");
    }
    // Printed once, on purpose: this is how the operator gets in. The dashboard asks for a new one.
    warn!(
        user = FIRST_ADMIN,
        password = %password,
        file = %path.display(),
        "first start: created the superadmin; log in at the dashboard and choose a new password"
    );
    Ok(())
}
