//! Webhooks: a signed POST per order outcome to a real HTTP server,
//! retried and dead-lettered when the receiver keeps failing.

use hmac::{Hmac, Mac};
use jetshop_contracts::{
    Encoding, Message,
    headers::{self, dlq},
    notifications::{Channel, NotificationFailed, NotificationSent, SetWebhook},
    orders::{OrderCancelled, OrderConfirmed},
    streams,
};
use jetshop_notifications::{
    audit::{self, DeliveryState},
    handlers::{events::ORDERS_CONSUMER, webhooks::CONSUMER as WEBHOOKS_CONSUMER},
};
use jetshop_platform::envelope::MessageMeta;
use jetshop_testkit::{header, stream_count, stream_messages};
use sha2::Sha256;
use uuid::Uuid;

use crate::helpers::{HookServer, TestApp, cancelled, confirmed};

async fn register(app: &TestApp, user_id: Uuid, url: &str) -> String {
    let hook = app
        .rpc
        .call_once(
            &SetWebhook {
                user_id,
                url: url.into(),
            },
            &MessageMeta::default(),
        )
        .await
        .unwrap();
    hook.secret.expect("set answers the secret")
}

/// Check `Jetshop-Signature` independently of the service's code.
fn assert_signed(secret: &str, signature: &str, body: &str) {
    let (t, v1) = signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature {signature}"));
    let ts: i64 = t.parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 600,
        "stale timestamp {ts}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature is HMAC-SHA256(secret, \"<t>.<body>\")");
}

#[tokio::test]
async fn a_confirmed_order_is_posted_signed_to_the_customer_webhook_once() {
    let app = TestApp::spawn().await;
    let receiver = HookServer::start(204).await;
    let customer = Uuid::now_v7();
    let secret = register(&app, customer, &receiver.url).await;
    let order = confirmed(customer, Some("ada@example.com"));
    app.publish(&order).await;

    let calls = receiver.wait_for(1).await;
    let call = &calls[0];
    assert_eq!(call.headers["content-type"], "application/json");
    assert_eq!(call.headers["jetshop-event"], OrderConfirmed::TYPE);
    let delivery_id = Uuid::parse_str(&call.headers["jetshop-delivery"]).unwrap();
    assert_signed(&secret, &call.headers["jetshop-signature"], &call.body);
    let body: serde_json::Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(body["id"], delivery_id.to_string());
    assert_eq!(body["type"], "orders.confirmed");
    assert_eq!(body["data"]["order_id"], order.order_id.to_string());
    assert_eq!(body["data"]["total"]["amount_minor"], 5750);

    // The email goes out too, and both deliveries are announced.
    app.smtp().wait_for_messages(1).await;
    let events = stream_messages(&app.js, streams::NOTIFICATIONS_EVENTS, 2).await;
    let mut channels: Vec<Channel> = events
        .iter()
        .map(|m| {
            Encoding::MsgPack
                .decode::<NotificationSent>(&m.payload)
                .unwrap()
                .channel
        })
        .collect();
    channels.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(channels, vec![Channel::Email, Channel::Webhook]);

    // The same fact again, under a new message id: no second call.
    app.publish(&order).await;
    app.wait_idle(streams::ORDERS_EVENTS, ORDERS_CONSUMER).await;
    app.wait_idle(streams::NOTIFICATIONS_COMMANDS, WEBHOOKS_CONSUMER)
        .await;
    assert_eq!(receiver.received().len(), 1);
    let hooks = audit::webhooks_by_order(&app.audit().await).await.unwrap();
    assert_eq!(
        hooks[&order.order_id],
        vec![("order-confirmed".to_owned(), DeliveryState::Sent)]
    );
}

#[tokio::test]
async fn a_failing_webhook_is_retried_then_dead_lettered_with_the_reason() {
    let app = TestApp::spawn().await; // max_deliver 3
    let receiver = HookServer::start(500).await;
    let customer = Uuid::now_v7();
    register(&app, customer, &receiver.url).await;
    let order = cancelled(customer, Some("ada@example.com"), "stock unavailable");
    app.publish(&order).await;

    let dead = stream_messages(&app.js, streams::DLQ, 1).await;
    assert_eq!(
        header(&dead[0], dlq::CONSUMER).as_deref(),
        Some(WEBHOOKS_CONSUMER)
    );
    let reason = header(&dead[0], dlq::REASON).unwrap();
    assert!(
        reason.contains("gave up after 3 deliveries") && reason.contains("500"),
        "{reason}"
    );
    assert_eq!(header(&dead[0], dlq::DELIVERIES).as_deref(), Some("3"));
    // One call per delivery, all with the same delivery id.
    let calls = receiver.received();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| c.headers["jetshop-delivery"] == calls[0].headers["jetshop-delivery"])
    );
    assert!(
        calls
            .iter()
            .all(|c| c.headers["jetshop-event"] == OrderCancelled::TYPE)
    );

    // The failure is logged and announced; the email was not held up by it.
    let failed = stream_messages(&app.js, streams::NOTIFICATIONS_EVENTS, 2).await;
    let failed: Vec<NotificationFailed> = failed
        .iter()
        .filter(|m| header(m, headers::TYPE).as_deref() == Some(NotificationFailed::TYPE))
        .map(|m| Encoding::MsgPack.decode(&m.payload).unwrap())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].channel, Channel::Webhook);
    assert_eq!(failed[0].order_id, Some(order.order_id));
    assert!(failed[0].reason.contains("500"));
    let db = app.audit().await;
    let hooks = audit::webhooks_by_order(&db).await.unwrap();
    assert_eq!(
        hooks[&order.order_id],
        vec![("order-cancelled".to_owned(), DeliveryState::Failed)]
    );
    let emails = audit::emails_by_order(&db).await.unwrap();
    assert_eq!(
        emails[&order.order_id],
        vec![("order-cancelled".to_owned(), DeliveryState::Sent)]
    );
}

#[tokio::test]
async fn a_webhook_refusing_with_4xx_is_dead_lettered_at_once() {
    let app = TestApp::spawn().await;
    let receiver = HookServer::start(410).await;
    let customer = Uuid::now_v7();
    register(&app, customer, &receiver.url).await;
    app.publish(&confirmed(customer, None)).await;

    let dead = stream_messages(&app.js, streams::DLQ, 1).await;
    let reason = header(&dead[0], dlq::REASON).unwrap();
    assert!(reason.contains("refused the call with 410"), "{reason}");
    assert_eq!(header(&dead[0], dlq::DELIVERIES).as_deref(), Some("1"));
    app.wait_idle(streams::NOTIFICATIONS_COMMANDS, WEBHOOKS_CONSUMER)
        .await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(stream_count(&app.js, streams::DLQ).await, 1);
}

#[tokio::test]
async fn customers_without_a_webhook_get_no_call() {
    let app = TestApp::spawn().await;
    let receiver = HookServer::start(204).await;
    let with_hook = Uuid::now_v7();
    register(&app, with_hook, &receiver.url).await;
    app.publish(&confirmed(Uuid::now_v7(), Some("bob@example.com")))
        .await;
    app.publish(&confirmed(with_hook, Some("ada@example.com")))
        .await;
    receiver.wait_for(1).await;
    app.smtp().wait_for_messages(2).await;
    app.wait_idle(streams::ORDERS_EVENTS, ORDERS_CONSUMER).await;
    app.wait_idle(streams::NOTIFICATIONS_COMMANDS, WEBHOOKS_CONSUMER)
        .await;
    assert_eq!(receiver.received().len(), 1);
}
