//! Emails: one per fact, to the right person, saying the right thing,
//! however often the fact arrives.

use jetshop_contracts::{
    Encoding, Message,
    notifications::{Channel, NotificationSent},
    streams,
};
use jetshop_notifications::{
    audit::{self, DeliveryState},
    handlers::events::{ORDERS_CONSUMER, USERS_CONSUMER},
};
use jetshop_testkit::{eventually, header, stream_count, stream_messages};
use std::time::Duration;
use uuid::Uuid;

use crate::helpers::{Options, TestApp, cancelled, confirmed, mail_header, registered};

#[tokio::test]
async fn an_order_confirmation_reaches_the_smtp_server_once() {
    let app = TestApp::spawn().await;
    let order = confirmed(Uuid::now_v7(), Some("ada@example.com"));
    app.publish(&order).await;

    let messages = app.smtp().wait_for_messages(1).await;
    let raw = &messages[0];
    assert_eq!(
        mail_header(raw, "X-RcptTo").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(mail_header(raw, "To").as_deref(), Some("ada@example.com"));
    assert_eq!(
        mail_header(raw, "From").as_deref(),
        Some("jetshop <no-reply@jetshop.local>")
    );
    let hex = order.order_id.simple().to_string();
    let short = hex[hex.len() - 8..].to_ascii_uppercase();
    assert_eq!(
        mail_header(raw, "Subject"),
        Some(format!("Your jetshop order {short} is confirmed"))
    );
    assert!(raw.contains("Total: 57.50 EUR"), "{raw}");
    assert!(raw.contains("2 x Blue mug (MUG-BLUE)  30.00 EUR"), "{raw}");
    assert!(raw.contains("text/html"), "an HTML alternative: {raw}");
    let message_id = mail_header(raw, "Message-ID").unwrap();
    assert!(message_id.ends_with("@jetshop.local>"), "{message_id}");

    // The delivery is logged and announced.
    let sent = stream_messages(&app.js, streams::NOTIFICATIONS_EVENTS, 1).await;
    assert_eq!(
        header(&sent[0], jetshop_contracts::headers::TYPE).as_deref(),
        Some(NotificationSent::TYPE)
    );
    let sent: NotificationSent = Encoding::MsgPack.decode(&sent[0].payload).unwrap();
    assert_eq!(sent.channel, Channel::Email);
    assert_eq!(sent.kind, "order-confirmed");
    assert_eq!(sent.order_id, Some(order.order_id));
    assert_eq!(sent.user_id, order.customer_id);
    assert_eq!(
        message_id,
        format!("<{}@jetshop.local>", sent.notification_id)
    );
    let emails = audit::emails_by_order(&app.audit().await).await.unwrap();
    assert_eq!(
        emails[&order.order_id],
        vec![("order-confirmed".to_owned(), DeliveryState::Sent)]
    );
}

#[tokio::test]
async fn the_same_event_twice_under_different_ids_and_redelivered_is_one_email() {
    // Many attempts: the SMTP server is down at first, so the first
    // deliveries fail and are nak'd, then redelivered.
    let mut app = TestApp::spawn_with(Options {
        consumer: jetshop_platform::config::ConsumerSettings {
            max_deliver: 1000,
            backoff: vec![Duration::from_millis(100)],
            ack_wait: Duration::from_secs(5),
            concurrency: 8,
            pin_timeout: Duration::from_secs(2),
        },
        ..Options::default()
    })
    .await;
    app.smtp.as_mut().unwrap().stop();
    let order = confirmed(Uuid::now_v7(), Some("grace@example.com"));
    app.publish(&order).await;
    app.publish(&order).await;
    app.publish(&order).await;

    // Wait until the outage has made the consumer redeliver.
    let js = app.js.clone();
    eventually(
        "redeliveries while SMTP is down",
        Duration::from_secs(20),
        || {
            let js = js.clone();
            async move {
                let mut c: async_nats::jetstream::consumer::Consumer<
                    async_nats::jetstream::consumer::pull::Config,
                > = js
                    .get_stream(streams::ORDERS_EVENTS)
                    .await
                    .ok()?
                    .get_consumer(ORDERS_CONSUMER)
                    .await
                    .ok()?;
                let info = c.info().await.ok()?;
                (info.num_redelivered >= 1).then_some(())
            }
        },
    )
    .await;
    assert!(app.smtp().messages().is_empty());

    app.smtp.as_mut().unwrap().restart();
    app.smtp().wait_for_messages(1).await;
    app.wait_idle(streams::ORDERS_EVENTS, ORDERS_CONSUMER).await;
    // Everything is acknowledged: nothing more can arrive.
    assert_eq!(app.smtp().messages().len(), 1);
    stream_messages(&app.js, streams::NOTIFICATIONS_EVENTS, 1).await;
    app.wait_idle(streams::ORDERS_EVENTS, ORDERS_CONSUMER).await;
    assert_eq!(
        stream_count(&app.js, streams::NOTIFICATIONS_EVENTS).await,
        1
    );
    let emails = audit::emails_by_order(&app.audit().await).await.unwrap();
    assert_eq!(
        emails[&order.order_id],
        vec![("order-confirmed".to_owned(), DeliveryState::Sent)]
    );
    assert_eq!(stream_count(&app.js, streams::DLQ).await, 0);
}

#[tokio::test]
async fn without_smtp_each_event_is_one_eml_file() {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    let customer = Uuid::now_v7();
    let ok = confirmed(customer, Some("ada@example.com"));
    let ko = cancelled(customer, Some("ada@example.com"), "card declined");
    let anonymous = confirmed(customer, None);
    for _ in 0..2 {
        app.publish(&ok).await;
        app.publish(&ko).await;
        app.publish(&anonymous).await;
    }
    app.wait_idle(streams::ORDERS_EVENTS, ORDERS_CONSUMER).await;

    let files = app.eml_files();
    assert_eq!(files.len(), 2, "{:?}", files.keys());
    let confirmation = &files[&format!("order-confirmed-{}.eml", ok.order_id)];
    assert_eq!(
        mail_header(confirmation, "To").as_deref(),
        Some("ada@example.com")
    );
    assert!(confirmation.contains("Total: 57.50 EUR"));
    let cancellation = &files[&format!("order-cancelled-{}.eml", ko.order_id)];
    assert!(
        mail_header(cancellation, "Subject")
            .unwrap()
            .ends_with("was cancelled")
    );
    assert!(
        cancellation.contains("was cancelled: card declined."),
        "{cancellation}"
    );

    // An order without an address is logged as skipped, not retried or dead-lettered.
    let emails = audit::emails_by_order(&app.audit().await).await.unwrap();
    assert_eq!(
        emails[&anonymous.order_id],
        vec![("order-confirmed".to_owned(), DeliveryState::Skipped)]
    );
    assert_eq!(
        emails[&ko.order_id],
        vec![("order-cancelled".to_owned(), DeliveryState::Sent)]
    );
    assert_eq!(stream_count(&app.js, streams::DLQ).await, 0);
}

#[tokio::test]
async fn a_new_account_gets_one_welcome_email() {
    let app = TestApp::spawn().await;
    let event = registered("lin@example.com", "Lin");
    app.publish(&event).await;
    app.publish(&event).await;

    let messages = app.smtp().wait_for_messages(1).await;
    assert_eq!(
        mail_header(&messages[0], "To").as_deref(),
        Some("lin@example.com")
    );
    assert_eq!(
        mail_header(&messages[0], "Subject").as_deref(),
        Some("Welcome to jetshop, Lin")
    );
    app.wait_idle(streams::USERS_EVENTS, USERS_CONSUMER).await;
    assert_eq!(app.smtp().messages().len(), 1);
    let welcomes = audit::welcomes_by_user(&app.audit().await).await.unwrap();
    assert_eq!(welcomes[&event.user.id], DeliveryState::Sent);
}

#[tokio::test]
async fn a_restarted_service_finds_its_log_and_sends_nothing_again() {
    let mut app = TestApp::spawn().await;
    let order = confirmed(Uuid::now_v7(), Some("ada@example.com"));
    app.publish(&order).await;
    app.smtp().wait_for_messages(1).await;
    app.stop().await;
    // The event again while the service is down: on restart it finds the
    // delivery log and sends nothing.
    app.publish(&order).await;
    app.start().await;
    app.wait_idle(streams::ORDERS_EVENTS, ORDERS_CONSUMER).await;
    assert_eq!(app.smtp().messages().len(), 1);
}
