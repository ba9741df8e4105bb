//! Applying the web-account, role, session and hang-up commands, with the rules that must hold in log
//! order: names refer to what exists, the last enabled admin stays, a TOTP code counts once.

use crate::codec::CodecError;
use crate::command::{Response, Txn, delete, get, put, table_name};
use crate::model::{ActiveCall, ClusterRecord, Extension, UserAccount};
use crate::routing::PutMode;
use crate::routing_apply::{conflict, not_found};
use crate::tables::{Record as _, Table};
use crate::web::{BUILT_IN_ROLES, HangupRequest, WebAccount, WebRole, WebSession};

/// The account named `username`, wherever it is stored.
pub(crate) fn account(txn: &dyn Txn, username: &str) -> Result<Option<WebAccount>, CodecError> {
    if let Some(a) = get::<WebAccount>(txn, username)? {
        return Ok(Some(a));
    }
    Ok(get::<UserAccount>(txn, username)?.map(WebAccount::from_legacy))
}

fn all_accounts(txn: &dyn Txn) -> Result<Vec<WebAccount>, CodecError> {
    let mut out = Vec::new();
    for key in txn.keys_with_prefix(Table::WebAccounts, "") {
        out.extend(get::<WebAccount>(txn, &key)?);
    }
    for key in txn.keys_with_prefix(Table::Users, "") {
        if txn.get(Table::WebAccounts, &key).is_none() {
            out.extend(get::<UserAccount>(txn, &key)?.map(WebAccount::from_legacy));
        }
    }
    Ok(out)
}

fn is_enabled_admin(a: &WebAccount) -> bool {
    a.role == "admin" && !a.disabled
}

/// Whether an enabled admin other than `username` exists.
fn other_admin(txn: &dyn Txn, username: &str) -> Result<bool, CodecError> {
    Ok(all_accounts(txn)?
        .iter()
        .any(|a| a.username != username && is_enabled_admin(a)))
}

/// The refusal that keeps the cluster from losing its last admin.
fn last_admin(username: &str) -> Response {
    Response::Conflict {
        table: "last_admin".to_owned(),
        key: username.to_owned(),
    }
}

pub(crate) fn put_account(
    txn: &mut dyn Txn,
    account: &WebAccount,
    mode: PutMode,
) -> Result<Response, CodecError> {
    let name = &account.username;
    let old = self::account(txn, name)?;
    match (mode, &old) {
        (PutMode::Create, Some(_)) => return Ok(conflict(Table::WebAccounts, name)),
        (PutMode::Update, None) => return Ok(not_found(Table::WebAccounts, name)),
        _ => {}
    }
    if !BUILT_IN_ROLES.contains(&account.role.as_str())
        && txn.get(Table::WebRoles, &account.role).is_none()
    {
        return Ok(not_found(Table::WebRoles, &account.role));
    }
    if let Some(ext) = &account.extension
        && txn.get(Extension::TABLE, ext).is_none()
    {
        return Ok(not_found(Table::Extensions, ext));
    }
    if old.as_ref().is_some_and(is_enabled_admin)
        && !is_enabled_admin(account)
        && !other_admin(txn, name)?
    {
        return Ok(last_admin(name));
    }
    txn.delete(Table::Users, name);
    put(txn, account)
}

pub(crate) fn delete_account(txn: &mut dyn Txn, username: &str) -> Result<Response, CodecError> {
    let Some(old) = account(txn, username)? else {
        return Ok(not_found(Table::WebAccounts, username));
    };
    if is_enabled_admin(&old) && !other_admin(txn, username)? {
        return Ok(last_admin(username));
    }
    txn.delete(Table::Users, username);
    txn.delete(Table::WebAccounts, username);
    close_sessions_of(txn, username, None)?;
    Ok(Response::Ok)
}

