//! Contacts: the company phonebook (`/api/v1/contacts`) and each extension's personal book
//! (`/api/v1/extensions/{number}/contacts`), with search and paging, CSV import and export, and the
//! remote phonebooks phones fetch (`/phonebook/{brand}.xml`).
//!
//! Who may do what: every signed-in account reads the company book; accounts with the
//! `extensions` grant (admins) change it. A personal book is its extension's user's (the account
//! whose extension it is) and the admins'.
//!
//! A list is sorted by name (case-insensitive) and paged with `offset` and `limit` (default 100, at
//! most 1,000); `q` keeps the contacts whose name or company contains it (case-insensitive) or, when
//! it is a number, one of whose numbers contains it. The answer carries the `total` that matched.
//!
//! Import (`POST …/import`, `Content-Type: text/csv`, at most 5 MiB and 20,000 rows): a header row
//! naming the columns (`name,company,work,mobile,home,other,email`, any order, `name` required),
//! one contact per row; a number column may hold several numbers separated by `;`. Each good row
//! becomes a new contact; each bad row is reported as `{row, field, message}` (the row as a
//! spreadsheet numbers it: the header is row 1; `field` is null when the row as a whole is wrong,
//! such as too many columns) and imports nothing. Good rows are imported even when others are bad:
//! the report says which to fix and re-import. Importing adds to the book; it never replaces it.
//! Export (`GET …/export`) writes the same columns, so an export imports again as it was.
//!
//! The remote phonebook authenticates the phone with HTTP Basic: the extension's number and SIP
//! secret (checked against its stored digest HA1, so the secret is never stored). A wrong secret, an
//! unknown or disabled extension all get the same 401, and count toward the source address's ban
//! like a failed sign-in. The answer lists that extension's personal book, then the company book,
//! each sorted by name, at most [`PHONEBOOK_MAX`] contacts in all.

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use storage::contacts::{
    Book, Contact, ContactNumber, MAX_NUMBERS, MAX_PER_COMMAND, NumberKind, check_email,
    check_text, normalize_number,
};
use storage::model::{Extension, Service, Transport, UnixMillis};
use storage::{Command, Record as _};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::extensions::validate_number;
use super::guard::ClientAddr;
use super::json::JsonBody;
use super::paging::ListQuery;
use crate::time::now_millis;

/// Largest CSV import body.
pub(crate) const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;
/// Rows one import may hold (after the header).
pub(crate) const MAX_IMPORT_ROWS: usize = 20_000;
/// Contacts a remote phonebook lists at most.
pub(crate) const PHONEBOOK_MAX: usize = 5_000;
/// A list's page size when `limit` is absent, and the largest it may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Longest search text, in characters.
const MAX_QUERY_CHARS: usize = 100;
/// The CSV columns, in the order an export writes them.
pub(crate) const CSV_COLUMNS: [&str; 7] = [
    "name", "company", "work", "mobile", "home", "other", "email",
];
/// Longest user name and password looked at in a phone's Basic credentials.
const MAX_PHONE_USER: usize = 64;
const MAX_PHONE_SECRET: usize = 256;

/// A number as requests and answers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NumberView {
    pub kind: NumberKind,
    pub number: String,
}

/// A contact as POST and PUT take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactBody {
    pub name: String,
    #[serde(default)]
    pub company: Option<String>,
    pub numbers: Vec<NumberView>,
    #[serde(default)]
    pub email: Option<String>,
}

/// A contact as answers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContactView {
    pub id: String,
    pub name: String,
    pub company: String,
    pub numbers: Vec<NumberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        Self {
            id: c.id,
            name: c.name,
            company: c.company,
            numbers: c
                .numbers
                .into_iter()
                .map(|n| NumberView {
                    kind: n.kind,
                    number: n.number,
                })
                .collect(),
            email: c.email,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// One page of a book.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ContactList {
    pub items: Vec<ContactView>,
    /// Contacts that matched `q` (all of the book without it).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactQuery {
    #[serde(default)]
    pub q: Option<String>,
    /// Text, so that a bad one gets its own message.
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub offset: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ImportReport {
    pub created: usize,
    pub errors: Vec<RowError>,
}

/// Why one row of an import was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RowError {
    /// The row as a spreadsheet numbers it: the header is row 1.
    pub row: u64,
    /// The column at fault; `None` when it is the row as a whole.
    pub field: Option<String>,
    pub message: String,
}

