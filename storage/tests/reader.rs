//! The node's view of applied state: typed reads, pagination, and the applied-index watch.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{append_and_apply, ext, fresh, member, normal, setting, user};
use pbx_storage::model::{ClusterRecord, Extension, MemberRecord, Setting, UserAccount, VipConfig};
use pbx_storage::{Command, Response};

#[tokio::test]
async fn reader_sees_applied_rows_and_the_watch_advances() {
    let (_dir, mut store) = fresh();
    let mut watch = store.reader.watch_applied();
    assert_eq!(store.reader.applied_index(), 0);
    assert_eq!(store.reader.last_applied(), None);
    assert!(store.reader.get::<Extension>("1001").unwrap().is_none());
    assert_eq!(store.reader.count::<Extension>().unwrap(), 0);

    // Inserted out of order: reads come back in key order.
    let numbers = ["1005", "1001", "1004", "1002", "1003"];
    let entries = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| normal(1, i as u64 + 1, Command::CreateExtension(ext(n))))
        .collect();
    append_and_apply(&mut store, entries).await;

    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), 5);
    assert_eq!(store.reader.applied_index(), 5);
    assert_eq!(store.reader.last_applied(), Some(common::log_id(1, 5)));

    assert_eq!(
        store.reader.get::<Extension>("1004").unwrap(),
        Some(ext("1004"))
    );
    assert!(store.reader.get::<Extension>("9999").unwrap().is_none());
    let all: Vec<String> = store
        .reader
        .list::<Extension>()
        .unwrap()
        .into_iter()
        .map(|e| e.number)
        .collect();
    assert_eq!(all, ["1001", "1002", "1003", "1004", "1005"]);
    assert_eq!(store.reader.count::<Extension>().unwrap(), 5);

    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .reader
            .list_page::<Extension>(after.as_deref(), 2)
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.number.clone());
        pages.push(page.into_iter().map(|e| e.number).collect::<Vec<_>>());
    }
    assert_eq!(
        pages,
        [vec!["1001", "1002"], vec!["1003", "1004"], vec!["1005"]]
    );
    // `after` need not be an existing key.
    let page = store
        .reader
        .list_page::<Extension>(Some("1003x"), 10)
        .unwrap();
    assert_eq!(
        page.into_iter().map(|e| e.number).collect::<Vec<_>>(),
        ["1004", "1005"]
    );
    assert!(
        store
            .reader
            .list_page::<Extension>(None, 0)
            .unwrap()
            .is_empty()
    );

    // The watch wakes a waiting task on the next apply.
    let waiter = tokio::spawn(async move {
        watch
            .wait_for(|&index| index >= 6)
            .await
            .map(|i| *i)
            .unwrap()
    });
    append_and_apply(
        &mut store,
        vec![normal(
            1,
            6,
            Command::DeleteExtension {
                number: "1003".into(),
            },
        )],
    )
    .await;
    assert_eq!(waiter.await.unwrap(), 6);
    assert_eq!(store.reader.count::<Extension>().unwrap(), 4);
    assert!(store.reader.get::<Extension>("1003").unwrap().is_none());
}

#[tokio::test]
async fn one_apply_batch_sees_its_own_writes() {
    let (_dir, mut store) = fresh();
    let responses = append_and_apply(
        &mut store,
        vec![
            normal(1, 1, Command::CreateExtension(ext("2000"))),
            normal(1, 2, Command::CreateExtension(ext("2000"))),
            normal(
                1,
                3,
                Command::DeleteExtension {
                    number: "2000".into(),
                },
            ),
            normal(1, 4, Command::UpdateExtension(ext("2000"))),
            normal(1, 5, Command::CreateUser(user("alice"))),
            normal(1, 6, Command::PutSetting(setting("lang", "en"))),
            normal(1, 7, Command::PutSetting(setting("lang", "fr"))),
        ],
    )
    .await;
    assert_eq!(
        responses,
        [
            Response::Ok,
            Response::Conflict {
                table: "extensions".into(),
                key: "2000".into()
            },
            Response::Ok,
            Response::NotFound {
                table: "extensions".into(),
                key: "2000".into()
            },
            Response::Ok,
            Response::Ok,
            Response::Ok,
        ]
    );
    assert!(store.reader.get::<Extension>("2000").unwrap().is_none());
    assert_eq!(
        store.reader.get::<UserAccount>("alice").unwrap(),
        Some(user("alice"))
    );
    assert_eq!(
        store.reader.get::<Setting>("lang").unwrap().unwrap().value,
        "fr"
    );

    // And a later batch sees the earlier one through the database.
    let responses = append_and_apply(
        &mut store,
        vec![normal(1, 8, Command::CreateUser(user("alice")))],
    )
    .await;
    assert_eq!(
        responses,
        [Response::Conflict {
            table: "users".into(),
            key: "alice".into()
        }]
    );
}

#[tokio::test]
async fn a_table_with_two_record_types_reads_each_by_key() {
    let (_dir, mut store) = fresh();
    let cluster = ClusterRecord {
        cluster_id: "c1".into(),
        realm: "pbx".into(),
        secret: vec![7; 32],
        created_at: 1,
    };
    let vip = VipConfig {
        address: "198.18.0.100/24".into(),
        interface: "eth0".into(),
        driver: "linux".into(),
        updated_at: 1,
    };
    append_and_apply(
        &mut store,
        vec![
            normal(1, 1, Command::InitCluster(cluster.clone())),
            normal(1, 2, Command::SetVip(vip.clone())),
            normal(1, 3, Command::PutMember(member(2))),
            normal(1, 4, Command::PutMember(member(10))),
        ],
    )
    .await;
    assert_eq!(
        store
            .reader
            .get::<ClusterRecord>(ClusterRecord::KEY)
            .unwrap(),
        Some(cluster)
    );
    assert_eq!(
        store.reader.get::<VipConfig>(VipConfig::KEY).unwrap(),
        Some(vip)
    );
    // Asking for the wrong type under a key reads as absent, not as garbage.
    assert_eq!(
        store.reader.get::<ClusterRecord>(VipConfig::KEY).unwrap(),
        None
    );
    let members: Vec<u64> = store
        .reader
        .list::<MemberRecord>()
        .unwrap()
        .into_iter()
        .map(|m| m.node_id)
        .collect();
    assert_eq!(members, [2, 10], "member keys sort by node id");
}
