//! The catalog's RPC endpoints, as MessagePack and JSON callers see them.

use jetshop_contracts::{
    ErrorCode,
    catalog::{GetProduct, ListProducts, Product, ProductPage},
    headers, subjects,
};
use jetshop_platform::{envelope::MessageMeta, rpc::CallError};
use uuid::Uuid;

use crate::helpers::TestCatalog;

#[tokio::test]
async fn get_returns_the_product_and_not_found_for_unknown_ids() {
    let app = TestCatalog::spawn().await;
    let cmd = app.create("MUG-1", "Mug", 3).await;
    let p = app
        .rpc
        .call(&GetProduct { id: cmd.id }, &MessageMeta::default())
        .await
        .unwrap();
    assert_eq!(p.sku, "MUG-1");
    assert_eq!(p.stock, 3);
    assert_eq!(p.price.amount_minor, 1500);
    assert_eq!(p.version, 1);

    let err = app
        .rpc
        .call(&GetProduct { id: Uuid::now_v7() }, &MessageMeta::default())
        .await
        .unwrap_err();
    match err {
        CallError::Remote(e) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("expected not found, got {other:?}"),
    }
}

#[tokio::test]
async fn list_paginates_with_a_cursor_and_filters_by_text() {
    let app = TestCatalog::spawn().await;
    for (sku, name) in [
        ("A-1", "Red apple"),
        ("B-2", "Green apple"),
        ("C-3", "Banana"),
        ("D-4", "APPLE pie"),
    ] {
        app.create(sku, name, 1).await;
    }
    let meta = MessageMeta::default();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page: ProductPage = app
            .rpc
            .call(
                &ListProducts {
                    cursor,
                    limit: Some(3),
                    ..Default::default()
                },
                &meta,
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|p| p.sku.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["A-1", "B-2", "C-3", "D-4"]);

    let apples = app
        .rpc
        .call(
            &ListProducts {
                q: Some("apple".into()),
                ..Default::default()
            },
            &meta,
        )
        .await
        .unwrap();
    let mut skus: Vec<_> = apples.items.iter().map(|p| p.sku.as_str()).collect();
    skus.sort();
    assert_eq!(
        skus,
        ["A-1", "B-2", "D-4"],
        "the filter is case-insensitive"
    );

    let exact = app
        .rpc
        .call(
            &ListProducts {
                sku: Some("b-2".into()),
                ..Default::default()
            },
            &meta,
        )
        .await
        .unwrap();
    assert_eq!(
        exact
            .items
            .iter()
            .map(|p| p.sku.as_str())
            .collect::<Vec<_>>(),
        ["B-2"]
    );
    let none = app
        .rpc
        .call(
            &ListProducts {
                sku: Some("B".into()),
                ..Default::default()
            },
            &meta,
        )
        .await
        .unwrap();
    assert!(none.items.is_empty(), "the sku filter is exact");

    let wildcard = app
        .rpc
        .call(
            &ListProducts {
                q: Some("%".into()),
                ..Default::default()
            },
            &meta,
        )
        .await
        .unwrap();
    assert!(wildcard.items.is_empty(), "LIKE wildcards in q are literal");
}

#[tokio::test]
async fn list_refuses_bad_limits_and_cursors() {
    let app = TestCatalog::spawn().await;
    let meta = MessageMeta::default();
    for req in [
        ListProducts {
            limit: Some(0),
            ..Default::default()
        },
        ListProducts {
            limit: Some(101),
            ..Default::default()
        },
        ListProducts {
            cursor: Some("not-a-cursor".into()),
            ..Default::default()
        },
    ] {
        match app.rpc.call(&req, &meta).await {
            Err(CallError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::BadRequest, "{req:?}");
                assert!(e.details.is_some(), "details name the field");
            }
            other => panic!("{req:?}: expected bad request, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn json_callers_get_json_back_like_the_nats_cli() {
    let app = TestCatalog::spawn().await;
    let cmd = app.create("JSON-1", "Json thing", 2).await;
    // What `nats req catalog.rpc.product.get '{"id":"..."}'` sends: no headers.
    let body = serde_json::to_vec(&serde_json::json!({ "id": cmd.id })).unwrap();
    let reply = app
        .client
        .request(subjects::catalog::RPC_PRODUCT_GET, body.into())
        .await
        .unwrap();
    let product: Product = serde_json::from_slice(&reply.payload).expect("reply is JSON");
    assert_eq!(product.sku, "JSON-1");
    assert_eq!(
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::CONTENT_TYPE))
            .map(|v| v.as_str()),
        Some("application/json")
    );

    // A list request with an explicit JSON content type.
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::CONTENT_TYPE, "application/json");
    let reply = app
        .client
        .request_with_headers(subjects::catalog::RPC_PRODUCT_LIST, h, "{}".into())
        .await
        .unwrap();
    let page: ProductPage = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(page.items.len(), 1);

    // And a malformed one gets a clear error reply, not silence.
    let reply = app
        .client
        .request(subjects::catalog::RPC_PRODUCT_GET, "{\"id\": 42}".into())
        .await
        .unwrap();
    let h = reply.headers.expect("error headers");
    assert_eq!(h.get(headers::SERVICE_ERROR_CODE).unwrap().as_str(), "400");
    assert!(
        h.get(headers::SERVICE_ERROR)
            .unwrap()
            .as_str()
            .contains("malformed")
    );
}

#[tokio::test]
async fn the_service_is_visible_to_the_micro_protocol() {
    let app = TestCatalog::spawn().await;
    let info = app
        .client
        .request("$SRV.INFO.catalog", "".into())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "catalog");
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&subjects::catalog::RPC_PRODUCT_GET));
    assert!(subjects.contains(&subjects::catalog::RPC_PRODUCT_LIST));
}

#[tokio::test]
async fn reads_follow_writes_made_by_any_replica() {
    let app = TestCatalog::spawn().await;
    // A second replica on the same database and NATS: RPC requests and
    // commands are spread over both, each with its own read cache.
    let second_stop = tokio_util::sync::CancellationToken::new();
    let second = tokio::spawn(jetshop_catalog::run(
        jetshop_catalog::CatalogSettings::for_database(app._db.url.clone()),
        jetshop_platform::runtime::Runtime::new(app.client.clone(), 1),
        second_stop.clone(),
    ));
    let cmd = app.create("CACHED-1", "Before", 5).await;
    let meta = MessageMeta::default();
    // Warm both caches.
    for _ in 0..20 {
        app.rpc
            .call(&GetProduct { id: cmd.id }, &meta)
            .await
            .unwrap();
    }
    app.send(&jetshop_contracts::catalog::UpdateProduct {
        id: cmd.id,
        name: Some("After".into()),
        description: None,
        price: None,
    })
    .await;
    let rpc = app.rpc.clone();
    jetshop_testkit::eventually(
        "every replica to serve the new name",
        std::time::Duration::from_secs(5),
        || {
            let rpc = rpc.clone();
            async move {
                for _ in 0..20 {
                    let p = rpc
                        .call(&GetProduct { id: cmd.id }, &MessageMeta::default())
                        .await
                        .ok()?;
                    if p.name != "After" {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    second_stop.cancel();
    second.await.unwrap().unwrap();
}
