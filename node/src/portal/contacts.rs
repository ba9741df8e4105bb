//! Contacts in the portal: the company phonebook (`/contacts`: everyone reads it, admins add,
//! edit, delete, import and export) and the user's own contacts (`/me/contacts`, with a card on
//! `/me`). Both are one render over a book's API URL: search, a page of [`PAGE`] contacts by name,
//! and the forms, which send to the API like every other page.

use axum::extract::{Path, State};
use maud::{Markup, html};
use serde::Deserialize;
use storage::contacts::{MAX_NAME_CHARS, MAX_NUMBERS, NumberKind};

use super::layout::{self, Nav, empty_row, field, form_error};
use super::{Ctx, Params, Problem, api, enc, given, query};
use crate::api::{AppState, ContactList, ContactQuery, ContactView, ListQuery, Principal};

/// Contacts per page.
pub(super) const PAGE: usize = 50;
/// Contacts the card on `/me` shows.
const CARD: usize = 10;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ContactsQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
}

/// Which book a page shows: its API URL, and its page's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BookRef {
    /// `/api/v1/contacts` or `/api/v1/extensions/{n}/contacts`.
    pub api: String,
    /// `/contacts` or `/me/contacts`.
    pub page: &'static str,
    pub title: String,
}

impl BookRef {
    pub(super) fn company() -> Self {
        Self {
            api: "/api/v1/contacts".into(),
            page: "/contacts",
            title: "Company phonebook".into(),
        }
    }

    pub(super) fn personal(extension: &str) -> Self {
        Self {
            api: format!("/api/v1/extensions/{}/contacts", enc(extension)),
            page: "/me/contacts",
            title: format!("My contacts (extension {extension})"),
        }
    }
}

fn api_query(q: &ContactsQuery, limit: usize) -> ContactQuery {
    ContactQuery {
        q: given(q.q.clone()),
        limit: Some(limit.to_string()),
        offset: q.offset.map(|o| o.to_string()),
    }
}

async fn load_company(
    state: &AppState,
    who: &Principal,
    q: ContactQuery,
) -> Result<ContactList, Problem> {
    api::answer(crate::api::contacts_list(State(state.clone()), who.clone(), ListQuery(q)).await)
        .await
}

async fn load_personal(
    state: &AppState,
    who: &Principal,
    extension: &str,
    q: ContactQuery,
) -> Result<ContactList, Problem> {
    api::answer(
        crate::api::personal_contacts_list(
            State(state.clone()),
            who.clone(),
            Path(extension.to_owned()),
            ListQuery(q),
        )
        .await,
    )
    .await
}

/// `/contacts`: the company phonebook.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<ContactsQuery>,
) -> Result<Markup, Problem> {
    let list = load_company(&state, &ctx.who, api_query(&q, PAGE)).await?;
    let book = BookRef::company();
    let content = render(
        &book,
        &list,
        q.q.as_deref().unwrap_or(""),
        ctx.who.grants.extensions,
    );
    Ok(layout::page(&ctx.who, Nav::Contacts, &book.title, content))
}

/// `/me/contacts`: the account's own extension's contacts.
pub(super) async fn mine(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<ContactsQuery>,
) -> Result<Markup, Problem> {
    let Some(ext) = ctx.who.extension.clone() else {
        return Err(Problem {
            status: axum::http::StatusCode::NOT_FOUND,
            code: "not_found".into(),
            message: "this account has no extension, so no personal contacts".into(),
        });
    };
    let list = load_personal(&state, &ctx.who, &ext, api_query(&q, PAGE)).await?;
    let book = BookRef::personal(&ext);
    let content = render(&book, &list, q.q.as_deref().unwrap_or(""), true);
    Ok(layout::page(&ctx.who, Nav::Me, &book.title, content))
}

/// The first contacts of the account's own book, for the card on `/me`.
pub(super) async fn load_card(
    state: &AppState,
    who: &Principal,
    extension: &str,
) -> Result<ContactList, Problem> {
    let q = ContactQuery {
        q: None,
        limit: Some(CARD.to_string()),
        offset: None,
    };
    load_personal(state, who, extension, q).await
}

