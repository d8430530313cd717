//! RPC over the NATS micro protocol: JSON and MessagePack callers, error
//! replies, malformed requests, discovery, timeouts and retries.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use futures::StreamExt;
use jetshop_contracts::{Encoding, ErrorCode, Rpc, RpcError, headers};
use jetshop_platform::{
    breaker::BreakerState,
    envelope::MessageMeta,
    rpc::{BreakerPolicy, CallError, ERROR_HEADER, RpcClient, RpcService},
};

use crate::common::{ECHO_ENDPOINT, ECHO_GROUP, Echo, EchoReply, Nats};

const SERVICE: &str = "echo";

async fn echo(req: Echo, meta: MessageMeta) -> Result<EchoReply, RpcError> {
    if req.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(req.delay_ms)).await;
    }
    if req.fail {
        return Err(RpcError::not_found(format!("no {}\nanywhere", req.text))
            .with_details(serde_json::json!({ "field": "text", "value": req.text })));
    }
    let text = match meta.correlation_id {
        Some(c) => format!("{}|{c}", req.text),
        None => req.text,
    };
    Ok(EchoReply { text })
}

async fn serve(client: &async_nats::Client) -> RpcService {
    let mut service = RpcService::start(client, SERVICE, "1.2.3", "echoes text")
        .await
        .unwrap();
    service
        .endpoint::<Echo, _, _>(ECHO_GROUP, ECHO_ENDPOINT, echo)
        .await
        .unwrap();
    service
}

fn hello() -> Echo {
    Echo {
        text: "hello".into(),
        delay_ms: 0,
        fail: false,
    }
}

fn header<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

#[tokio::test]
async fn json_callers_get_json_back() {
    let nats = Nats::start().await;
    let service = serve(&nats.client).await;

    let mut h = HeaderMap::new();
    h.insert(headers::CONTENT_TYPE, "application/json");
    let reply = nats
        .client
        .request_with_headers(Echo::SUBJECT, h, r#"{"text":"hi"}"#.into())
        .await
        .unwrap();
    assert_eq!(
        header(&reply, headers::CONTENT_TYPE),
        Some("application/json")
    );
    assert_eq!(header(&reply, headers::TYPE), Some("test.echo-reply"));
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body, serde_json::json!({ "text": "hi" }));

    // What `nats req test.rpc.echo.say '{"text":"cli"}'` sends: no headers.
    let reply = nats
        .client
        .request(Echo::SUBJECT, r#" {"text":"cli"}"#.into())
        .await
        .unwrap();
    assert_eq!(
        header(&reply, headers::CONTENT_TYPE),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body, serde_json::json!({ "text": "cli" }));
    service.stop().await;
}

#[tokio::test]
async fn msgpack_caller_gets_the_typed_reply() {
    let nats = Nats::start().await;
    let service = serve(&nats.client).await;
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_secs(2), 0);

    let reply = rpc
        .call(&hello(), &MessageMeta::correlated("corr-9"))
        .await
        .unwrap();
    assert_eq!(reply.text, "hello|corr-9");

    // The wire really is MessagePack both ways.
    let mut h = HeaderMap::new();
    h.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
    let raw = nats
        .client
        .request_with_headers(
            Echo::SUBJECT,
            h,
            Encoding::MsgPack.encode(&hello()).unwrap().into(),
        )
        .await
        .unwrap();
    assert_eq!(
        header(&raw, headers::CONTENT_TYPE),
        Some(Encoding::MsgPack.content_type())
    );
    let reply: EchoReply = Encoding::MsgPack.decode(&raw.payload).unwrap();
    assert_eq!(reply.text, "hello");

    // A stopped service no longer answers.
    service.stop().await;
    let err = rpc
        .call_once(&hello(), &MessageMeta::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NoResponders { .. }), "{err:?}");
}

