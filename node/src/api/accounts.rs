//! Web accounts and roles (`/accounts`, `/roles`), an account's own settings (`/account`: password,
//! second factor) and the portal policy (`/web/policy`).
//!
//! Managing accounts, roles and the policy is the admin role's alone. A generated or reset password is
//! shown once, in the answer, and must be changed at the account's first session.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::{Setting, UnixMillis};
use storage::routing::PutMode;
use storage::web::{BUILT_IN_ROLES, Grants, Totp, WebAccount, WebRole};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::json::JsonBody;
use crate::time::now_millis;
use crate::{accounts, credentials, policy, totp};

const MAX_NAME: usize = 64;
const MAX_EMAIL: usize = 254;
const MAX_DESCRIPTION: usize = 200;
/// Custom roles at most: each is checked on every request of its accounts.
const MAX_ROLES: usize = 100;

const POLICY_TOTP: &str = "web.require_admin_totp";
const POLICY_IDLE: &str = "web.idle_minutes";
const DEFAULT_IDLE_MINUTES: u64 = 30;

/// The portal's sign-in policy, kept in replicated settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebPolicy {
    /// Admin sessions may do nothing but enrol a TOTP second factor until they have one.
    pub require_admin_totp: bool,
    /// A portal session ends after this long without a request (5 to 480).
    pub idle_minutes: u64,
}

impl WebPolicy {
    pub(crate) fn idle_ms(&self) -> u64 {
        self.idle_minutes * 60 * 1000
    }
}

pub(crate) fn read_policy(reader: &storage::StateReader) -> WebPolicy {
    let get = |key: &str| reader.get::<Setting>(key).ok().flatten().map(|s| s.value);
    WebPolicy {
        require_admin_totp: get(POLICY_TOTP).is_some_and(|v| v == "true"),
        idle_minutes: get(POLICY_IDLE)
            .and_then(|v| v.parse().ok())
            .filter(|m| (5..=480).contains(m))
            .unwrap_or(DEFAULT_IDLE_MINUTES),
    }
}

