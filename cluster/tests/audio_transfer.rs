//! Audio files between real nodes over the cluster's mutual-TLS QUIC (their own ALPN beside Raft):
//! a copy is stored only whole and matching the checksum the asker names.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use pbx_cluster::blob_dir::sha256_hex;
use pbx_cluster::tls::generate_ca;
use pbx_cluster::{BlobError, TransferError};

use common::cluster_of;

fn id(n: u8) -> String {
    format!("{n:032x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_move_between_members_only_whole_and_verified() {
    let ca = generate_ca("audio").unwrap();
    let nodes = cluster_of(&ca, 3, |_| {}).await;
    let (one, two, three) = (&nodes[0].cluster, &nodes[1].cluster, &nodes[2].cluster);

    // 3 MiB: more than one QUIC flow-control window and many read buffers.
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32).map(|n| (n % 251) as u8).collect();
    let sha = sha256_hex(&bytes);
    let len = bytes.len() as u64;
    one.audio_dir()
        .write(&id(1), &sha, len, &mut &bytes[..])
        .await
        .unwrap();

    one.push_audio(2, &id(1), &sha).await.unwrap();
    assert_eq!(
        std::fs::read(two.audio_dir().path(&id(1)).unwrap()).unwrap(),
        bytes
    );
    three.fetch_audio(2, &id(1), &sha, len).await.unwrap();
    assert_eq!(
        std::fs::read(three.audio_dir().path(&id(1)).unwrap()).unwrap(),
        bytes
    );

    // The receiver checks against the checksum it was given, not what the bytes say.
    let other = sha256_hex(b"something else");
    three.audio_dir().remove(&id(1)).unwrap();
    let refused = one.push_audio(3, &id(1), &other).await;
    assert!(
        matches!(&refused, Err(TransferError::Refused { reason, .. }) if reason.contains("checksum")),
        "{refused:?}"
    );
    assert!(
        !three.audio_dir().has(&id(1)),
        "a mismatching copy was kept"
    );
    let fetched = three.fetch_audio(1, &id(1), &other, len).await;
    assert!(
        matches!(
            fetched,
            Err(TransferError::Store(BlobError::WrongChecksum { .. }))
        ),
        "{fetched:?}"
    );
    let short = three.fetch_audio(1, &id(1), &sha, len - 1).await;
    assert!(
        matches!(
            short,
            Err(TransferError::Store(BlobError::WrongSize { .. }))
        ),
        "{short:?}"
    );
    assert!(!three.audio_dir().has(&id(1)));
    let dir = nodes[2].data_dir().join("audio/tmp");
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        0,
        "temporary files left"
    );

    // What a node does not have, it says so; a node that is no member cannot be asked.
    let missing = three.fetch_audio(1, &id(2), &sha, len).await;
    assert!(
        matches!(missing, Err(TransferError::Missing(1))),
        "{missing:?}"
    );
    let stranger = one.push_audio(9, &id(1), &sha).await;
    assert!(
        matches!(stranger, Err(TransferError::UnknownNode(9))),
        "{stranger:?}"
    );
    // Raft shares the endpoint and keeps working.
    one.propose(common::put_setting("after", "transfers"))
        .await
        .unwrap();
}
