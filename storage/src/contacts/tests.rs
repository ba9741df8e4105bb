use super::*;
use crate::codec;
use crate::command::Command;
use crate::command::tests::{MemTxn, ext};

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn contact(book: Book, n: u64, name: &str, numbers: &[&str]) -> Contact {
    Contact {
        book,
        id: format!("{n:016x}"),
        name: name.into(),
        company: "Acme".into(),
        numbers: numbers
            .iter()
            .map(|n| ContactNumber {
                kind: NumberKind::Work,
                number: (*n).into(),
            })
            .collect(),
        email: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn personal(extension: &str) -> Book {
    Book::Personal {
        extension: extension.into(),
    }
}

fn index(txn: &MemTxn) -> Vec<(String, String)> {
    txn.keys_with_prefix(Table::ContactsByNumber, "")
        .into_iter()
        .map(|k| {
            let bytes = txn.get(Table::ContactsByNumber, &k).unwrap();
            let e: NumberEntry = codec::decode(&bytes).unwrap();
            (k, e.name)
        })
        .collect()
}

#[test]
fn numbers_are_normalised() {
    assert_eq!(
        normalize_number("+49 (30) 123-45.6/7").unwrap(),
        "+49301234567"
    );
    assert_eq!(normalize_number(" 1001 ").unwrap(), "1001");
    for bad in ["", "+", "12a4", "1+2", "--", &"1".repeat(33), "'+1"] {
        assert!(normalize_number(bad).is_err(), "{bad:?}");
    }
    assert!(normalize_number(&"1".repeat(32)).is_ok());
    assert_eq!(
        number_variants("+4930"),
        ["+4930", "4930", "004930"].map(String::from)
    );
    assert_eq!(
        number_variants("004930"),
        ["004930", "+4930"].map(String::from)
    );
    assert_eq!(number_variants("030"), ["030", "+030"].map(String::from));
}

#[test]
fn a_contact_is_checked_field_by_field() {
    let ok = contact(Book::Company, 1, "Ann", &["+4930"]);
    assert_eq!(ok.problem(), None);
    let field = |c: Contact| c.problem().map(|(f, _)| f);
    assert_eq!(field(contact(Book::Company, 1, " ", &["1"])), Some("name"));
    let long = "x".repeat(MAX_NAME_CHARS + 1);
    assert_eq!(
        field(contact(Book::Company, 1, &long, &["1"])),
        Some("name")
    );
    let longest = "é".repeat(MAX_NAME_CHARS);
    assert_eq!(field(contact(Book::Company, 1, &longest, &["1"])), None);
    assert_eq!(
        field(contact(Book::Company, 1, "Ann", &[])),
        Some("numbers")
    );
    let six = ["1"; 6];
    assert_eq!(
        field(contact(Book::Company, 1, "Ann", &six)),
        Some("numbers")
    );
    // Stored numbers are normalised ones.
    assert_eq!(
        field(contact(Book::Company, 1, "Ann", &["1 2"])),
        Some("work")
    );
    let mut bad_id = ok.clone();
    bad_id.id = "ABC".into();
    assert_eq!(field(bad_id), Some("id"));
    let mut bad_mail = ok;
    bad_mail.email = Some("not an address".into());
    assert_eq!(field(bad_mail), Some("email"));
    assert_eq!(
        field(contact(personal("10x1"), 1, "Ann", &["1"])),
        Some("extension")
    );
}

#[test]
fn putting_contacts_indexes_their_numbers_and_replacing_moves_the_index() {
    let mut txn = MemTxn::default();
    let ann = contact(Book::Company, 1, "Ann", &["+4930", "555", "555"]);
    let bob = contact(Book::Company, 2, "Bob", &["666"]);
    let put = Command::PutContacts(vec![ann.clone(), bob]);
    assert_eq!(apply(&mut txn, put), Response::Ok);
    assert_eq!(
        index(&txn),
        [
            ("+4930/company/0000000000000001".into(), "Ann".into()),
            ("555/company/0000000000000001".into(), "Ann".into()),
            ("666/company/0000000000000002".into(), "Bob".into()),
        ]
    );
    // Replaced: the old numbers leave the index, the new name is in it.
    let mut ann2 = ann;
    ann2.name = "Ann Smith".into();
    ann2.numbers.truncate(1);
    assert_eq!(
        apply(&mut txn, Command::PutContacts(vec![ann2])),
        Response::Ok
    );
    assert_eq!(
        index(&txn),
        [
            ("+4930/company/0000000000000001".into(), "Ann Smith".into()),
            ("666/company/0000000000000002".into(), "Bob".into()),
        ]
    );
    let delete = |key: &str| Command::DeleteContact { key: key.into() };
    assert_eq!(
        apply(&mut txn, delete("company/0000000000000001")),
        Response::Ok
    );
    assert_eq!(index(&txn).len(), 1);
    assert!(matches!(
        apply(&mut txn, delete("company/0000000000000001")),
        Response::NotFound { .. }
    ));
}

#[test]
fn a_bad_contact_refuses_the_whole_command() {
    let mut txn = MemTxn::default();
    let good = contact(Book::Company, 1, "Ann", &["1"]);
    let bad = contact(Book::Company, 2, "", &["2"]);
    let r = apply(&mut txn, Command::PutContacts(vec![good, bad]));
    match r {
        Response::Invalid { key, reason, .. } => {
            assert_eq!(key, "company/0000000000000002");
            assert!(reason.starts_with("name: "), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(txn.keys_with_prefix(Table::Contacts, "").is_empty());
    assert!(txn.keys_with_prefix(Table::ContactsByNumber, "").is_empty());
    let many: Vec<_> = (0..=MAX_PER_COMMAND as u64)
        .map(|i| contact(Book::Company, i, "A", &["1"]))
        .collect();
    assert!(matches!(
        apply(&mut txn, Command::PutContacts(many)),
        Response::Invalid { .. }
    ));
}

#[test]
fn a_personal_book_needs_its_extension_and_a_full_book_refuses_more() {
    let mut txn = MemTxn::default();
    let mine = contact(personal("1001"), 1, "Mum", &["777"]);
    assert!(matches!(
        apply(&mut txn, Command::PutContacts(vec![mine.clone()])),
        Response::NotFound { .. }
    ));
    apply(&mut txn, Command::CreateExtension(ext("1001")));
    assert_eq!(
        apply(&mut txn, Command::PutContacts(vec![mine])),
        Response::Ok
    );
    // Fill the book to capacity; one more is refused, replacing one is not.
    for chunk in (2..=MAX_PERSONAL as u64)
        .collect::<Vec<_>>()
        .chunks(MAX_PER_COMMAND)
    {
        let list = chunk
            .iter()
            .map(|&i| contact(personal("1001"), i, "X", &["1"]))
            .collect();
        assert_eq!(apply(&mut txn, Command::PutContacts(list)), Response::Ok);
    }
    let extra = contact(personal("1001"), 99_999, "Y", &["1"]);
    assert!(matches!(
        apply(&mut txn, Command::PutContacts(vec![extra])),
        Response::Invalid { .. }
    ));
    let again = contact(personal("1001"), 2, "Z", &["1"]);
    assert_eq!(
        apply(&mut txn, Command::PutContacts(vec![again])),
        Response::Ok
    );
}

#[test]
fn deleting_an_extension_deletes_its_personal_book_only() {
    let mut txn = MemTxn::default();
    apply(&mut txn, Command::CreateExtension(ext("100")));
    apply(&mut txn, Command::CreateExtension(ext("1001")));
    let list = vec![
        contact(personal("100"), 1, "Mum", &["777"]),
        contact(personal("1001"), 2, "Dad", &["888"]),
        contact(Book::Company, 3, "Ann", &["999"]),
    ];
    assert_eq!(apply(&mut txn, Command::PutContacts(list)), Response::Ok);
    let delete = Command::DeleteExtension {
        number: "100".into(),
    };
    assert_eq!(apply(&mut txn, delete), Response::Ok);
    assert_eq!(
        txn.keys_with_prefix(Table::Contacts, ""),
        ["company/0000000000000003", "personal/1001/0000000000000002"]
    );
    assert_eq!(index(&txn).len(), 2);
}
