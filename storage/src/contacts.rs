//! Contacts: the company phonebook every user and phone sees, and each extension's personal book.
//!
//! A contact is keyed by its book and a random id: `company/{id}` or `personal/{extension}/{id}`,
//! so each book is one prefix scan. The index [`NumberEntry`] (`{number}/{contact key}`, in
//! [`Table::ContactsByNumber`]) carries the contact's name, so caller-ID lookup by number is a
//! single seek; it is written and removed in the same command as the contact.
//!
//! Numbers are stored normalised: digits with an optional leading `+`, separators (spaces, `-`,
//! `.`, `/`, parentheses) stripped ([`normalize_number`]).

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::{Response, Txn, get, put, table_name};
use crate::model::{Extension, UnixMillis};
use crate::routing_apply::invalid;
use crate::tables::{Record, Table};
use crate::{StateReader, StorageError};

/// Longest name and company, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest e-mail address, in bytes.
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest number as written (separators included), in characters.
pub const MAX_NUMBER_LEN: usize = 32;
/// Numbers a contact has at most (and at least one).
pub const MAX_NUMBERS: usize = 5;
/// Contacts one command puts at most (an import is proposed in chunks of this size: a 10,000-row
/// import is ten Raft entries of a few hundred kilobytes each).
pub const MAX_PER_COMMAND: usize = 1000;
/// Contacts the company book holds at most.
pub const MAX_COMPANY: usize = 50_000;
/// Contacts one personal book holds at most.
pub const MAX_PERSONAL: usize = 2_000;
/// Length of a contact's id: lowercase hex.
pub const ID_LEN: usize = 16;

/// Which book a contact is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Book {
    Company,
    /// An extension's own contacts.
    Personal {
        extension: String,
    },
}

impl Book {
    /// Every contact of the book has this key prefix.
    pub fn prefix(&self) -> String {
        match self {
            Self::Company => "company/".to_owned(),
            Self::Personal { extension } => format!("personal/{extension}/"),
        }
    }

    /// How many contacts the book may hold.
    pub fn capacity(&self) -> usize {
        match self {
            Self::Company => MAX_COMPANY,
            Self::Personal { .. } => MAX_PERSONAL,
        }
    }
}

/// What a number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberKind {
    Work,
    Mobile,
    Home,
    Other,
}

impl NumberKind {
    pub const ALL: [Self; 4] = [Self::Work, Self::Mobile, Self::Home, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Work => "work",
            Self::Mobile => "mobile",
            Self::Home => "home",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One of a contact's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactNumber {
    pub kind: NumberKind,
    /// Normalised ([`normalize_number`]).
    pub number: String,
}

/// A phonebook entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub book: Book,
    /// [`ID_LEN`] lowercase hex digits, unique within the book.
    pub id: String,
    pub name: String,
    /// Empty when none.
    pub company: String,
    pub numbers: Vec<ContactNumber>,
    pub email: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Contact {
    pub fn key_for(book: &Book, id: &str) -> String {
        format!("{}{id}", book.prefix())
    }

    pub fn valid_id(id: &str) -> bool {
        id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// The first problem with the contact, as (field, reason).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Book::Personal { extension } = &self.book
            && (extension.is_empty()
                || extension.len() > 15
                || !extension.bytes().all(|b| b.is_ascii_digit()))
        {
            return Some(("extension", "2 to 15 digits".into()));
        }
        if !Self::valid_id(&self.id) {
            return Some(("id", format!("{ID_LEN} lowercase hex digits")));
        }
        if let Err(reason) = check_text(&self.name, true) {
            return Some(("name", reason));
        }
        if let Err(reason) = check_text(&self.company, false) {
            return Some(("company", reason));
        }
        if self.numbers.is_empty() || self.numbers.len() > MAX_NUMBERS {
            return Some(("numbers", format!("1 to {MAX_NUMBERS} numbers")));
        }
        for n in &self.numbers {
            if normalize_number(&n.number).as_deref() != Ok(n.number.as_str()) {
                return Some((n.kind.as_str(), "digits with an optional leading +".into()));
            }
        }
        if let Some(email) = &self.email
            && let Err(reason) = check_email(email)
        {
            return Some(("email", reason));
        }
        None
    }
}

impl Record for Contact {
    const TABLE: Table = Table::Contacts;
    fn key(&self) -> String {
        Self::key_for(&self.book, &self.id)
    }
}

/// The index of contacts by number: which contact has `number`, and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberEntry {
    pub number: String,
    /// The contact's key.
    pub contact: String,
    pub name: String,
}

impl Record for NumberEntry {
    const TABLE: Table = Table::ContactsByNumber;
    fn key(&self) -> String {
        format!("{}/{}", self.number, self.contact)
    }
}

/// A name or company: at most [`MAX_NAME_CHARS`] characters, no control characters; the name
/// also not blank.
pub fn check_text(text: &str, required: bool) -> Result<(), String> {
    if required && text.trim().is_empty() {
        return Err("required".into());
    }
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(format!("at most {MAX_NAME_CHARS} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("no control characters".into());
    }
    Ok(())
}

/// An e-mail address, loosely: `local@domain`, at most [`MAX_EMAIL_LEN`] bytes, no spaces.
pub fn check_email(email: &str) -> Result<(), String> {
    let ok = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "an e-mail address of at most {MAX_EMAIL_LEN} characters"
        ))
    }
}

