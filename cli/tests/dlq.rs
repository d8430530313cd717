//! `jetshop dlq ...` as an operator runs it, against a real nats-server
//! holding a few dead letters shaped as the consumer runner writes them.

use std::process::Command;

use async_nats::{HeaderMap, jetstream};
use jetshop_contracts::{Encoding, headers, streams, subjects};
use jetshop_testkit::NatsServer;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_jetshop");

fn jetshop(server: &NatsServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("NATS_URL", server.url())
        .env("NATS_CONNECT_TIMEOUT", "5s")
        .output()
        .expect("run jetshop");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Dead-letter `payload` as `consumer` would have, for `reason`. Returns its DLQ sequence.
async fn dead_letter(js: &jetstream::Context, consumer: &str, reason: &str, n: u64) -> u64 {
    let mut h = HeaderMap::new();
    h.insert(
        headers::MSG_ID,
        format!("{}:{n}:{consumer}", streams::CATALOG_EVENTS).as_str(),
    );
    h.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
    h.insert(headers::TYPE, "catalog.product-created");
    h.insert(headers::CORRELATION_ID, "corr-cli");
    h.insert(
        headers::dlq::ORIGINAL_MSG_ID,
        format!("original-{n}").as_str(),
    );
    h.insert(headers::dlq::REASON, reason);
    h.insert(headers::dlq::CONSUMER, consumer);
    h.insert(headers::dlq::STREAM, streams::CATALOG_EVENTS);
    h.insert(headers::dlq::STREAM_SEQUENCE, n.to_string().as_str());
    h.insert(headers::dlq::DELIVERIES, "5");
    h.insert(headers::dlq::SUBJECT, subjects::catalog::PRODUCT_CREATED);
    let payload = Encoding::MsgPack
        .encode(&json!({"sku": format!("SKU-{n}"), "price_cents": 1299}))
        .unwrap();
    js.publish_with_headers(subjects::dlq::for_consumer(consumer), h, payload.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

fn one_error_line(err: &str) -> &str {
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0]
}

#[tokio::test]
async fn dlq_commands_list_show_replay_and_refuse_to_purge_without_yes() {
    jetshop_testkit::init_test_log();
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    jetshop_platform::nats::provision_streams(&js, &[streams::dlq(), streams::catalog_events()], 1)
        .await
        .unwrap();

    let (ok, out, err) = jetshop(&server, &["dlq", "ls"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "no dead letters");

    let first = dead_letter(&js, "search-products", "malformed payload", 1).await;
    dead_letter(&js, "search-products", "malformed payload", 2).await;
    let third = dead_letter(
        &js,
        "mail-users",
        "gave up after 5 deliveries: smtp down",
        3,
    )
    .await;

    // ls: a table, counts per consumer and reason.
    let (ok, out, err) = jetshop(&server, &["dlq", "ls"]);
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("CONSUMER") && lines[0].contains("REASON"));
    assert!(
        lines[1].starts_with("mail-users")
            && lines[1].contains(" 1  gave up after 5 deliveries: smtp down"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("search-products") && lines[2].contains(" 2  malformed payload"),
        "{out}"
    );
    assert_eq!(lines[3], "3 dead letters in all");

    let (ok, out, _) = jetshop(
        &server,
        &["dlq", "ls", "--json", "--consumer", "mail-users"],
    );
    assert!(ok);
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["total"], 1);
    assert_eq!(summary["counts"][0]["consumer"], "mail-users");

    // show: JSON with the headers and the payload decoded.
    let (ok, out, err) = jetshop(&server, &["dlq", "show", &first.to_string(), "--json"]);
    assert!(ok, "{out}{err}");
    let dead: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dead["sequence"], first);
    assert_eq!(dead["subject"], subjects::catalog::PRODUCT_CREATED);
    assert_eq!(dead["consumer"], "search-products");
    assert_eq!(dead["reason"], "malformed payload");
    assert_eq!(dead["stream"], streams::CATALOG_EVENTS);
    assert_eq!(dead["stream_sequence"], 1);
    assert_eq!(dead["deliveries"], 5);
    assert_eq!(dead["payload_encoding"], "msgpack");
    assert_eq!(
        dead["payload"],
        json!({"sku": "SKU-1", "price_cents": 1299})
    );
    assert_eq!(
        dead["headers"][headers::CORRELATION_ID],
        json!(["corr-cli"])
    );

    let (ok, _, err) = jetshop(&server, &["dlq", "show", "9999"]);
    assert!(!ok);
    assert!(
        one_error_line(&err).contains("no dead letter with sequence 9999"),
        "{err}"
    );

    // purge without --yes: refused, nothing deleted.
    let (ok, out, err) = jetshop(&server, &["dlq", "purge"]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(one_error_line(&err).contains("--yes"), "{err}");
    let (ok, _, err) = jetshop(&server, &["dlq", "replay"]);
    assert!(!ok);
    one_error_line(&err);
    let dlq = js.get_stream(streams::DLQ).await.unwrap();
    assert_eq!(dlq.get_info().await.unwrap().state.messages, 3);

    // replay one: back on its subject with a new id and Replay-Of, gone from the DLQ.
    let (ok, out, err) = jetshop(&server, &["dlq", "replay", &third.to_string()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "replayed #{third} (mail-users) to {}",
            subjects::catalog::PRODUCT_CREATED
        )),
        "{out}"
    );
    let events = js.get_stream(streams::CATALOG_EVENTS).await.unwrap();
    let replayed = events.get_raw_message(1).await.unwrap();
    assert_eq!(
        replayed.subject.as_str(),
        subjects::catalog::PRODUCT_CREATED
    );
    let h = &replayed.headers;
    assert_eq!(
        h.get(headers::REPLAY_OF).unwrap().as_str(),
        third.to_string()
    );
    assert_eq!(
        h.get(headers::REPLAY_ORIGINAL_MSG_ID).unwrap().as_str(),
        "original-3"
    );
    assert!(h.get(headers::dlq::REASON).is_none());
    let new_id = h.get(headers::MSG_ID).unwrap().as_str();
    assert!(out.contains(new_id), "{out}");
    assert_eq!(dlq.get_info().await.unwrap().state.messages, 2);

    // purge with --yes, per consumer.
    let (ok, out, err) = jetshop(
        &server,
        &["dlq", "purge", "--consumer", "search-products", "--yes"],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        "purged 2 dead letters (dead letters of consumer search-products)"
    );
    let (ok, out, _) = jetshop(&server, &["dlq", "ls"]);
    assert!(ok);
    assert_eq!(out.trim(), "no dead letters");
}
