//! Commands in, events out, and bad commands in the DLQ with a reason.

use jetshop_contracts::{
    Encoding, Message,
    catalog::{
        AdjustStock, GetProduct, Money, ProductChanged, ProductCreated, StockAdjusted,
        UpdateProduct,
    },
    headers,
};
use jetshop_platform::envelope::MessageMeta;
use uuid::Uuid;

use crate::helpers::{DLQ, EVENTS, TestCatalog, create_cmd};
use jetshop_testkit::header;

#[tokio::test]
async fn each_command_emits_its_event_with_the_standard_headers() {
    let app = TestCatalog::spawn().await;
    let cmd = create_cmd("EVT-1", "Event mug", 5);
    let command_id = app.send(&cmd).await;
    app.wait_for_product(cmd.id).await;
    app.send(&UpdateProduct {
        id: cmd.id,
        name: Some("Renamed mug".into()),
        description: None,
        price: Some(Money {
            amount_minor: 1700,
            currency: "EUR".into(),
        }),
    })
    .await;
    app.send(&AdjustStock {
        id: cmd.id,
        delta: -2,
        reason: Some("sold at the fair".into()),
    })
    .await;

    let events = app.stream_messages(EVENTS, 3).await;
    assert_eq!(events.len(), 3);
    // Commands are handled concurrently, so events of one product may be
    // published in any order; `version` orders them.
    let of_type = |t: &str| {
        events
            .iter()
            .find(|m| header(m, headers::TYPE).as_deref() == Some(t))
            .unwrap()
    };

    let created = of_type(ProductCreated::TYPE);
    assert_eq!(
        header(created, headers::TYPE).as_deref(),
        Some(ProductCreated::TYPE)
    );
    assert_eq!(header(created, headers::SCHEMA).as_deref(), Some("1"));
    assert_eq!(
        header(created, headers::CONTENT_TYPE).as_deref(),
        Some("application/msgpack")
    );
    assert_eq!(
        header(created, headers::CORRELATION_ID).as_deref(),
        Some("test-correlation")
    );
    assert_eq!(
        header(created, headers::CAUSATION_ID).as_deref(),
        Some(command_id.as_str())
    );
    assert!(header(created, headers::MSG_ID).is_some_and(|id| Uuid::parse_str(&id).is_ok()));
    let created: ProductCreated = Encoding::MsgPack.decode(&created.payload).unwrap();
    assert_eq!(created.product.sku, "EVT-1");

    let changed: ProductChanged = Encoding::MsgPack
        .decode(&of_type(ProductChanged::TYPE).payload)
        .unwrap();
    assert_eq!(changed.product.name, "Renamed mug");
    assert_eq!(changed.product.price.amount_minor, 1700);
    assert!(changed.product.version >= 2);

    let adjusted: StockAdjusted = Encoding::MsgPack
        .decode(&of_type(StockAdjusted::TYPE).payload)
        .unwrap();
    assert_eq!((adjusted.delta, adjusted.stock), (-2, 3));
    assert!(adjusted.version >= 2 && adjusted.version != changed.product.version);
    assert_eq!(adjusted.reason.as_deref(), Some("sold at the fair"));
}