#[tokio::test]
async fn handler_errors_reach_the_caller_with_code_message_and_details() {
    let nats = Nats::start().await;
    let service = serve(&nats.client).await;
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_secs(2), 2);
    let failing = Echo {
        text: "widget".into(),
        delay_ms: 0,
        fail: true,
    };

    let started = Instant::now();
    let err = rpc
        .call(&failing, &MessageMeta::default())
        .await
        .unwrap_err();
    let CallError::Remote(err) = err else {
        panic!("expected a remote error, got {err:?}")
    };
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(err.message, "no widget\nanywhere");
    assert_eq!(
        err.details,
        Some(serde_json::json!({ "field": "text", "value": "widget" }))
    );
    // Not retryable: answered at once.
    assert!(started.elapsed() < Duration::from_millis(500));

    // What the NATS CLI sees: the micro error headers.
    let reply = nats
        .client
        .request(Echo::SUBJECT, r#"{"text":"widget","fail":true}"#.into())
        .await
        .unwrap();
    assert_eq!(header(&reply, headers::SERVICE_ERROR_CODE), Some("404"));
    assert_eq!(
        header(&reply, headers::SERVICE_ERROR),
        Some("no widget anywhere")
    );
    let full: RpcError = serde_json::from_str(header(&reply, ERROR_HEADER).unwrap()).unwrap();
    assert_eq!(full.code, ErrorCode::NotFound);
    service.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_bad_requests() {
    let nats = Nats::start().await;
    let service = serve(&nats.client).await;

    let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("application/json"), b"{not json".to_vec()),
        (Some("application/json"), br#"{"wrong":"shape"}"#.to_vec()),
        (None, b"{\"text\": 5}".to_vec()),
        (Some("application/msgpack"), vec![0xc1, 0x00]),
        (None, vec![0x93, 0x01, 0x02, 0x03]),
        (Some("text/xml"), b"<echo/>".to_vec()),
    ];
    for (content_type, payload) in cases {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(headers::CONTENT_TYPE, ct);
        }
        let reply = nats
            .client
            .request_with_headers(Echo::SUBJECT, h, payload.clone().into())
            .await
            .unwrap();
        assert_eq!(
            header(&reply, headers::SERVICE_ERROR_CODE),
            Some("400"),
            "{content_type:?} {payload:?}"
        );
        let full: RpcError = serde_json::from_str(header(&reply, ERROR_HEADER).unwrap()).unwrap();
        assert_eq!(full.code, ErrorCode::BadRequest);
    }
    service.stop().await;
}

#[tokio::test]
async fn micro_ping_and_info_answer() {
    let nats = Nats::start().await;
    let service = serve(&nats.client).await;

    let ping = nats
        .client
        .request(format!("$SRV.PING.{SERVICE}"), "".into())
        .await
        .unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], SERVICE);
    assert_eq!(ping["version"], "1.2.3");
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");

    let info = nats
        .client
        .request(format!("$SRV.INFO.{SERVICE}"), "".into())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], SERVICE);
    assert_eq!(info["description"], "echoes text");
    let endpoints = info["endpoints"].as_array().unwrap();
    let subjects: Vec<&str> = endpoints
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, [Echo::SUBJECT]);
    assert_eq!(endpoints[0]["queue_group"], "q");

    // Every instance answers a plain ping.
    let _second = serve(&nats.client).await;
    let inbox = nats.client.new_inbox();
    let mut replies = nats.client.subscribe(inbox.clone()).await.unwrap();
    nats.client
        .publish_with_reply("$SRV.PING", inbox, "".into())
        .await
        .unwrap();
    for _ in 0..2 {
        let reply = tokio::time::timeout(Duration::from_secs(2), replies.next())
            .await
            .expect("every instance pings back")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(v["name"], SERVICE);
    }
    service.stop().await;
}