pub(crate) async fn get_policy(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<WebPolicy>, ApiError> {
    who.require_admin()?;
    Ok(Json(read_policy(state.cluster.reader())))
}

pub(crate) async fn put_policy(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<WebPolicy>,
) -> Result<Json<WebPolicy>, ApiError> {
    who.require_admin()?;
    if !(5..=480).contains(&req.idle_minutes) {
        return Err(ApiError::invalid("idle_minutes", "must be 5 to 480"));
    }
    let now = now_millis();
    for (key, value) in [
        (POLICY_TOTP, req.require_admin_totp.to_string()),
        (POLICY_IDLE, req.idle_minutes.to_string()),
    ] {
        state
            .propose_checked(Command::PutSetting(Setting {
                key: key.to_owned(),
                value,
                updated_at: now,
            }))
            .await?;
    }
    Ok(Json(req))
}

/// An account as the API shows it: never its hash or second-factor secret.
#[derive(Debug, Serialize)]
pub(crate) struct AccountView {
    pub username: String,
    pub role: String,
    pub extension: Option<String>,
    pub email: Option<String>,
    pub disabled: bool,
    pub must_change_password: bool,
    pub totp_enabled: bool,
    pub password_changed_at: UnixMillis,
    pub created_at: UnixMillis,
    /// A generated password, in the answer that generated it only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl From<&WebAccount> for AccountView {
    fn from(a: &WebAccount) -> Self {
        Self {
            username: a.username.clone(),
            role: a.role.clone(),
            extension: a.extension.clone(),
            email: a.email.clone(),
            disabled: a.disabled,
            must_change_password: a.must_change_password,
            totp_enabled: a.totp_enabled(),
            password_changed_at: a.password_changed_at,
            created_at: a.created_at,
            password: None,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct AccountList {
    pub accounts: Vec<AccountView>,
    pub count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccount {
    pub username: String,
    pub role: String,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Chosen by the admin (policy applies); generated when absent. Either way it must be changed at
    /// the first session unless `must_change_password` is false.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub must_change_password: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAccount {
    #[serde(default)]
    pub role: Option<String>,
    /// `null` removes the extension.
    #[serde(default, with = "double_option")]
    pub extension: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// `true` removes the account's second factor (a lost phone); the user enrols again.
    #[serde(default)]
    pub reset_totp: bool,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

fn valid_username(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        return Err(ApiError::invalid(
            "username",
            "must be 1 to 64 letters, digits, '-', '_', '.' or '@'",
        ));
    }
    Ok(())
}

fn valid_role_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(ApiError::invalid(
            field,
            "must be 1 to 32 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

fn valid_email(email: &Option<String>) -> Result<(), ApiError> {
    if let Some(e) = email {
        let ok = e.len() <= MAX_EMAIL
            && e.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && e.bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>\"'\\,;".contains(&b));
        if !ok {
            return Err(ApiError::invalid("email", "is not an e-mail address"));
        }
    }
    Ok(())
}

fn valid_extension(ext: &Option<String>) -> Result<(), ApiError> {
    if let Some(e) = ext
        && (e.is_empty() || e.len() > 15 || !e.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ApiError::invalid("extension", "must be 1 to 15 digits"));
    }
    Ok(())
}

/// Checks a chosen password against the policy, or generates one; the answer to a refused password
/// names the field. Runs zxcvbn on the blocking pool.
pub(crate) async fn choose_password(
    field: &'static str,
    given: Option<String>,
    names: Vec<String>,
) -> Result<(String, bool), ApiError> {
    tokio::task::spawn_blocking(move || {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match given {
            Some(p) => policy::check_password(&p, &names)
                .map(|()| (p, false))
                .map_err(|e| ApiError::invalid(field, e)),
            None => std::iter::repeat_with(credentials::generate_secret)
                .take(100)
                .find(|p| policy::check_password(p, &names).is_ok())
                .map(|p| (p, true))
                .ok_or_else(|| {
                    ApiError::Internal("no generated password passed the policy".into())
                }),
        }
    })
    .await
    .map_err(|_| ApiError::Internal("the password check did not finish".into()))?
}

pub(crate) async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || accounts::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("hashing the password: {e}")))
}

/// The state machine's refusal of an account change, in words.
fn refused(r: storage::Response, name: &str) -> ApiError {
    match r {
        storage::Response::Conflict { table, .. } if table == "last_admin" => ApiError::Conflict(
            "the last enabled admin account cannot be removed, disabled or demoted".into(),
        ),
        other => ApiError::refused(
            other,
            "web_accounts",
            name,
            &[("web_roles", "role"), ("extensions", "extension")],
        ),
    }
}

async fn put_account(state: &AppState, account: WebAccount, mode: PutMode) -> Result<(), ApiError> {
    let name = account.username.clone();
    let cmd = Command::PutWebAccount {
        account: Box::new(account),
        mode,
    };
    let cmd = super::audit::attach(cmd, state.cluster.reader());
    match state.cluster.propose(cmd).await? {
        storage::Response::Ok => Ok(()),
        r => Err(refused(r, &name)),
    }
}

fn load(state: &AppState, name: &str) -> Result<WebAccount, ApiError> {
    if name.len() > MAX_NAME {
        return Err(ApiError::NotFound(format!(
            "web account {name:.64} does not exist"
        )));
    }
    accounts::find(state.cluster.reader(), name)?
        .ok_or_else(|| ApiError::NotFound(format!("web account {name} does not exist")))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<AccountList>, ApiError> {
    who.require_admin()?;
    state.cluster.linearizable_barrier().await?;
    let all = accounts::list(state.cluster.reader())?;
    let accounts: Vec<AccountView> = all.iter().map(AccountView::from).collect();
    Ok(Json(AccountList {
        count: accounts.len(),
        accounts,
    }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    who.require_admin()?;
    state.cluster.linearizable_barrier().await?;
    Ok(Json(AccountView::from(&load(&state, &name)?)))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<CreateAccount>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    who.require_admin()?;
    valid_username(&req.username)?;
    valid_role_name("role", &req.role)?;
    valid_extension(&req.extension)?;
    valid_email(&req.email)?;
    let mut names = vec![req.username.clone()];
    names.extend(req.extension.clone());
    let (password, generated) = choose_password("password", req.password, names).await?;
    let now = now_millis();
    let account = WebAccount {
        username: req.username,
        password_hash: hash(password.clone()).await?,
        role: req.role,
        extension: req.extension,
        email: req.email,
        disabled: false,
        must_change_password: req.must_change_password.unwrap_or(true),
        totp: None,
        password_changed_at: now,
        created_at: now,
        updated_at: now,
    };
    put_account(&state, account.clone(), PutMode::Create).await?;
    let mut view = AccountView::from(&account);
    view.password = generated.then_some(password);
    Ok((StatusCode::CREATED, Json(view)))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<UpdateAccount>,
) -> Result<Json<AccountView>, ApiError> {
    who.require_admin()?;
    state.cluster.linearizable_barrier().await?;
    let mut account = load(&state, &name)?;
    if let Some(role) = req.role {
        valid_role_name("role", &role)?;
        account.role = role;
    }
    if let Some(ext) = req.extension {
        valid_extension(&ext)?;
        account.extension = ext;
    }
    if let Some(email) = req.email {
        valid_email(&email)?;
        account.email = email;
    }
    let disabling = req.disabled == Some(true) && !account.disabled;
    if let Some(d) = req.disabled {
        account.disabled = d;
    }
    if req.reset_totp {
        account.totp = None;
    }
    account.updated_at = now_millis();
    put_account(&state, account.clone(), PutMode::Update).await?;
    if disabling || req.reset_totp {
        state
            .propose_checked(Command::CloseWebSessionsOf {
                username: name,
                except: None,
            })
            .await?;
    }
    Ok(Json(AccountView::from(&account)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require_admin()?;
    let cmd = super::audit::attach(
        Command::DeleteWebAccount {
            username: name.clone(),
        },
        state.cluster.reader(),
    );
    match state.cluster.propose(cmd).await? {
        storage::Response::Ok => Ok(StatusCode::NO_CONTENT),
        r => Err(refused(r, &name)),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetPassword {
    #[serde(default)]
    pub password: Option<String>,
}

/// An admin sets a new password (chosen or generated) that must be changed at the next session; every
/// session of the account ends.
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ResetPassword>,
) -> Result<Json<AccountView>, ApiError> {
    who.require_admin()?;
    state.cluster.linearizable_barrier().await?;
    let mut account = load(&state, &name)?;
    let mut names = vec![account.username.clone()];
    names.extend(account.extension.clone());
    let (password, generated) = choose_password("password", req.password, names).await?;
    let now = now_millis();
    account.password_hash = hash(password.clone()).await?;
    account.must_change_password = true;
    account.password_changed_at = now;
    account.updated_at = now;
    put_account(&state, account.clone(), PutMode::Update).await?;
    state
        .propose_checked(Command::CloseWebSessionsOf {
            username: name,
            except: None,
        })
        .await?;
    let mut view = AccountView::from(&account);
    view.password = generated.then_some(password);
    Ok(Json(view))
}

/// The signed-in account itself.
#[derive(Serialize)]
pub(crate) struct Me {
    #[serde(flatten)]
    pub account: AccountView,
    pub grants: Grants,
    pub needs_totp: bool,
}

pub(crate) async fn me(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Me>, ApiError> {
    let account = load(&state, &who.username)?;
    Ok(Json(Me {
        account: AccountView::from(&account),
        grants: who.grants,
        needs_totp: who.needs_totp,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// The account changes its own password: the current one is checked (a wrong one counts toward the
/// source's ban like a failed login), the new one must pass the policy and differ, and every other
/// session of the account ends.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    who: Principal,
    client: super::ClientAddr,
    JsonBody(req): JsonBody<ChangePassword>,
) -> Result<Json<AccountView>, ApiError> {
    let mut account =
        super::auth::check_login(&state, &who.username, &req.current_password, Some(client.0))
            .await
            .map_err(|_| ApiError::invalid("current_password", "is wrong"))?;
    if req.new_password == req.current_password {
        return Err(ApiError::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    let mut names = vec![account.username.clone()];
    names.extend(account.extension.clone());
    let (password, _) = choose_password("new_password", Some(req.new_password), names).await?;
    let now = now_millis();
    account.password_hash = hash(password).await?;
    account.must_change_password = false;
    account.password_changed_at = now;
    account.updated_at = now;
    put_account(&state, account.clone(), PutMode::Update).await?;
    state
        .propose_checked(Command::CloseWebSessionsOf {
            username: account.username.clone(),
            except: who.session.map(|s| s.id),
        })
        .await?;
    Ok(Json(AccountView::from(&account)))
}

#[derive(Serialize)]
pub(crate) struct TotpEnrolment {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://` URI, for apps that import it.
    pub uri: String,
}

/// Starts (or restarts) enrolment of a TOTP second factor; it protects sign-in only once confirmed.
pub(crate) async fn start_totp(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<TotpEnrolment>, ApiError> {
    let mut account = load(&state, &who.username)?;
    if account.totp_enabled() {
        return Err(ApiError::Conflict(
            "a second factor is already set up; an admin can reset it".into(),
        ));
    }
    let mut secret = vec![0u8; totp::SECRET_LEN];
    rand::thread_rng().fill_bytes(&mut secret);
    let realm = state
        .cluster
        .reader()
        .get::<storage::model::ClusterRecord>(storage::model::ClusterRecord::KEY)?
        .map_or_else(|| "pbx".to_owned(), |c| c.realm);
    let enrolment = TotpEnrolment {
        secret: totp::base32(&secret),
        uri: totp::uri(&format!("PBX {realm}"), &account.username, &secret),
    };
    account.totp = Some(Totp {
        secret,
        confirmed: false,
        last_step: 0,
    });
    account.updated_at = now_millis();
    put_account(&state, account, PutMode::Update).await?;
    Ok(Json(enrolment))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TotpCode {
    pub code: String,
}

/// Finishes enrolment with one code from the app.
pub(crate) async fn confirm_totp(
    State(state): State<AppState>,
    who: Principal,
    client: super::ClientAddr,
    JsonBody(req): JsonBody<TotpCode>,
) -> Result<Json<AccountView>, ApiError> {
    state.cluster.linearizable_barrier().await?;
    let mut account = load(&state, &who.username)?;
    let Some(t) = account.totp.as_mut().filter(|t| !t.confirmed) else {
        return Err(ApiError::Conflict(
            "no second factor is being set up: start with POST /api/v1/account/totp".into(),
        ));
    };
    let now_secs = now_millis() / 1000;
    let Some(step) = totp::verify(&t.secret, &req.code, now_secs) else {
        state.security.auth_failed(
            client.0,
            storage::model::Service::Api,
            storage::model::Transport::Tls,
        );
        return Err(ApiError::invalid(
            "code",
            "is not the code the app shows now",
        ));
    };
    t.confirmed = true;
    t.last_step = step;
    account.updated_at = now_millis();
    put_account(&state, account.clone(), PutMode::Update).await?;
    Ok(Json(AccountView::from(&account)))
}

/// A role as the API shows it; the built-in ones are listed too, marked and unchangeable.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RoleView {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub grants: Grants,
    #[serde(default, skip_deserializing)]
    pub built_in: bool,
}

#[derive(Serialize)]
pub(crate) struct RoleList {
    pub roles: Vec<RoleView>,
}

fn built_in_roles() -> impl Iterator<Item = RoleView> {
    BUILT_IN_ROLES.into_iter().filter_map(|name| {
        Some(RoleView {
            name: name.to_owned(),
            description: match name {
                "admin" => "everything, including web accounts, roles and the cluster",
                "operator" => "monitor, hang up calls, all CDRs and recordings; no configuration",
                _ => "their own extension's CDRs and recordings",
            }
            .to_owned(),
            grants: Grants::built_in(name)?,
            built_in: true,
        })
    })
}

pub(crate) async fn list_roles(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<RoleList>, ApiError> {
    who.require_admin()?;
    let custom = state.cluster.reader().list::<WebRole>()?;
    let roles = built_in_roles()
        .chain(custom.into_iter().map(|r| RoleView {
            name: r.name,
            description: r.description,
            grants: r.grants,
            built_in: false,
        }))
        .collect();
    Ok(Json(RoleList { roles }))
}

pub(crate) async fn get_role(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    who.require_admin()?;
    if let Some(r) = built_in_roles().find(|r| r.name == name) {
        return Ok(Json(r));
    }
    let r = state
        .cluster
        .reader()
        .get::<WebRole>(&name)?
        .ok_or_else(|| ApiError::NotFound(format!("role {name:.32} does not exist")))?;
    Ok(Json(RoleView {
        name: r.name,
        description: r.description,
        grants: r.grants,
        built_in: false,
    }))
}

async fn put_role(
    state: &AppState,
    who: &Principal,
    req: RoleView,
    mode: PutMode,
) -> Result<Json<RoleView>, ApiError> {
    who.require_admin()?;
    valid_role_name("name", &req.name)?;
    if BUILT_IN_ROLES.contains(&req.name.as_str()) {
        return Err(ApiError::invalid("name", "is a built-in role"));
    }
    if req.description.len() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(
            "description",
            "must be at most 200 bytes",
        ));
    }
    if mode == PutMode::Create && state.cluster.reader().count::<WebRole>()? >= MAX_ROLES as u64 {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_ROLES} custom roles"
        )));
    }
    let now = now_millis();
    let role = WebRole {
        name: req.name.clone(),
        description: req.description.clone(),
        grants: req.grants,
        created_at: now,
        updated_at: now,
    };
    let cmd = super::audit::attach(Command::PutWebRole { role, mode }, state.cluster.reader());
    match state.cluster.propose(cmd).await? {
        storage::Response::Ok => Ok(Json(req)),
        r => Err(ApiError::refused(r, "web_roles", &req.name, &[])),
    }
}

pub(crate) async fn create_role(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<RoleView>,
) -> Result<(StatusCode, Json<RoleView>), ApiError> {
    let r = put_role(&state, &who, req, PutMode::Create).await?;
    Ok((StatusCode::CREATED, r))
}

pub(crate) async fn update_role(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<RoleView>,
) -> Result<Json<RoleView>, ApiError> {
    if req.name != name {
        return Err(ApiError::invalid("name", "must match the path"));
    }
    put_role(&state, &who, req, PutMode::Update).await
}

pub(crate) async fn delete_role(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require_admin()?;
    let cmd = super::audit::attach(
        Command::DeleteWebRole { name: name.clone() },
        state.cluster.reader(),
    );
    match state.cluster.propose(cmd).await? {
        storage::Response::Ok => Ok(StatusCode::NO_CONTENT),
        r => Err(ApiError::refused(r, "web_roles", &name, &[])),
    }
}
