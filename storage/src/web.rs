//! Web accounts, their roles and sessions, and hang-up requests: what the portal and the API share
//! with every node, so that a session opened through one node works through any other and ends
//! everywhere at logout.
//!
//! Accounts written before this module existed live in the `Users` table as
//! [`UserAccount`](crate::model::UserAccount); they are read as [`WebAccount`]s (see
//! [`WebAccount::from_legacy`]) and move to the `WebAccounts` table the first time they are changed.

use serde::{Deserialize, Serialize};

use crate::model::{Role, UnixMillis, UserAccount};
use crate::tables::{Record, Table};

/// The built-in roles' names. Custom roles may not take them.
pub const BUILT_IN_ROLES: [&str; 3] = ["admin", "operator", "user"];

/// How much of something an account may see: nothing, what concerns its own extension, or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    None,
    Own,
    All,
}

/// What a role allows. Managing web accounts, roles and cluster membership is the built-in admin
/// role's alone: a role that could do it could make itself admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Create, change and delete extensions.
    pub extensions: bool,
    /// Trunks, inbound and outbound routes, outbound permission groups, toll-fraud counters.
    pub routing: bool,
    /// Firewall rules and policy, bans, the event center's recipients, the audit log.
    pub security: bool,
    /// The live monitor: cluster status, registrations, calls in progress, events.
    pub monitor: bool,
    /// Hang up calls in progress.
    pub hang_up: bool,
    pub cdrs: Scope,
    pub recordings: Scope,
}

impl Grants {
    pub const ADMIN: Self = Self {
        extensions: true,
        routing: true,
        security: true,
        monitor: true,
        hang_up: true,
        cdrs: Scope::All,
        recordings: Scope::All,
    };
    pub const OPERATOR: Self = Self {
        extensions: false,
        routing: false,
        security: false,
        monitor: true,
        hang_up: true,
        cdrs: Scope::All,
        recordings: Scope::All,
    };
    pub const USER: Self = Self {
        extensions: false,
        routing: false,
        security: false,
        monitor: false,
        hang_up: false,
        cdrs: Scope::Own,
        recordings: Scope::Own,
    };

    /// The grants of a built-in role.
    pub fn built_in(role: &str) -> Option<Self> {
        match role {
            "admin" => Some(Self::ADMIN),
            "operator" => Some(Self::OPERATOR),
            "user" => Some(Self::USER),
            _ => None,
        }
    }
}

/// A custom role (the seed's "user permission" group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebRole {
    pub name: String,
    pub description: String,
    pub grants: Grants,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for WebRole {
    const TABLE: Table = Table::WebRoles;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A TOTP second factor (RFC 6238, SHA-1, 30 s, 6 digits: what every authenticator app reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totp {
    pub secret: Vec<u8>,
    /// Enrolment is finished only when the user has entered one code from the app.
    pub confirmed: bool,
    /// The last time step a code was accepted for: a code is never accepted twice.
    pub last_step: u64,
}

/// A login for the portal and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebAccount {
    pub username: String,
    /// argon2id PHC string, never the password.
    pub password_hash: String,
    /// `admin`, `operator`, `user` or a custom role's name.
    pub role: String,
    /// The extension whose calls are the account's "own".
    pub extension: Option<String>,
    pub email: Option<String>,
    pub disabled: bool,
    /// Set for generated and reset passwords: a session may do nothing else until it is changed.
    pub must_change_password: bool,
    pub totp: Option<Totp>,
    pub password_changed_at: UnixMillis,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl WebAccount {
    /// An account stored by an earlier version.
    pub fn from_legacy(u: UserAccount) -> Self {
        Self {
            username: u.username,
            password_hash: u.password_hash,
            role: match u.role {
                Role::Admin => "admin",
                Role::User => "user",
            }
            .to_owned(),
            extension: u.extension,
            email: None,
            disabled: false,
            must_change_password: false,
            totp: None,
            password_changed_at: u.password_changed_at,
            created_at: u.created_at,
            updated_at: u.password_changed_at,
        }
    }

    pub fn totp_enabled(&self) -> bool {
        self.totp.as_ref().is_some_and(|t| t.confirmed)
    }
}

impl Record for WebAccount {
    const TABLE: Table = Table::WebAccounts;
    fn key(&self) -> String {
        self.username.clone()
    }
}

/// A signed-in session. The cookie or bearer token names it; deleting it signs it out on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    /// 128 random bits, hex.
    pub id: String,
    pub username: String,
    pub created_at: UnixMillis,
    /// The session ends then whatever its activity.
    pub expires_at: UnixMillis,
    /// Where the session was opened from.
    pub source: String,
}

impl Record for WebSession {
    const TABLE: Table = Table::WebSessions;
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// An admin asked for a call in progress to be hung up; the node carrying it does so and the call's
/// end removes the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HangupRequest {
    pub call_id: String,
    pub requested_by: String,
    pub requested_at: UnixMillis,
}

impl Record for HangupRequest {
    const TABLE: Table = Table::HangupRequests;
    fn key(&self) -> String {
        self.call_id.clone()
    }
}
