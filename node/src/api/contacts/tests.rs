use super::*;

fn contact(id: u64, name: &str, company: &str, numbers: &[(NumberKind, &str)]) -> Contact {
    Contact {
        book: Book::Company,
        id: format!("{id:016x}"),
        name: name.into(),
        company: company.into(),
        numbers: numbers
            .iter()
            .map(|(kind, n)| ContactNumber {
                kind: *kind,
                number: (*n).into(),
            })
            .collect(),
        email: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0u64;
    move || {
        n += 1;
        format!("{n:016x}")
    }
}

fn query(q: Option<&str>, limit: Option<&str>, offset: Option<&str>) -> ContactQuery {
    ContactQuery {
        q: q.map(Into::into),
        limit: limit.map(Into::into),
        offset: offset.map(Into::into),
    }
}

#[test]
fn an_import_reports_each_bad_row_by_its_spreadsheet_row() {
    let long = "x".repeat(101);
    let csv = format!(
        "name,company,work,mobile,home,other,email\n\
         Ann,Acme,+49 30 1234,,,,ann@acme.example\n\
         ,Acme,1234,,,,\n\
         Bob,,12a4,,,,\n\
         Cid,,1,2,3,4,c@d.example,extra\n\
         {long},,1,,,,\n\
         Dee,,,,,,\n\
         Eve,,1;2;3,4;5;6,,,\n\
         Fay,,'+1 555,,,,bad address\n\
         \"Gus, Jr.\",\"Acme \"\"Ltd\"\"\",,0170 1234,,,\n"
    );
    let (good, bad) = parse_import(csv.as_bytes(), &Book::Company, 7, ids()).unwrap();
    let bad: Vec<(u64, Option<&str>)> = bad.iter().map(|e| (e.row, e.field.as_deref())).collect();
    assert_eq!(
        bad,
        [
            (3, Some("name")),
            (4, Some("work")),
            (5, None),
            (6, Some("name")),
            (7, Some("numbers")),
            (8, Some("numbers")),
            (9, Some("work")),
        ]
    );
    let names: Vec<(u64, &str, &str)> = good
        .iter()
        .map(|(row, c)| (*row, c.name.as_str(), c.company.as_str()))
        .collect();
    assert_eq!(
        names,
        [(2, "Ann", "Acme"), (10, "Gus, Jr.", "Acme \"Ltd\"")]
    );
    assert_eq!(good[0].1.numbers[0].number, "+49301234");
    assert_eq!(good[1].1.numbers[0].kind, NumberKind::Mobile);
}

#[test]
fn a_bad_header_or_too_many_rows_refuses_the_file() {
    for bad in [
        "company,work\nAcme,1\n",
        "name,fax\nAnn,1\n",
        "name,name\nA,B\n",
    ] {
        assert!(
            matches!(
                parse_import(bad.as_bytes(), &Book::Company, 1, ids()),
                Err(ApiError::BadRequest(_))
            ),
            "{bad}"
        );
    }
    let mut big = String::from("name,work\n");
    for i in 0..=MAX_IMPORT_ROWS {
        big.push_str(&format!("n{i},{i}\n"));
    }
    match parse_import(big.as_bytes(), &Book::Company, 1, ids()) {
        Err(ApiError::BadRequest(m)) => assert!(m.contains("20000 rows"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Any column order, any case, and a byte-order mark.
    let (good, bad) = parse_import(
        "\u{feff}Work,NAME\n5,Ann\n".as_bytes(),
        &Book::Company,
        1,
        ids(),
    )
    .unwrap();
    assert_eq!((good.len(), bad.len()), (1, 0));
}

#[test]
fn an_export_imports_again_as_it_was() {
    let mut ann = contact(
        1,
        "=cmd()",
        "Acme, Inc.",
        &[
            (NumberKind::Work, "+4930"),
            (NumberKind::Work, "555"),
            (NumberKind::Home, "0301"),
        ],
    );
    ann.email = Some("ann@acme.example".into());
    let bob = contact(2, "Bob \"B\"", "", &[(NumberKind::Other, "7")]);
    let text = to_csv(&[ann.clone(), bob.clone()]).unwrap();
    assert!(text.starts_with("name,company,work,mobile,home,other,email\r\n"));
    assert!(text.contains("'=cmd()"), "a formula is defused: {text}");
    let (good, bad) = parse_import(text.as_bytes(), &Book::Company, 1, ids()).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let back: Vec<Contact> = good.into_iter().map(|(_, c)| c).collect();
    assert_eq!(back, [ann, bob]);
}

#[test]
fn search_and_paging() {
    let mut all = vec![
        contact(1, "bob", "Globex", &[(NumberKind::Work, "+4930555")]),
        contact(2, "Ann", "Acme", &[(NumberKind::Mobile, "0170123")]),
        contact(3, "Cid", "acme", &[(NumberKind::Work, "999")]),
    ];
    sort(&mut all);
    let names = |l: &ContactList| l.items.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let every = page(all.clone(), &query(None, None, None)).unwrap();
    assert_eq!(names(&every), ["Ann", "bob", "Cid"]);
    assert_eq!((every.total, every.limit), (3, DEFAULT_LIMIT));
    let acme = page(all.clone(), &query(Some("ACME"), None, None)).unwrap();
    assert_eq!(names(&acme), ["Ann", "Cid"]);
    let by_number = page(all.clone(), &query(Some("30 555"), None, None)).unwrap();
    assert_eq!(names(&by_number), ["bob"]);
    let second = page(all.clone(), &query(None, Some("1"), Some("1"))).unwrap();
    assert_eq!((names(&second), second.total), (vec!["bob".to_owned()], 3));
    for (limit, offset, field) in [
        (Some("0"), None, "limit"),
        (Some("1001"), None, "limit"),
        (None, Some("-1"), "offset"),
        (None, Some("x"), "offset"),
    ] {
        match page(all.clone(), &query(None, limit, offset)) {
            Err(ApiError::BadRequest(m)) => assert!(m.starts_with(field), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let long = "a".repeat(MAX_QUERY_CHARS + 1);
    assert!(page(all, &query(Some(&long), None, None)).is_err());
}

#[test]
fn phonebooks_escape_and_list_every_number() {
    let list = [
        contact(
            1,
            "Ann & <Bob> \"Co\"",
            "A'C",
            &[(NumberKind::Work, "+4930"), (NumberKind::Mobile, "0170")],
        ),
        contact(2, "Cid", "", &[(NumberKind::Home, "7")]),
    ];
    let y = phonebook_xml(Brand::Yealink, &list);
    assert!(
        y.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<YealinkIPPhoneDirectory>\n")
    );
    assert!(
        y.contains(
            "<DirectoryEntry><Name>Ann &amp; &lt;Bob&gt; &quot;Co&quot;</Name>\
         <Telephone label=\"Work\">+4930</Telephone><Telephone label=\"Mobile\">0170</Telephone>\
         </DirectoryEntry>"
        ),
        "{y}"
    );
    assert!(y.ends_with("</YealinkIPPhoneDirectory>\n"));
    let s = phonebook_xml(Brand::Snom, &list);
    assert_eq!(
        s.matches("<DirectoryEntry>").count(),
        3,
        "one entry per number"
    );
    assert!(s.contains(
        "<Name>Ann &amp; &lt;Bob&gt; &quot;Co&quot; (mobile)</Name><Telephone>0170</Telephone>"
    ));
    assert!(s.contains("<Name>Cid</Name><Telephone>7</Telephone>"));
    let g = phonebook_xml(Brand::Grandstream, &list);
    assert!(g.contains("<Company>A&apos;C</Company>"));
    assert!(g.contains(
        "<Phone type=\"Home\"><phonenumber>7</phonenumber><accountindex>0</accountindex></Phone>"
    ));
    let p = phonebook_xml(Brand::Polycom, &list);
    assert_eq!(p.matches("<item>").count(), 3);
    assert!(phonebook_xml(Brand::Fanvil, &list).contains("<FanvilIPPhoneDirectory>"));
    // Every document is balanced: each element opened is closed.
    for brand in Brand::ALL {
        let doc = phonebook_xml(brand, &list);
        let opened = doc.matches('<').count() - doc.matches("</").count() - 1;
        assert_eq!(opened, doc.matches("</").count(), "{brand:?}: {doc}");
        assert_eq!(
            Brand::of_file(&format!("{}.xml", brand.as_str())),
            Some(brand)
        );
    }
    assert_eq!(Brand::of_file("cisco.xml"), None);
    assert_eq!(Brand::of_file("yealink"), None);
}

#[test]
fn basic_credentials_are_read_bounded() {
    let mut h = HeaderMap::new();
    assert_eq!(basic_credentials(&h), None);
    let b = STANDARD.encode("1001:s3cret:with:colons");
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {b}")).unwrap(),
    );
    assert_eq!(
        basic_credentials(&h),
        Some(("1001".into(), "s3cret:with:colons".into()))
    );
    let long = STANDARD.encode(format!("1001:{}", "x".repeat(MAX_PHONE_SECRET + 1)));
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {long}")).unwrap(),
    );
    assert_eq!(basic_credentials(&h), None);
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
    assert_eq!(basic_credentials(&h), None);
}