/// Whether `who` may read `book`.
fn may_read(who: &Principal, book: &Book) -> bool {
    match book {
        Book::Company => true,
        Book::Personal { .. } => may_write(who, book),
    }
}

/// Whether `who` may change `book`.
fn may_write(who: &Principal, book: &Book) -> bool {
    match book {
        Book::Company => who.grants.extensions,
        Book::Personal { extension } => {
            who.grants.extensions || who.extension.as_deref() == Some(extension.as_str())
        }
    }
}

fn personal(number: String) -> Result<Book, ApiError> {
    validate_number(&number)?;
    Ok(Book::Personal { extension: number })
}

/// Checks access to `book` and, for a personal book, that its extension exists.
async fn open(state: &AppState, who: &Principal, book: &Book, write: bool) -> Result<(), ApiError> {
    let allowed = if write {
        may_write(who, book)
    } else {
        may_read(who, book)
    };
    who.require(allowed)?;
    state.cluster.linearizable_barrier().await?;
    if let Book::Personal { extension } = book
        && state
            .cluster
            .reader()
            .get::<Extension>(extension)?
            .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "extension {extension} does not exist"
        )));
    }
    Ok(())
}

/// Every contact of `book`, sorted by name (case-insensitive), then id.
pub(crate) fn read_book(state: &AppState, book: &Book) -> Result<Vec<Contact>, ApiError> {
    let mut all = state
        .cluster
        .reader()
        .scan_prefix::<Contact>(&book.prefix())?;
    sort(&mut all);
    Ok(all)
}

fn sort(contacts: &mut [Contact]) {
    contacts.sort_by_cached_key(|c| (c.name.to_lowercase(), c.id.clone()));
}

/// Whether `c` matches the search `q` (lowercased), `digits` being `q` as a number, if it is one.
fn matches(c: &Contact, q: &str, digits: Option<&str>) -> bool {
    c.name.to_lowercase().contains(q)
        || c.company.to_lowercase().contains(q)
        || digits.is_some_and(|d| c.numbers.iter().any(|n| n.number.contains(d)))
}

/// The page `q` asks for of `contacts` (already sorted).
pub(crate) fn page(contacts: Vec<Contact>, q: &ContactQuery) -> Result<ContactList, ApiError> {
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", format!("1 to {MAX_LIMIT}")))?,
    };
    let offset = match q.offset.as_deref() {
        None => 0,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= storage::contacts::MAX_COMPANY)
            .ok_or_else(|| {
                ApiError::invalid("offset", format!("0 to {}", storage::contacts::MAX_COMPANY))
            })?,
    };
    let text = q.q.as_deref().map(str::trim).unwrap_or_default();
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(
            "q",
            format!("at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let needle = text.to_lowercase();
    let digits = normalize_number(text).ok();
    let found: Vec<Contact> = if needle.is_empty() {
        contacts
    } else {
        contacts
            .into_iter()
            .filter(|c| matches(c, &needle, digits.as_deref()))
            .collect()
    };
    let total = found.len();
    let items = found
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(Into::into)
        .collect();
    Ok(ContactList {
        items,
        total,
        offset,
        limit,
    })
}

/// The contact `body` describes, in `book`, checked; the error names the field.
fn from_body(
    book: Book,
    id: String,
    body: ContactBody,
    created_at: UnixMillis,
    now: UnixMillis,
) -> Result<Contact, ApiError> {
    check_text(&body.name, true).map_err(|r| ApiError::invalid("name", r))?;
    let company = body.company.unwrap_or_default();
    check_text(&company, false).map_err(|r| ApiError::invalid("company", r))?;
    if body.numbers.is_empty() || body.numbers.len() > MAX_NUMBERS {
        return Err(ApiError::invalid(
            "numbers",
            format!("1 to {MAX_NUMBERS} numbers"),
        ));
    }
    let mut numbers = Vec::with_capacity(body.numbers.len());
    for (i, n) in body.numbers.into_iter().enumerate() {
        let number = normalize_number(&n.number)
            .map_err(|r| ApiError::invalid(format!("numbers.{i}"), r))?;
        numbers.push(ContactNumber {
            kind: n.kind,
            number,
        });
    }
    let email = body
        .email
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty());
    if let Some(e) = &email {
        check_email(e).map_err(|r| ApiError::invalid("email", r))?;
    }
    Ok(Contact {
        book,
        id,
        name: body.name.trim().to_owned(),
        company: company.trim().to_owned(),
        numbers,
        email,
        created_at,
        updated_at: now,
    })
}

fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if Contact::valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("contact {id} does not exist")))
    }
}

async fn put_one(state: &AppState, contact: Contact) -> Result<(), ApiError> {
    state
        .propose_checked(Command::PutContacts(vec![contact]))
        .await
}

async fn list_book(
    state: AppState,
    who: Principal,
    book: Book,
    q: ContactQuery,
) -> Result<Json<ContactList>, ApiError> {
    open(&state, &who, &book, false).await?;
    let all = read_book(&state, &book)?;
    Ok(Json(page(all, &q)?))
}

async fn create_in(
    state: AppState,
    who: Principal,
    book: Book,
    body: ContactBody,
) -> Result<(StatusCode, Json<ContactView>), ApiError> {
    open(&state, &who, &book, true).await?;
    let now = now_millis();
    let contact = from_body(book, new_id(), body, now, now)?;
    let held = state
        .cluster
        .reader()
        .scan_prefix::<Contact>(&contact.book.prefix())?
        .len();
    if held >= contact.book.capacity() {
        return Err(ApiError::Conflict(format!(
            "the book holds at most {} contacts",
            contact.book.capacity()
        )));
    }
    put_one(&state, contact.clone()).await?;
    tracing::info!(contact = %contact.key(), "contact created");
    Ok((StatusCode::CREATED, Json(contact.into())))
}

fn read_one(state: &AppState, book: &Book, id: &str) -> Result<Contact, ApiError> {
    check_id(id)?;
    state
        .cluster
        .reader()
        .get::<Contact>(&Contact::key_for(book, id))?
        .ok_or_else(|| ApiError::NotFound(format!("contact {id} does not exist")))
}

async fn get_in(
    state: AppState,
    who: Principal,
    book: Book,
    id: String,
) -> Result<Json<ContactView>, ApiError> {
    open(&state, &who, &book, false).await?;
    Ok(Json(read_one(&state, &book, &id)?.into()))
}

async fn update_in(
    state: AppState,
    who: Principal,
    book: Book,
    id: String,
    body: ContactBody,
) -> Result<Json<ContactView>, ApiError> {
    open(&state, &who, &book, true).await?;
    let stored = read_one(&state, &book, &id)?;
    let contact = from_body(book, id, body, stored.created_at, now_millis())?;
    put_one(&state, contact.clone()).await?;
    tracing::info!(contact = %contact.key(), "contact updated");
    Ok(Json(contact.into()))
}

async fn delete_in(
    state: AppState,
    who: Principal,
    book: Book,
    id: String,
) -> Result<StatusCode, ApiError> {
    open(&state, &who, &book, true).await?;
    check_id(&id)?;
    let key = Contact::key_for(&book, &id);
    state
        .propose_checked(Command::DeleteContact { key: key.clone() })
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound(format!("contact {id} does not exist")),
            other => other,
        })?;
    tracing::info!(contact = %key, "contact deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A request body bounded by [`MAX_IMPORT_BYTES`] and typed `text/csv`.
fn csv_body(
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/csv") {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: text/csv".into(),
        ));
    }
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: MAX_IMPORT_BYTES,
            }
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })
}

/// A text field as imported: trimmed, and a leading `'` the export put before a character a
/// spreadsheet reads as a formula taken off again.
fn undefuse(value: &str) -> &str {
    match value.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => value,
    }
}

/// The good rows of an import (each with its row number) and the errors of the bad ones.
pub(crate) type ImportRows = (Vec<(u64, Contact)>, Vec<RowError>);

