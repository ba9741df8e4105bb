use super::*;
use crate::api::ContactView;
use crate::api::contacts_testing::number;

const HOSTILE: &str = "<script>alert(1)</script>";

fn contact(i: usize, name: &str) -> ContactView {
    ContactView {
        id: format!("{i:016x}"),
        name: name.into(),
        company: "Acme & Co".into(),
        numbers: vec![
            number(NumberKind::Work, "+4930123"),
            number(NumberKind::Mobile, "0170"),
        ],
        email: Some("ann@acme.example".into()),
        created_at: 1,
        updated_at: 1,
    }
}

fn list(items: Vec<ContactView>, total: usize, offset: usize) -> ContactList {
    ContactList {
        items,
        total,
        offset,
        limit: PAGE,
    }
}

#[test]
fn an_admin_sees_the_book_with_its_forms_and_names_as_text() {
    let page = list(vec![contact(1, HOSTILE), contact(2, "Bob")], 2, 0);
    let html = render(&BookRef::company(), &page, "", true).into_string();
    assert!(!html.contains(HOSTILE), "a name is text, never markup");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Acme &amp; Co"));
    assert!(html.contains("+4930123 (work), 0170 (mobile)"));
    assert!(html.contains("id=\"contact-0000000000000001\""));
    assert!(html.contains("data-api=\"PUT /api/v1/contacts/0000000000000001\""));
    assert!(html.contains("data-api=\"DELETE /api/v1/contacts/0000000000000002\""));
    assert!(html.contains("data-api=\"POST /api/v1/contacts\""));
    assert!(html.contains("data-import=\"/api/v1/contacts/import\""));
    assert!(html.contains("data-columns=\"Row,Field,Problem\""));
    assert!(html.contains("href=\"/api/v1/contacts/export\""));
    // The edit form is filled in: both numbers, their kinds, and empty rows for three more.
    assert!(
        html.contains("name=\"numbers.1.number\" data-row-key maxlength=\"32\" value=\"0170\"")
    );
    assert!(html.contains("name=\"numbers.4.number\""));
    assert!(html.contains("Contacts 1–2 of 2."));
}

#[test]
fn a_user_reads_the_company_book_without_forms() {
    let page = list(vec![contact(1, "Ann")], 1, 0);
    let html = render(&BookRef::company(), &page, "", false).into_string();
    assert!(html.contains("Ann"));
    assert!(!html.contains("data-api="), "no way to change it");
    assert!(!html.contains("data-import="));
    assert!(html.contains("href=\"/api/v1/contacts/export\""));
}

#[test]
fn search_and_paging_links_keep_the_search() {
    let items = (0..PAGE).map(|i| contact(i, &format!("N{i}"))).collect();
    let page = list(items, 120, 50);
    let html = render(&BookRef::company(), &page, "a&b", true).into_string();
    assert!(
        html.contains("Contacts 51–100 of 120 matching “a&amp;b”."),
        "{html}"
    );
    assert!(
        html.contains("href=\"/contacts?q=a%26b\""),
        "previous: the first page"
    );
    assert!(
        html.contains("href=\"/contacts?q=a%26b&amp;offset=100\""),
        "next"
    );
    assert!(
        html.contains("value=\"a&amp;b\""),
        "the search box keeps the text"
    );
    let last = list(vec![contact(1, "Z")], 101, 100);
    let html = render(&BookRef::company(), &last, "", true).into_string();
    assert!(html.contains("href=\"/contacts?offset=50\""));
    assert!(!html.contains("id=\"page-next\""));
    let empty = render(&BookRef::company(), &list(vec![], 0, 0), "", true).into_string();
    assert!(empty.contains("No contacts."));
}

#[test]
fn a_personal_book_sends_to_the_extensions_contacts_and_shows_on_me() {
    let book = BookRef::personal("1001");
    let html = render(&book, &list(vec![contact(3, "Mum")], 1, 0), "", true).into_string();
    assert!(html.contains("data-api=\"POST /api/v1/extensions/1001/contacts\""));
    assert!(html.contains("data-api=\"PUT /api/v1/extensions/1001/contacts/0000000000000003\""));
    assert!(html.contains("data-import=\"/api/v1/extensions/1001/contacts/import\""));
    let card = card(&Ok(list(vec![contact(3, HOSTILE)], 12, 0))).into_string();
    assert!(card.contains("id=\"me-contacts\""));
    assert!(card.contains("12 personal contacts"));
    assert!(!card.contains(HOSTILE));
    assert!(card.contains("href=\"/me/contacts\""));
}