/// `#me-contacts`: how many contacts the user has, the first few, and the way to all of them.
pub(super) fn card(list: &Result<ContactList, Problem>) -> Markup {
    html! {
        div.card #me-contacts {
            h2 { "My contacts" }
            @match list {
                Ok(list) => {
                    p.hint #me-contacts-count {
                        (list.total) " personal contact" @if list.total != 1 { "s" }
                        ", listed on your phone's remote phonebook with the company's."
                    }
                    @if !list.items.is_empty() {
                        ul.plain {
                            @for c in &list.items {
                                li { strong { (c.name) } " " span.mono { (numbers_text(c)) } }
                            }
                        }
                    }
                    p { a.btn #me-contacts-manage href="/me/contacts" { "Manage my contacts" } }
                }
                Err(p) => { p.banner.banner-bad #me-contacts-error { (p.message) } }
            }
        }
    }
}

fn numbers_text(c: &ContactView) -> String {
    c.numbers
        .iter()
        .map(|n| format!("{} ({})", n.number, n.kind.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A book's page: search, the table (with edit and delete when `can_write`), paging, and the
/// forms to add, import and export.
pub(super) fn render(book: &BookRef, list: &ContactList, q: &str, can_write: bool) -> Markup {
    let cols = if can_write { 5 } else { 4 };
    html! {
        div.card {
            form.form-inline #contacts-search method="get" action=(book.page) {
                input #contacts-q type="search" name="q" value=(q) maxlength="100"
                    placeholder="Name, company or number";
                button.btn type="submit" { "Search" }
                @if !q.is_empty() { a.btn #contacts-clear href=(book.page) { "Clear" } }
            }
            p.hint #contacts-count {
                @if list.total == 0 { "No contacts" }
                @else {
                    "Contacts " (list.offset.min(list.total) + 1) "–" ((list.offset + list.items.len()).min(list.total))
                    " of " (list.total)
                }
                @if !q.is_empty() { " matching “" (q) "”" }
                "."
            }
            div.table-wrap {
                table.data #contacts-table {
                    thead { tr {
                        th { "Name" } th { "Company" } th { "Numbers" } th { "E-mail" }
                        @if can_write { th.actions { "Actions" } }
                    } }
                    tbody {
                        @for c in &list.items { (row(book, c, can_write)) }
                        @if list.items.is_empty() { (empty_row(cols, "No contacts.")) }
                    }
                }
            }
            (pager(book.page, q, list))
        }
        @if can_write {
            div.card {
                h2 { "New contact" }
                form.form #contact-create data-api={ "POST " (book.api) } data-then="reload" {
                    (form_error())
                    (contact_fields(None, "contact-new"))
                    div.form-actions {
                        button.btn.btn-primary #contact-submit type="submit" { "Add contact" }
                    }
                }
            }
            div.card {
                h2 { "Import and export" }
                form.form-stacked #contacts-import data-import={ (book.api) "/import" }
                    data-report="#contacts-import-report" data-columns="Row,Field,Problem"
                    data-shown="Show the contacts" {
                    (form_error())
                    (field("CSV file", "file", html! {
                        input #contacts-import-file type="file" name="file" accept=".csv,text/csv" required;
                    }))
                    p.hint {
                        "One contact per row, with the header "
                        code { "name,company,work,mobile,home,other,email" }
                        " (any order; only " code { "name" } " and one number are required; several "
                        "numbers of one kind are separated by " code { ";" } "). Good rows are added "
                        "to the book; each bad row is listed with the reason and added nothing."
                    }
                    div.form-actions {
                        button.btn.btn-primary #contacts-import-submit type="submit" { "Import" }
                        a.btn #contacts-export href={ (book.api) "/export" } download { "Export CSV" }
                    }
                }
                div.import-report #contacts-import-report hidden {}
            }
        } @else {
            p { a.btn #contacts-export href={ (book.api) "/export" } download { "Export CSV" } }
        }
    }
}

fn row(book: &BookRef, c: &ContactView, can_write: bool) -> Markup {
    let url = format!("{}/{}", book.api, enc(&c.id));
    html! {
        tr id={ "contact-" (c.id) } data-contact=(c.id) {
            td { strong { (c.name) } }
            td { (c.company) }
            td.mono { (numbers_text(c)) }
            td { (c.email.as_deref().unwrap_or("")) }
            @if can_write {
                td.actions {
                    details.row-edit {
                        summary.btn.btn-small.contact-edit-open { "Edit" }
                        div.popover {
                            form.form-stacked.contact-edit data-api={ "PUT " (url) } data-then="reload" {
                                (form_error())
                                (contact_fields(Some(c), &format!("contact-{}", c.id)))
                                div.form-actions { button.btn.btn-primary type="submit" { "Save" } }
                            }
                        }
                    }
                    button.btn.btn-small.btn-danger.contact-delete type="button"
                        data-api={ "DELETE " (url) }
                        data-confirm={ "Delete contact " (c.name) "?" }
                        data-then="reload" { "Delete" }
                }
            }
        }
    }
}

/// The fields of a contact's form: name, company, up to five numbers (a row without a number is
/// left out), e-mail.
fn contact_fields(c: Option<&ContactView>, id: &str) -> Markup {
    html! {
        (field(&format!("Name (at most {MAX_NAME_CHARS} characters)"), "name", html! {
            input id={ (id) "-name" } type="text" name="name" maxlength=(MAX_NAME_CHARS) required
                value=(c.map_or("", |c| c.name.as_str()));
        }))
        (field("Company", "company", html! {
            input id={ (id) "-company" } type="text" name="company" maxlength=(MAX_NAME_CHARS)
                value=(c.map_or("", |c| c.company.as_str()));
        }))
        @for i in 0..MAX_NUMBERS {
            @let n = c.and_then(|c| c.numbers.get(i));
            div.field-row data-optional {
                (field(&format!("Number {}", i + 1), &format!("numbers.{i}.number"), html! {
                    input id={ (id) "-number-" (i) } type="tel" name={ "numbers." (i) ".number" }
                        data-row-key maxlength="32" required[i == 0]
                        value=(n.map_or("", |n| n.number.as_str()));
                }))
                (field("Kind", &format!("numbers.{i}.kind"), html! {
                    select id={ (id) "-kind-" (i) } name={ "numbers." (i) ".kind" } {
                        @for k in NumberKind::ALL {
                            option value=(k.as_str()) selected[n.is_some_and(|n| n.kind == k)] { (k.as_str()) }
                        }
                    }
                }))
            }
        }
        (field("E-mail", "email", html! {
            input id={ (id) "-email" } type="email" name="email" maxlength="254"
                value=(c.and_then(|c| c.email.as_deref()).unwrap_or(""));
        }))
    }
}

/// Previous and next links of an offset-paged list.
fn pager(base: &str, q: &str, list: &ContactList) -> Markup {
    let at = |offset: usize| {
        let offset = offset.to_string();
        let offset = if offset == "0" { "" } else { offset.as_str() };
        format!("{base}{}", query(&[("q", q), ("offset", offset)]))
    };
    let prev = (list.offset > 0).then(|| at(list.offset.saturating_sub(list.limit)));
    let next = (list.offset + list.items.len() < list.total).then(|| at(list.offset + list.limit));
    html! {
        nav.pager aria-label="Pages" {
            @if let Some(p) = prev { a.pager-link #page-prev href=(p) { "‹ Previous" } }
            @else { span.pager-link.disabled { "‹ Previous" } }
            @if let Some(n) = next { a.pager-link #page-next href=(n) { "Next ›" } }
            @else { span.pager-link.disabled { "Next ›" } }
        }
    }
}

#[cfg(test)]
mod tests;