/// The rows of a CSV import checked: the contacts of the good ones (each with its row) and an error
/// for each bad one. A malformed header or too many rows refuses the whole file.
pub(crate) fn parse_import(
    body: &[u8],
    book: &Book,
    now: UnixMillis,
    mut id: impl FnMut() -> String,
) -> Result<ImportRows, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("CSV header: {e}")))?
        .clone();
    let mut columns: Vec<&str> = Vec::with_capacity(header.len());
    for h in &header {
        let h = h.trim_start_matches('\u{feff}');
        let Some(&known) = CSV_COLUMNS.iter().find(|c| c.eq_ignore_ascii_case(h)) else {
            return Err(ApiError::BadRequest(format!(
                "CSV header: unknown column {:?}; the columns are {}",
                h.chars().take(40).collect::<String>(),
                CSV_COLUMNS.join(",")
            )));
        };
        if columns.contains(&known) {
            return Err(ApiError::BadRequest(format!(
                "CSV header: column {known} given twice"
            )));
        }
        columns.push(known);
    }
    if !columns.contains(&"name") {
        return Err(ApiError::BadRequest(format!(
            "CSV header must name the columns ({}), with at least name",
            CSV_COLUMNS.join(",")
        )));
    }
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, record) in reader.records().enumerate() {
        if i >= MAX_IMPORT_ROWS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_IMPORT_ROWS} rows per import"
            )));
        }
        let row = i as u64 + 2;
        let fail = |field: Option<&str>, message: String| RowError {
            row,
            field: field.map(str::to_owned),
            message,
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push(fail(None, format!("unreadable row: {e}")));
                continue;
            }
        };
        if record.len() > columns.len() {
            bad.push(fail(
                None,
                format!("{} columns, the header has {}", record.len(), columns.len()),
            ));
            continue;
        }
        match import_row(&columns, &record, book, now, &mut id) {
            Ok(c) => good.push((row, c)),
            Err((field, message)) => bad.push(fail(field, message)),
        }
    }
    Ok((good, bad))
}

type RowProblem = (Option<&'static str>, String);

fn import_row(
    columns: &[&'static str],
    record: &csv::StringRecord,
    book: &Book,
    now: UnixMillis,
    id: &mut impl FnMut() -> String,
) -> Result<Contact, RowProblem> {
    let cell = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .and_then(|i| record.get(i))
            .map(str::trim)
            .unwrap_or_default()
    };
    let name = undefuse(cell("name"));
    check_text(name, true).map_err(|r| (Some("name"), r))?;
    let company = undefuse(cell("company"));
    check_text(company, false).map_err(|r| (Some("company"), r))?;
    let mut numbers = Vec::new();
    for kind in NumberKind::ALL {
        for raw in cell(kind.as_str())
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let number = normalize_number(raw).map_err(|r| (Some(kind.as_str()), r))?;
            numbers.push(ContactNumber { kind, number });
        }
    }
    if numbers.is_empty() {
        return Err((
            Some("numbers"),
            "at least one number (work, mobile, home or other)".into(),
        ));
    }
    if numbers.len() > MAX_NUMBERS {
        return Err((Some("numbers"), format!("at most {MAX_NUMBERS} numbers")));
    }
    let email = undefuse(cell("email"));
    let email = if email.is_empty() {
        None
    } else {
        check_email(email).map_err(|r| (Some("email"), r))?;
        Some(email.to_owned())
    };
    Ok(Contact {
        book: book.clone(),
        id: id(),
        name: name.to_owned(),
        company: company.to_owned(),
        numbers,
        email,
        created_at: now,
        updated_at: now,
    })
}

