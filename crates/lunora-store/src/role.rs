//! Who may do what: `user` < `admin` < `superadmin`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's (or an API token's) role. The derived order is the order of power, so a check is
/// `role >= UserRole::Admin` and a token's effective role is `min(token, owner)`: keep the
/// variants in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Watches status and previews, manages destinations and its own tokens.
    User,
    /// Also manages sources, failover and switching, and reads the audit log.
    Admin,
    /// Also manages users, everybody's tokens and server settings.
    Superadmin,
}

impl UserRole {
    pub const ALL: [UserRole; 3] = [UserRole::User, UserRole::Admin, UserRole::Superadmin];

    /// The name used in the API, the CLI and the database.
    pub fn name(self) -> &'static str {
        match self {
            UserRole::User => "user",
            UserRole::Admin => "admin",
            UserRole::Superadmin => "superadmin",
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role: use user, admin or superadmin")]
pub struct UnknownRole(pub String);

impl FromStr for UserRole {
    type Err = UnknownRole;

    /// Exact lowercase names only: the database and the API store these very strings, so
    /// accepting `Admin` here would let two spellings of one role into the system.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserRole::ALL
            .into_iter()
            .find(|role| role.name() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_and_parsing_agree() {
        assert!(UserRole::User < UserRole::Admin && UserRole::Admin < UserRole::Superadmin);
        for role in UserRole::ALL {
            assert_eq!(role.name().parse::<UserRole>(), Ok(role));
            assert_eq!(role.to_string(), role.name());
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.name())
            );
        }
        let error = "root".parse::<UserRole>().unwrap_err().to_string();
        assert_eq!(
            error,
            "\"root\" is not a role: use user, admin or superadmin"
        );
        assert!("Admin".parse::<UserRole>().is_err());
    }
}