#[tokio::test]
async fn invalid_commands_go_to_the_dlq_with_a_reason_and_nothing_breaks() {
    let app = TestCatalog::spawn().await;
    let existing = app.create("TAKEN", "Existing", 1).await;

    let mut negative = create_cmd("NEG-1", "Negative", -5);
    negative.stock = -5;
    app.send(&negative).await;
    app.send(&create_cmd("TAKEN", "Duplicate sku", 1)).await;
    app.send(&UpdateProduct {
        id: Uuid::now_v7(),
        name: Some("Ghost".into()),
        description: None,
        price: None,
    })
    .await;
    app.send(&AdjustStock {
        id: existing.id,
        delta: -2,
        reason: None,
    })
    .await;
    // A payload that is not a command at all.
    app.js
        .publish(
            jetshop_contracts::subjects::catalog::CREATE_PRODUCT,
            vec![0xc1, 0xff, 0x00].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let dead = app.stream_messages(DLQ, 5).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| header(m, headers::dlq::REASON).unwrap())
        .collect();
    let expect = [
        "stock",
        "already taken",
        "not found",
        "cannot remove 2",
        "malformed",
    ];
    for needle in expect {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no DLQ reason mentions {needle:?}: {reasons:?}"
        );
    }
    for m in &dead {
        assert_eq!(
            header(m, headers::dlq::CONSUMER).as_deref(),
            Some("catalog-commands")
        );
        assert_eq!(
            header(m, headers::dlq::DELIVERIES).as_deref(),
            Some("1"),
            "permanent errors are not retried"
        );
        assert_eq!(
            header(m, headers::dlq::STREAM).as_deref(),
            Some("CATALOG_COMMANDS")
        );
    }

    // Only the first create produced an event, and the service still works.
    assert_eq!(app.stream_count(EVENTS).await, 1);
    let later = app.create("LATER", "Still works", 1).await;
    let p = app
        .rpc
        .call(&GetProduct { id: later.id }, &MessageMeta::default())
        .await
        .unwrap();
    assert_eq!(p.sku, "LATER");
    let unchanged = app
        .rpc
        .call(&GetProduct { id: existing.id }, &MessageMeta::default())
        .await
        .unwrap();
    assert_eq!(unchanged.stock, 1);
}

#[tokio::test]
async fn a_repeated_create_has_one_effect() {
    let app = TestCatalog::spawn().await;
    let cmd = create_cmd("ONCE", "Once", 1);
    // Two sends with different message ids get past JetStream's dedupe;
    // the catalog still creates once and emits one event.
    app.send(&cmd).await;
    app.send(&cmd).await;
    app.wait_for_product(cmd.id).await;
    let marker = app.create("MARKER", "Marker", 1).await;
    app.wait_for_product(marker.id).await;
    let events = app.stream_messages(EVENTS, 2).await;
    assert_eq!(
        events.len(),
        2,
        "one event for the product, one for the marker"
    );
    let dead = app.stream_count(DLQ).await;
    if dead > 0 {
        let reasons: Vec<_> = app
            .stream_messages(DLQ, dead)
            .await
            .iter()
            .map(|m| header(m, headers::dlq::REASON))
            .collect();
        panic!("nothing should be dead-lettered: {reasons:?}");
    }
}

#[tokio::test]
async fn concurrent_stock_takes_never_oversell() {
    let app = TestCatalog::spawn().await;
    let cmd = app.create("SCARCE", "Scarce", 10).await;
    let take = AdjustStock {
        id: cmd.id,
        delta: -1,
        reason: None,
    };
    futures::future::join_all((0..30).map(|_| app.send(&take))).await;

    let dead = app.stream_messages(DLQ, 20).await;
    assert_eq!(dead.len(), 20);
    let events = app.stream_messages(EVENTS, 11).await;
    assert_eq!(
        events.len(),
        11,
        "one create and exactly ten successful takes"
    );
    let p = app
        .rpc
        .call(&GetProduct { id: cmd.id }, &MessageMeta::default())
        .await
        .unwrap();
    assert_eq!(p.stock, 0);
}

#[tokio::test]
async fn products_survive_a_restart() {
    let mut app = TestCatalog::spawn().await;
    let cmd = app.create("KEEP", "Kept", 4).await;
    app.stop().await;
    // A second instance on the same database and NATS server sees it.
    let settings = jetshop_catalog::CatalogSettings::for_database(app._db.url.clone());
    let rt = jetshop_platform::runtime::Runtime::new(app.client.clone(), 1);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(jetshop_catalog::run(settings, rt, stop.clone()));
    let p = app.wait_for_product(cmd.id).await;
    assert_eq!(p.stock, 4);
    stop.cancel();
    task.await.unwrap().unwrap();
}