async fn import_into(
    state: AppState,
    who: Principal,
    book: Book,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    open(&state, &who, &book, true).await?;
    let body = csv_body(&headers, body)?;
    let started = std::time::Instant::now();
    let parse_book = book.clone();
    let now = now_millis();
    let (rows, mut errors) =
        tokio::task::spawn_blocking(move || parse_import(&body, &parse_book, now, new_id))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    let counting = state.clone();
    let prefix = book.prefix();
    let held = tokio::task::spawn_blocking(move || {
        counting
            .cluster
            .reader()
            .scan_prefix::<Contact>(&prefix)
            .map(|all| all.len())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if held + rows.len() > book.capacity() {
        return Err(ApiError::BadRequest(format!(
            "the book holds at most {} contacts: it has {held}, the file adds {}",
            book.capacity(),
            rows.len()
        )));
    }
    let mut created = 0;
    for chunk in rows.chunks(MAX_PER_COMMAND) {
        let cmd = Command::PutContacts(chunk.iter().map(|(_, c)| c.clone()).collect());
        match state.propose_checked(cmd).await {
            Ok(()) => created += chunk.len(),
            // A refusal (the book filled up meanwhile) is reported on each of the chunk's rows.
            Err(e @ (ApiError::BadRequest(_) | ApiError::NotFound(_) | ApiError::Conflict(_))) => {
                let message = e.to_string();
                errors.extend(chunk.iter().map(|(row, _)| RowError {
                    row: *row,
                    field: None,
                    message: message.clone(),
                }));
            }
            Err(e) => return Err(e),
        }
    }
    errors.sort_by_key(|e| e.row);
    metrics::counter!("pbx_contacts_imported_total").increment(created as u64);
    tracing::info!(
        book = %book.prefix(),
        created,
        refused = errors.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "contacts imported"
    );
    Ok(Json(ImportReport { created, errors }))
}

/// A field a spreadsheet would read as a formula gets a leading `'`, as the CDR export does.
fn defuse(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// The book as CSV ([`CSV_COLUMNS`]); numbers of one kind joined with `; `. Numbers are written as
/// they are (digits and a leading `+`, nothing a spreadsheet runs); text fields are defused.
pub(crate) fn to_csv(contacts: &[Contact]) -> Result<String, ApiError> {
    let failed = |e: csv::Error| ApiError::Internal(format!("writing CSV: {e}"));
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::with_capacity(64 + contacts.len() * 96));
    w.write_record(CSV_COLUMNS).map_err(failed)?;
    for c in contacts {
        let of_kind = |kind: NumberKind| {
            c.numbers
                .iter()
                .filter(|n| n.kind == kind)
                .map(|n| n.number.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let row = [
            defuse(&c.name).into_owned(),
            defuse(&c.company).into_owned(),
            of_kind(NumberKind::Work),
            of_kind(NumberKind::Mobile),
            of_kind(NumberKind::Home),
            of_kind(NumberKind::Other),
            defuse(c.email.as_deref().unwrap_or_default()).into_owned(),
        ];
        w.write_record(&row).map_err(failed)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("writing CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(format!("writing CSV: {e}")))
}

async fn export_from(state: AppState, who: Principal, book: Book) -> Result<Response, ApiError> {
    open(&state, &who, &book, false).await?;
    // Ten thousand contacts decoded, sorted and written: kept off the async workers.
    let reading = state.clone();
    let read = book.clone();
    let text = tokio::task::spawn_blocking(move || to_csv(&read_book(&reading, &read)?))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let name = match &book {
        Book::Company => "contacts.csv".to_owned(),
        Book::Personal { extension } => format!("contacts-{extension}.csv"),
    };
    let mut resp = text.into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    h.insert(CONTENT_DISPOSITION, disposition);
    Ok(resp)
}

// ---- Handlers: the company book -------------------------------------------------------------

pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<ContactQuery>,
) -> Result<Json<ContactList>, ApiError> {
    list_book(state, who, Book::Company, q).await
}

pub(crate) async fn create(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<ContactBody>,
) -> Result<(StatusCode, Json<ContactView>), ApiError> {
    create_in(state, who, Book::Company, body).await
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<ContactView>, ApiError> {
    get_in(state, who, Book::Company, id).await
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ContactBody>,
) -> Result<Json<ContactView>, ApiError> {
    update_in(state, who, Book::Company, id, body).await
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_in(state, who, Book::Company, id).await
}

pub(crate) async fn import(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    import_into(state, who, Book::Company, headers, body).await
}

pub(crate) async fn export(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Response, ApiError> {
    export_from(state, who, Book::Company).await
}

// ---- Handlers: an extension's personal book -------------------------------------------------

pub(crate) async fn list_personal(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    ListQuery(q): ListQuery<ContactQuery>,
) -> Result<Json<ContactList>, ApiError> {
    list_book(state, who, personal(number)?, q).await
}

pub(crate) async fn create_personal(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<ContactBody>,
) -> Result<(StatusCode, Json<ContactView>), ApiError> {
    create_in(state, who, personal(number)?, body).await
}

pub(crate) async fn get_personal(
    State(state): State<AppState>,
    who: Principal,
    Path((number, id)): Path<(String, String)>,
) -> Result<Json<ContactView>, ApiError> {
    get_in(state, who, personal(number)?, id).await
}

pub(crate) async fn update_personal(
    State(state): State<AppState>,
    who: Principal,
    Path((number, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ContactBody>,
) -> Result<Json<ContactView>, ApiError> {
    update_in(state, who, personal(number)?, id, body).await
}

pub(crate) async fn delete_personal(
    State(state): State<AppState>,
    who: Principal,
    Path((number, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_in(state, who, personal(number)?, id).await
}

pub(crate) async fn import_personal(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    import_into(state, who, personal(number)?, headers, body).await
}

pub(crate) async fn export_personal(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Response, ApiError> {
    export_from(state, who, personal(number)?).await
}

// ---- The phones' remote phonebook -----------------------------------------------------------

/// The phone brands whose remote phonebook format is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Brand {
    Yealink,
    Snom,
    Grandstream,
    Fanvil,
    Polycom,
}

impl Brand {
    pub(crate) const ALL: [Self; 5] = [
        Self::Yealink,
        Self::Snom,
        Self::Grandstream,
        Self::Fanvil,
        Self::Polycom,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Yealink => "yealink",
            Self::Snom => "snom",
            Self::Grandstream => "grandstream",
            Self::Fanvil => "fanvil",
            Self::Polycom => "polycom",
        }
    }

    /// The brand of a file name, `yealink.xml`.
    fn of_file(file: &str) -> Option<Self> {
        let brand = file.strip_suffix(".xml")?;
        Self::ALL.into_iter().find(|b| b.as_str() == brand)
    }
}

/// XML text: `&`, `<`, `>`, `"` and `'` escaped; characters XML 1.0 cannot hold dropped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A number's kind as the phones label it.
fn label(kind: NumberKind) -> &'static str {
    match kind {
        NumberKind::Work => "Work",
        NumberKind::Mobile => "Mobile",
        NumberKind::Home => "Home",
        NumberKind::Other => "Other",
    }
}

/// The phonebook document of `brand` listing `contacts`, in order.
pub(crate) fn phonebook_xml(brand: Brand, contacts: &[Contact]) -> String {
    let mut x = String::with_capacity(128 + contacts.len() * 160);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // Writing to a String cannot fail.
    let w = &mut x;
    match brand {
        Brand::Yealink | Brand::Fanvil => {
            let root = match brand {
                Brand::Yealink => "YealinkIPPhoneDirectory",
                _ => "FanvilIPPhoneDirectory",
            };
            let _ = writeln!(w, "<{root}>");
            for c in contacts {
                let _ = write!(w, "<DirectoryEntry><Name>{}</Name>", esc(&c.name));
                for n in &c.numbers {
                    let _ = write!(
                        w,
                        "<Telephone label=\"{}\">{}</Telephone>",
                        label(n.kind),
                        esc(&n.number)
                    );
                }
                let _ = writeln!(w, "</DirectoryEntry>");
            }
            let _ = writeln!(w, "</{root}>");
        }
        Brand::Snom => {
            // One number per entry: a contact with several is listed once per number.
            let _ = writeln!(w, "<SnomIPPhoneDirectory>");
            let _ = writeln!(w, "<Title>Phonebook</Title><Prompt>Dial</Prompt>");
            for c in contacts {
                for n in &c.numbers {
                    let name = if c.numbers.len() > 1 {
                        format!("{} ({})", c.name, n.kind.as_str())
                    } else {
                        c.name.clone()
                    };
                    let _ = writeln!(
                        w,
                        "<DirectoryEntry><Name>{}</Name><Telephone>{}</Telephone></DirectoryEntry>",
                        esc(&name),
                        esc(&n.number)
                    );
                }
            }
            let _ = writeln!(w, "</SnomIPPhoneDirectory>");
        }
        Brand::Grandstream => {
            let _ = writeln!(w, "<AddressBook>");
            for c in contacts {
                let _ = write!(
                    w,
                    "<Contact><FirstName>{}</FirstName><LastName></LastName>",
                    esc(&c.name)
                );
                if !c.company.is_empty() {
                    let _ = write!(w, "<Company>{}</Company>", esc(&c.company));
                }
                for n in &c.numbers {
                    let _ = write!(
                        w,
                        "<Phone type=\"{}\"><phonenumber>{}</phonenumber><accountindex>0</accountindex></Phone>",
                        label(n.kind),
                        esc(&n.number)
                    );
                }
                if let Some(e) = &c.email {
                    let _ = write!(w, "<Mail type=\"Work\">{}</Mail>", esc(e));
                }
                let _ = writeln!(w, "</Contact>");
            }
            let _ = writeln!(w, "</AddressBook>");
        }
        Brand::Polycom => {
            // `ct` holds one number: a contact with several is listed once per number.
            let _ = writeln!(w, "<directory>\n<item_list>");
            for c in contacts {
                for n in &c.numbers {
                    let _ = writeln!(
                        w,
                        "<item><fn>{}</fn><ln>{}</ln><ct>{}</ct></item>",
                        esc(&c.name),
                        esc(label(n.kind)),
                        esc(&n.number)
                    );
                }
            }
            let _ = writeln!(w, "</item_list>\n</directory>");
        }
    }
    x
}

/// The user and password of a Basic `Authorization` header, bounded.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let h = headers.get(AUTHORIZATION)?.to_str().ok()?;
    if h.len() > 4 * (MAX_PHONE_USER + MAX_PHONE_SECRET) {
        return None;
    }
    let b64 = h.strip_prefix("Basic ")?;
    let text = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (user, password) = text.split_once(':')?;
    (user.len() <= MAX_PHONE_USER && password.len() <= MAX_PHONE_SECRET)
        .then(|| (user.to_owned(), password.to_owned()))
}

/// The extension whose SIP credentials these are: enabled, and the password its secret.
pub(crate) fn phone_extension(
    state: &AppState,
    user: &str,
    password: &str,
) -> Result<Option<Extension>, ApiError> {
    let found = if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        state.cluster.reader().get::<Extension>(user)?
    };
    // The digest is computed for an unknown user too: the answer takes the same time.
    let realm = found.as_ref().map_or("", |e| e.credentials.realm.as_str());
    let ha1 = hex::encode(Md5::digest(format!("{user}:{realm}:{password}").as_bytes()));
    let expected = found
        .as_ref()
        .map_or_else(|| "0".repeat(32), |e| e.credentials.ha1_md5.clone());
    let same = bool::from(ha1.as_bytes().ct_eq(expected.as_bytes()));
    Ok(found.filter(|e| same && e.enabled && e.credentials.username == user))
}

/// `GET /phonebook/{brand}.xml`: the remote phonebook of the phone whose SIP credentials the
/// request carries.
pub(crate) async fn phonebook(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let Some(brand) = Brand::of_file(&file) else {
        return Err(ApiError::NotFound(format!(
            "no phonebook {:?}: one of {}",
            file.chars().take(40).collect::<String>(),
            Brand::ALL.map(|b| format!("{}.xml", b.as_str())).join(", ")
        )));
    };
    let ext = match basic_credentials(&headers) {
        Some((user, password)) => phone_extension(&state, &user, &password)?,
        None => None,
    };
    let Some(ext) = ext else {
        if headers.contains_key(AUTHORIZATION) {
            metrics::counter!("pbx_phonebook_auth_failures_total").increment(1);
            tracing::info!(source = %ip, brand = brand.as_str(), "phonebook: authentication failed");
            state.security.auth_failed(ip, Service::Api, Transport::Tls);
        }
        return Err(ApiError::Unauthorized);
    };
    let started = std::time::Instant::now();
    let mine = Book::Personal {
        extension: ext.number.clone(),
    };
    let mut contacts = read_book(&state, &mine)?;
    contacts.truncate(PHONEBOOK_MAX);
    let room = PHONEBOOK_MAX - contacts.len();
    contacts.extend(read_book(&state, &Book::Company)?.into_iter().take(room));
    let body = phonebook_xml(brand, &contacts);
    metrics::counter!("pbx_phonebook_requests_total", "brand" => brand.as_str()).increment(1);
    tracing::debug!(
        extension = %ext.number,
        brand = brand.as_str(),
        contacts = contacts.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "phonebook served"
    );
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    Ok(resp)
}

/// Building answers by hand, for the portal's tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{NumberKind, NumberView};

    pub(crate) fn number(kind: NumberKind, number: &str) -> NumberView {
        NumberView {
            kind,
            number: number.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