/// A number as stored: digits with an optional leading `+`, with spaces, `-`, `.`, `/` and
/// parentheses dropped. At most [`MAX_NUMBER_LEN`] characters as written, at least one digit.
pub fn normalize_number(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let reason =
        || format!("digits with an optional leading +, at most {MAX_NUMBER_LEN} characters");
    if raw.chars().count() > MAX_NUMBER_LEN {
        return Err(reason());
    }
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            _ => return Err(reason()),
        }
    }
    if !out.bytes().any(|b| b.is_ascii_digit()) {
        return Err(reason());
    }
    Ok(out)
}

/// The forms a caller's number may be stored under: as sent, and with `+` for `00` (or the
/// reverse), or without the `+`.
pub fn number_variants(number: &str) -> Vec<String> {
    let mut out = vec![number.to_owned()];
    if let Some(rest) = number.strip_prefix('+') {
        out.push(rest.to_owned());
        out.push(format!("00{rest}"));
    } else if let Some(rest) = number.strip_prefix("00") {
        out.push(format!("+{rest}"));
    } else {
        out.push(format!("+{number}"));
    }
    out
}

/// The name of the company book's contact with `number` (as a caller sent it), if any: one index
/// seek per form of the number ([`number_variants`]), at most three.
pub fn company_name_for(
    reader: &StateReader,
    number: &str,
) -> Result<Option<String>, StorageError> {
    let Ok(number) = normalize_number(number) else {
        return Ok(None);
    };
    for n in number_variants(&number) {
        // `/company/` .. `/company0`: '0' follows '/', so the range is exactly the prefix.
        let from = format!("{n}/company/");
        let to = format!("{n}/company0");
        let (found, _) = reader.scan_range::<NumberEntry>(&from, &to, 1, |_| true)?;
        if let Some(entry) = found.into_iter().next() {
            return Ok(Some(entry.name));
        }
    }
    Ok(None)
}

fn index_entries(c: &Contact) -> impl Iterator<Item = NumberEntry> + '_ {
    let key = c.key();
    let mut seen = Vec::new();
    c.numbers.iter().filter_map(move |n| {
        if seen.contains(&n.number) {
            return None;
        }
        seen.push(n.number.clone());
        Some(NumberEntry {
            number: n.number.clone(),
            contact: key.clone(),
            name: c.name.clone(),
        })
    })
}

/// Removes contact `key` and its index entries; whether there was one.
fn remove(txn: &mut dyn Txn, key: &str) -> Result<bool, CodecError> {
    let Some(old) = get::<Contact>(txn, key)? else {
        return Ok(false);
    };
    for entry in index_entries(&old) {
        txn.delete(Table::ContactsByNumber, &entry.key());
    }
    txn.delete(Table::Contacts, key);
    Ok(true)
}

/// Creates or replaces each contact. All or nothing: `Invalid` (naming the contact's key and
/// field) when one is malformed, when there are more than [`MAX_PER_COMMAND`], or when a book
/// would grow past its capacity; `NotFound` when a personal book's extension does not exist.
pub(crate) fn put_contacts(
    txn: &mut dyn Txn,
    contacts: &[Contact],
) -> Result<Response, CodecError> {
    if contacts.len() > MAX_PER_COMMAND {
        let reason = format!("contacts: at most {MAX_PER_COMMAND} per command");
        return Ok(invalid(Table::Contacts, "", reason));
    }
    let mut books: Vec<(&Book, usize)> = Vec::new();
    for c in contacts {
        if let Some((field, reason)) = c.problem() {
            return Ok(invalid(
                Table::Contacts,
                &c.key(),
                format!("{field}: {reason}"),
            ));
        }
        if let Book::Personal { extension } = &c.book
            && txn.get(Extension::TABLE, extension).is_none()
        {
            return Ok(Response::NotFound {
                table: table_name(Table::Extensions),
                key: extension.clone(),
            });
        }
        let new = usize::from(txn.get(Table::Contacts, &c.key()).is_none());
        match books.iter_mut().find(|(b, _)| *b == &c.book) {
            Some((_, n)) => *n += new,
            None => books.push((&c.book, new)),
        }
    }
    for (book, new) in books {
        let held = txn.keys_with_prefix(Table::Contacts, &book.prefix()).len();
        if held + new > book.capacity() {
            let reason = format!(
                "contacts: the book holds at most {} contacts",
                book.capacity()
            );
            return Ok(invalid(Table::Contacts, &book.prefix(), reason));
        }
    }
    for c in contacts {
        remove(txn, &c.key())?;
        for entry in index_entries(c) {
            put(txn, &entry)?;
        }
        put(txn, c)?;
    }
    Ok(Response::Ok)
}

/// Deletes contact `key`; `NotFound` without it.
pub(crate) fn delete_contact(txn: &mut dyn Txn, key: &str) -> Result<Response, CodecError> {
    if remove(txn, key)? {
        Ok(Response::Ok)
    } else {
        Ok(Response::NotFound {
            table: table_name(Table::Contacts),
            key: key.to_owned(),
        })
    }
}

/// Deletes an extension's personal book (the extension is being deleted).
pub(crate) fn delete_book(txn: &mut dyn Txn, book: &Book) -> Result<(), CodecError> {
    for key in txn.keys_with_prefix(Table::Contacts, &book.prefix()) {
        remove(txn, &key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
