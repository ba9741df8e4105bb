use super::*;

/// Cheap enough for tests; archives in use get [`KdfCost::DEFAULT`].
const TEST_COST: KdfCost = KdfCost {
    memory_kib: 64,
    iterations: 1,
    lanes: 1,
};

fn origin() -> Origin {
    Origin {
        cluster_id: "c0ffee".into(),
        node_id: 2,
        created_at: 1_764_547_200_000,
        log_index: 4242,
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// State of 1 KiB, one audio file over three chunks, one exactly a chunk long.
fn entries() -> Vec<(EntryKind, String, Vec<u8>)> {
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    };
    vec![
        (EntryKind::State, "state".into(), pattern(1024, 1)),
        (
            EntryKind::Audio,
            "a".repeat(32),
            pattern(CHUNK * 2 + 777, 2),
        ),
        (EntryKind::Audio, "b".repeat(32), pattern(CHUNK, 3)),
    ]
}

fn archive(passphrase: &str) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Vec::new(), &origin(), passphrase, TEST_COST).unwrap();
    for (kind, name, bytes) in entries() {
        w.entry(kind, &name, bytes.len() as u64, sha(&bytes), &bytes[..])
            .unwrap();
    }
    w.finish().unwrap()
}

fn read_all(
    bytes: &[u8],
    passphrase: &str,
) -> Result<Vec<(EntryKind, String, Vec<u8>)>, ArchiveError> {
    let mut r = ArchiveReader::open(bytes, passphrase)?;
    let mut out = Vec::new();
    while let Some(e) = r.next_entry()? {
        let data = r.copy_entry(&e, Vec::new())?;
        out.push((e.kind, e.name, data));
    }
    Ok(out)
}

#[test]
fn an_archive_reads_back_as_written() {
    let bytes = archive("correct horse battery staple");
    let (header, _) = read_header(&bytes[..]).unwrap();
    assert_eq!(header.cluster_id, "c0ffee");
    assert_eq!(header.log_index, 4242);
    assert_eq!(header.pbx_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        read_all(&bytes, "correct horse battery staple").unwrap(),
        entries()
    );
    // Encrypted: no stretch of an entry's bytes appears in the file.
    let audio = &entries()[1].2;
    assert!(!bytes.windows(64).any(|w| w == &audio[1000..1064]));
}

#[test]
fn a_wrong_passphrase_is_named_as_such() {
    let bytes = archive("correct horse battery staple");
    assert!(matches!(
        read_all(&bytes, "correct horse battery stapler"),
        Err(ArchiveError::WrongPassphrase)
    ));
}

#[test]
fn any_changed_byte_after_the_header_is_refused() {
    let bytes = archive("pw");
    let (_, _) = read_header(&bytes[..]).unwrap();
    let header_end = 14 + u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    for at in [
        header_end + 4,
        header_end + 100,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let mut bad = bytes.to_vec();
        bad[at] ^= 0x01;
        let got = read_all(&bad, "pw");
        assert!(
            matches!(
                got,
                Err(ArchiveError::Damaged(_) | ArchiveError::Truncated(_))
            ),
            "byte {at}: {got:?}"
        );
    }
}

#[test]
fn a_changed_header_fails_the_chunks() {
    let bytes = archive("pw");
    let text = String::from_utf8_lossy(&bytes[..200]).into_owned();
    let at = text.find("4242").unwrap();
    let mut bad = bytes;
    bad[at..at + 4].copy_from_slice(b"9999");
    assert!(matches!(
        read_all(&bad, "pw"),
        Err(ArchiveError::Damaged(_))
    ));
}

#[test]
fn a_cut_archive_is_refused_wherever_it_is_cut() {
    let bytes = archive("pw");
    for len in [
        0,
        7,
        13,
        30,
        200,
        bytes.len() / 2,
        bytes.len() - 17,
        bytes.len() - 1,
    ] {
        let got = read_all(&bytes[..len], "pw");
        assert!(got.is_err(), "cut at {len} read whole");
    }
    // Cut exactly at a chunk boundary (the last chunk dropped): still refused.
    let last_len = {
        // Walk the chunk lengths to find where the last chunk starts.
        let header_end =
            14 + u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
        let mut at = header_end;
        let mut starts = Vec::new();
        while at < bytes.len() {
            starts.push(at);
            let n = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            at += 4 + n as usize;
        }
        *starts.last().unwrap()
    };
    assert!(matches!(
        read_all(&bytes[..last_len], "pw"),
        Err(ArchiveError::Truncated(_))
    ));
    // And bytes appended after the last chunk are refused too.
    let mut longer = bytes;
    longer.extend_from_slice(&[0, 0, 0, 0]);
    assert!(read_all(&longer, "pw").is_err());
}

#[test]
fn a_newer_format_is_refused_naming_the_version_that_wrote_it() {
    let mut bytes = archive("pw");
    bytes[8] = 9;
    let err = read_all(&bytes, "pw").unwrap_err();
    assert!(
        matches!(err, ArchiveError::TooNew { found: 9, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains("newer"), "{text}");
}

#[test]
fn other_files_are_not_archives() {
    assert!(matches!(
        read_all(b"PBXSNAP\x01 something else entirely", "pw"),
        Err(ArchiveError::NotAnArchive)
    ));
    assert!(matches!(
        read_all(b"PBX", "pw"),
        Err(ArchiveError::Truncated(_))
    ));
}

#[test]
fn a_source_that_does_not_match_its_checksum_or_size_is_not_archived() {
    let mut w = ArchiveWriter::new(Vec::new(), &origin(), "pw", TEST_COST).unwrap();
    let data = vec![5u8; 1000];
    let wrong = w.entry(EntryKind::Audio, "x", 1000, sha(b"other"), &data[..]);
    assert!(matches!(wrong, Err(ArchiveError::BadSource { .. })));
    let mut w = ArchiveWriter::new(Vec::new(), &origin(), "pw", TEST_COST).unwrap();
    let short = w.entry(EntryKind::Audio, "x", 2000, sha(&data), &data[..]);
    assert!(matches!(short, Err(ArchiveError::BadSource { .. })));
    let mut w = ArchiveWriter::new(Vec::new(), &origin(), "pw", TEST_COST).unwrap();
    let long = w.entry(EntryKind::Audio, "x", 999, sha(&data[..999]), &data[..]);
    assert!(matches!(long, Err(ArchiveError::BadSource { .. })));
}

#[test]
fn a_crafted_header_cannot_ask_for_unbounded_key_derivation() {
    let bytes = archive("pw");
    let (mut header, _) = read_header(&bytes[..]).unwrap();
    header.kdf.memory_kib = u32::MAX;
    let json = serde_json::to_vec(&header).unwrap();
    let mut crafted = Vec::new();
    crafted.extend_from_slice(MAGIC);
    crafted.extend_from_slice(&ARCHIVE_FORMAT.to_le_bytes());
    crafted.extend_from_slice(&(json.len() as u32).to_le_bytes());
    crafted.extend_from_slice(&json);
    assert!(matches!(
        ArchiveReader::open(&crafted[..], "pw"),
        Err(ArchiveError::Damaged(_))
    ));
}
