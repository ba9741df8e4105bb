//! Kill -9 the leader while writers run: a new leader takes over, and every write that was acknowledged
//! is present afterwards on every node, including the killed one once it is back.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::Mutex;

use pbx_tests::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_the_leader() {
    let mut lab = Lab::start(3).await.unwrap();
    let leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let client = lab.client();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Four writers, each on a different node than the leader where possible, retrying on failure.
    let mut writers = Vec::new();
    for w in 0..4u32 {
        let (client, acked, stop) = (client.clone(), Arc::clone(&acked), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut seq = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let number = format!("3{w}{seq:04}");
                let node = (w as usize + seq as usize) % 3;
                let status = client.create_extension(node, &number).await;
                match status {
                    Ok(StatusCode::CREATED) => acked.lock().await.push(number),
                    // Unavailable during the election, or the node was killed: not acknowledged.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                seq += 1;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = acked.lock().await.len();
    lab.kill(leader);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let new_leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    assert_ne!(new_leader, leader, "the killed node cannot be leader");
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() > before_kill,
        "no write succeeded after the leader was killed"
    );

    lab.restart(leader).await.unwrap();
    for i in 0..3 {
        let have = lab.extension_numbers(i).await.unwrap();
        let missing: Vec<&String> = acked.iter().filter(|n| !have.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "node {} lost acknowledged writes {missing:?}",
            lab.nodes[i].id
        );
    }
}