#[tokio::test]
async fn no_service_means_no_responders_at_once() {
    let nats = Nats::start().await;
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_secs(5), 0);
    let started = Instant::now();
    let err = rpc
        .call(&hello(), &MessageMeta::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NoResponders { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_handler_times_out() {
    let nats = Nats::start().await;
    let service = serve(&nats.client).await;
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_millis(300), 0);
    let slow = Echo {
        text: "zzz".into(),
        delay_ms: 1000,
        fail: false,
    };
    let started = Instant::now();
    let err = rpc.call(&slow, &MessageMeta::default()).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    service.stop().await;
}

#[tokio::test]
async fn retries_reach_a_service_that_comes_up_late() {
    let nats = Nats::start().await;
    // Stands in for a service that is not answering yet: it takes the first
    // request (so we know the first attempt happened) and never replies.
    let mut silent = nats.client.subscribe(Echo::SUBJECT).await.unwrap();
    nats.client.flush().await.unwrap();

    let rpc = RpcClient::new(nats.client.clone(), Duration::from_millis(400), 2);
    let call = tokio::spawn(async move { rpc.call(&hello(), &MessageMeta::default()).await });

    tokio::time::timeout(Duration::from_secs(5), silent.next())
        .await
        .expect("first attempt")
        .unwrap();
    silent.unsubscribe().await.unwrap();
    let service = serve(&nats.client).await;

    let reply = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("call finishes")
        .unwrap()
        .unwrap();
    assert_eq!(reply.text, "hello");
    service.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_still_answers_with_an_internal_error() {
    let nats = Nats::start().await;
    let mut service = RpcService::start(&nats.client, "panicky", "0.1.0", "panics")
        .await
        .unwrap();
    service
        .endpoint::<Echo, _, _>(ECHO_GROUP, ECHO_ENDPOINT, |_req: Echo, _meta| async {
            if true {
                panic!("bug in endpoint");
            }
            Ok(EchoReply {
                text: String::new(),
            })
        })
        .await
        .unwrap();
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_secs(2), 0);
    match rpc.call(&hello(), &MessageMeta::default()).await {
        Err(CallError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::Internal);
            assert!(e.message.contains("bug in endpoint"), "{}", e.message);
        }
        other => panic!("expected an internal error reply, got {other:?}"),
    }
    // And the endpoint keeps serving.
    assert!(matches!(
        rpc.call(&hello(), &MessageMeta::default()).await,
        Err(CallError::Remote(_))
    ));
    service.stop().await;
}

#[tokio::test]
async fn a_service_that_stops_answering_is_refused_at_once_until_a_probe_finds_it_back() {
    let nats = Nats::start().await;
    let open_for = Duration::from_millis(500);
    let rpc = RpcClient::new(nats.client.clone(), Duration::from_secs(2), 0).with_breakers(
        "test",
        BreakerPolicy {
            failure_threshold: 3,
            open_for,
        },
    );
    let meta = MessageMeta::default();

    // Nobody serves the echo service: three failures open its breaker.
    for _ in 0..3 {
        let err = rpc.call(&hello(), &meta).await.unwrap_err();
        assert!(matches!(err, CallError::NoResponders { .. }), "{err:?}");
    }
    assert_eq!(rpc.breaker_state("test"), BreakerState::Open);
    let err = rpc.call(&hello(), &meta).await.unwrap_err();
    let CallError::CircuitOpen {
        service,
        retry_after,
    } = err
    else {
        panic!("expected an open circuit, got {err:?}")
    };
    assert_eq!(service, "test");
    assert!(retry_after <= open_for && retry_after > Duration::ZERO);

    // It comes back; after the open period one probe finds it and closes
    // the breaker.
    let service = serve(&nats.client).await;
    tokio::time::sleep(open_for).await;
    assert_eq!(rpc.breaker_state("test"), BreakerState::HalfOpen);
    rpc.call(&hello(), &meta).await.expect("the probe succeeds");
    assert_eq!(rpc.breaker_state("test"), BreakerState::Closed);

    // An answer that says no is an answer: it never opens the breaker.
    let failing = Echo {
        text: "nothing".into(),
        delay_ms: 0,
        fail: true,
    };
    for _ in 0..5 {
        let err = rpc.call(&failing, &meta).await.unwrap_err();
        assert!(matches!(err, CallError::Remote(_)), "{err:?}");
    }
    assert_eq!(rpc.breaker_state("test"), BreakerState::Closed);
    service.stop().await;
}