pub(crate) fn put_role(
    txn: &mut dyn Txn,
    role: &WebRole,
    mode: PutMode,
) -> Result<Response, CodecError> {
    if BUILT_IN_ROLES.contains(&role.name.as_str()) {
        return Ok(conflict(Table::WebRoles, &role.name));
    }
    let exists = txn.get(Table::WebRoles, &role.name).is_some();
    match (mode, exists) {
        (PutMode::Create, true) => Ok(conflict(Table::WebRoles, &role.name)),
        (PutMode::Update, false) => Ok(not_found(Table::WebRoles, &role.name)),
        _ => put(txn, role),
    }
}

pub(crate) fn delete_role(txn: &mut dyn Txn, name: &str) -> Result<Response, CodecError> {
    if txn.get(Table::WebRoles, name).is_none() {
        return Ok(not_found(Table::WebRoles, name));
    }
    if let Some(user) = all_accounts(txn)?.into_iter().find(|a| a.role == name) {
        return Ok(conflict(Table::WebAccounts, &user.username));
    }
    Ok(delete(txn, Table::WebRoles, name, true))
}

/// Opens a session for an enabled account. `totp_step`: the time step of the code the user gave,
/// accepted only once (RFC 6238 §5.2).
pub(crate) fn open_session(
    txn: &mut dyn Txn,
    session: &WebSession,
    totp_step: Option<u64>,
) -> Result<Response, CodecError> {
    let Some(mut acct) = account(txn, &session.username)?.filter(|a| !a.disabled) else {
        return Ok(not_found(Table::WebAccounts, &session.username));
    };
    if txn.get(Table::WebSessions, &session.id).is_some() {
        return Ok(conflict(Table::WebSessions, &session.id));
    }
    if let Some(step) = totp_step {
        let Some(totp) = acct.totp.as_mut() else {
            return Ok(not_found(Table::WebAccounts, &session.username));
        };
        if step <= totp.last_step {
            return Ok(Response::Conflict {
                table: "totp_code".to_owned(),
                key: session.username.clone(),
            });
        }
        totp.last_step = step;
        txn.delete(Table::Users, &acct.username);
        put(txn, &acct)?;
    }
    put(txn, session)
}

/// Ends every session of `username` but `except`.
pub(crate) fn close_sessions_of(
    txn: &mut dyn Txn,
    username: &str,
    except: Option<&str>,
) -> Result<Response, CodecError> {
    for key in txn.keys_with_prefix(Table::WebSessions, "") {
        if Some(key.as_str()) == except {
            continue;
        }
        if get::<WebSession>(txn, &key)?.is_some_and(|s| s.username == username) {
            txn.delete(Table::WebSessions, &key);
        }
    }
    Ok(Response::Ok)
}

pub(crate) fn prune_sessions(txn: &mut dyn Txn, now: u64) -> Result<Response, CodecError> {
    for key in txn.keys_with_prefix(Table::WebSessions, "") {
        if get::<WebSession>(txn, &key)?.is_none_or(|s| s.expires_at <= now) {
            txn.delete(Table::WebSessions, &key);
        }
    }
    Ok(Response::Ok)
}

pub(crate) fn request_hangup(txn: &mut dyn Txn, r: &HangupRequest) -> Result<Response, CodecError> {
    if txn.get(ActiveCall::TABLE, &r.call_id).is_none() {
        return Ok(Response::NotFound {
            table: table_name(Table::Calls),
            key: r.call_id.clone(),
        });
    }
    put(txn, r)
}

pub(crate) fn set_realm(txn: &mut dyn Txn, realm: &str) -> Result<Response, CodecError> {
    if let Some(ext) = txn
        .keys_with_prefix(Table::Extensions, "")
        .into_iter()
        .next()
    {
        return Ok(conflict(Table::Extensions, &ext));
    }
    let Some(mut rec) = get::<ClusterRecord>(txn, ClusterRecord::KEY)? else {
        return Ok(not_found(Table::Cluster, ClusterRecord::KEY));
    };
    rec.realm = realm.to_owned();
    put(txn, &rec)
}

#[cfg(test)]
mod tests;
