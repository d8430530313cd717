//! The card processor driven over HTTP, as payments reaches it: a real
//! server on a free port with a real database (SQLite, or PostgreSQL with
//! `TEST_DATABASE=postgres`), started by `jetshop_testkit::CardProcessor`.

use std::time::{Duration, Instant};

use jetshop_contracts::card_processor::{
    Authorization, Capture, CreateAuthorization, CreateCapture, CreateRefund, CreateVoid,
    ErrorBody, ErrorType, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, Refund, Void, codes, paths,
};
use jetshop_testkit::CardProcessor;
use reqwest::StatusCode;
use serde::Serialize;
use uuid::Uuid;

struct Client {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: StatusCode,
    replayed: bool,
    body: String,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn error(&self) -> (StatusCode, ErrorType, String) {
        let e: ErrorBody = self.json();
        (self.status, e.error.kind, e.error.code)
    }
}

impl Client {
    fn new(processor: &CardProcessor) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: processor.url(),
        }
    }

    async fn post<B: Serialize>(&self, path: &str, key: Option<&str>, body: &B) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(key) = key {
            req = req.header(IDEMPOTENCY_KEY, key);
        }
        let resp = req.send().await.expect("the processor answers");
        Answer {
            status: resp.status(),
            replayed: resp
                .headers()
                .get(IDEMPOTENT_REPLAYED)
                .is_some_and(|v| v == "true"),
            body: resp.text().await.unwrap(),
        }
    }
}

fn auth(token: &str) -> CreateAuthorization {
    CreateAuthorization {
        merchant_reference: Uuid::new_v4(),
        order_reference: Uuid::new_v4(),
        amount_minor: 1500,
        currency: "EUR".into(),
        card_token: token.into(),
    }
}

fn key() -> String {
    format!("test-{}", Uuid::new_v4())
}

#[tokio::test]
async fn a_repeated_key_replays_the_same_body_and_another_body_is_refused() {
    let processor = CardProcessor::start().await;
    let c = Client::new(&processor);
    let req = auth("tok_visa");
    let k = key();
    let first = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(!first.replayed);
    let a: Authorization = first.json();
    assert!(a.id.as_str().starts_with("auth_"));

    let again = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.replayed);
    assert_eq!(again.body, first.body, "byte for byte the first answer");

    let mut other = req.clone();
    other.amount_minor = 1;
    let reused = c.post(paths::AUTHORIZATIONS, Some(&k), &other).await;
    assert_eq!(
        reused.error(),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::IdempotencyError,
            codes::IDEMPOTENCY_KEY_REUSED.into()
        )
    );
    // The same key on another operation is another request too.
    let void = CreateVoid {
        merchant_reference: req.merchant_reference,
        order_reference: req.order_reference,
    };
    assert_eq!(
        c.post(paths::VOIDS, Some(&k), &void).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let activity = processor.activity(req.order_reference).await;
    assert_eq!(activity.authorizations, 1, "held once");
    assert_eq!(activity.calls, 4, "every request counts as a call");
}

#[tokio::test]
async fn card_tokens_decide_and_declines_are_replayed_too() {
    let processor = CardProcessor::start().await;
    let c = Client::new(&processor);
    for (token, status, kind, code) in [
        (
            "tok_chargeDeclined",
            StatusCode::PAYMENT_REQUIRED,
            ErrorType::CardError,
            codes::CARD_DECLINED,
        ),
        (
            "tok_insufficientFunds",
            StatusCode::PAYMENT_REQUIRED,
            ErrorType::CardError,
            codes::INSUFFICIENT_FUNDS,
        ),
        (
            "tok_doesNotExist",
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequestError,
            codes::INVALID_TOKEN,
        ),
    ] {
        let req = auth(token);
        let k = key();
        let first = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
        assert_eq!(first.error(), (status, kind, code.into()), "{token}");
        let again = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
        assert!(again.replayed, "{token}: a definitive 4xx is kept");
        assert_eq!(again.body, first.body);
        assert_eq!(
            processor.activity(req.order_reference).await.authorizations,
            0
        );
    }
    // A malformed body is an invalid request, not a crash.
    let resp = c
        .post(
            paths::AUTHORIZATIONS,
            Some(&key()),
            &serde_json::json!({"amount_minor": "x"}),
        )
        .await;
    assert_eq!(resp.error().1, ErrorType::InvalidRequestError);
}

#[tokio::test]
async fn processing_errors_are_never_stored_so_the_same_key_tries_again() {
    let processor = CardProcessor::start().await;
    let c = Client::new(&processor);
    let req = auth("tok_processingError");
    let k = key();
    for _ in 0..2 {
        let failed = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
        assert_eq!(
            failed.error(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ApiError,
                codes::PROCESSING_ERROR.into()
            )
        );
        assert!(!failed.replayed);
    }
    let ok = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let activity = processor.activity(req.order_reference).await;
    assert_eq!((activity.calls, activity.authorizations), (3, 1));
}

#[tokio::test]
async fn a_timeout_card_answers_too_late_and_holds_nothing() {
    let processor = CardProcessor::start_with(|s| s.late_after = Duration::from_millis(300)).await;
    let c = Client::new(&processor);
    let req = auth("tok_timeout");
    let started = Instant::now();
    let late = c.post(paths::AUTHORIZATIONS, Some(&key()), &req).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(late.error().2, codes::TIMEOUT);
    let activity = processor.activity(req.order_reference).await;
    assert_eq!((activity.calls, activity.authorizations), (1, 0));
    assert!(processor.payment(req.merchant_reference).await.is_none());
}

#[tokio::test]
async fn capture_void_and_refund_follow_the_payment() {
    let processor = CardProcessor::start().await;
    let c = Client::new(&processor);
    let req = auth("tok_visa");
    let a: Authorization = c
        .post(paths::AUTHORIZATIONS, Some(&key()), &req)
        .await
        .json();
    let capture = paths::capture(&a.id);
    let too_much = c
        .post(
            &capture,
            Some(&key()),
            &CreateCapture { amount_minor: 1501 },
        )
        .await;
    assert_eq!(too_much.error().2, codes::AMOUNT_TOO_LARGE);
    let k = key();
    let cap = c
        .post(&capture, Some(&k), &CreateCapture { amount_minor: 1500 })
        .await;
    assert_eq!(cap.status, StatusCode::OK, "{}", cap.body);
    let cap: Capture = cap.json();
    assert_eq!(cap.authorization, a.id);
    let void = CreateVoid {
        merchant_reference: req.merchant_reference,
        order_reference: req.order_reference,
    };
    let refused = c.post(paths::VOIDS, Some(&key()), &void).await;
    assert_eq!(refused.error().2, codes::ALREADY_CAPTURED);
    let refund = CreateRefund {
        merchant_reference: req.merchant_reference,
        amount_minor: 1500,
    };
    let re = c.post(paths::REFUNDS, Some(&key()), &refund).await;
    assert_eq!(re.status, StatusCode::OK, "{}", re.body);
    let re: Refund = re.json();
    assert_eq!(re.amount_minor, 1500);
    let again = c.post(paths::REFUNDS, Some(&key()), &refund).await;
    assert_eq!(again.error().2, codes::ALREADY_REFUNDED);

    let unknown = c
        .post(
            "/v1/authorizations/auth_nope/capture",
            Some(&key()),
            &CreateCapture { amount_minor: 1 },
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let activity = processor.activity(req.order_reference).await;
    assert_eq!(
        (
            activity.authorizations,
            activity.captures,
            activity.voids,
            activity.refunds
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(
        (activity.captured_minor, activity.refunded_minor),
        (1500, 1500)
    );
    let p = processor.payment(req.merchant_reference).await.unwrap();
    assert_eq!(p.refunded_minor, 1500);
}

#[tokio::test]
async fn a_void_first_closes_the_payment_and_a_late_authorization_is_refused() {
    let processor = CardProcessor::start().await;
    let c = Client::new(&processor);
    let req = auth("tok_visa");
    let void = CreateVoid {
        merchant_reference: req.merchant_reference,
        order_reference: req.order_reference,
    };
    let v: Void = c.post(paths::VOIDS, Some(&key()), &void).await.json();
    assert_eq!(v.released_minor, 0);
    let late = c.post(paths::AUTHORIZATIONS, Some(&key()), &req).await;
    assert_eq!(
        late.error(),
        (
            StatusCode::CONFLICT,
            ErrorType::InvalidRequestError,
            codes::PAYMENT_CANCELED.into()
        )
    );
    assert_eq!(
        processor.activity(req.order_reference).await.authorizations,
        0
    );

    // After a hold, a void releases it.
    let req = auth("tok_visa");
    c.post(paths::AUTHORIZATIONS, Some(&key()), &req).await;
    let void = CreateVoid {
        merchant_reference: req.merchant_reference,
        order_reference: req.order_reference,
    };
    let v: Void = c.post(paths::VOIDS, Some(&key()), &void).await.json();
    assert_eq!(v.released_minor, 1500);
    let activity = processor.activity(req.order_reference).await;
    assert_eq!((activity.voids, activity.voided_minor), (1, 1500));
}

#[tokio::test]
async fn a_restart_keeps_every_payment_key_and_switch() {
    let mut processor = CardProcessor::start().await;
    let c = Client::new(&processor);
    let req = auth("tok_visa");
    let k = key();
    let first = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
    let a: Authorization = first.json();

    processor.restart().await;
    let replay = c.post(paths::AUTHORIZATIONS, Some(&k), &req).await;
    assert!(replay.replayed);
    assert_eq!(replay.body, first.body);
    let cap = c
        .post(
            &paths::capture(&a.id),
            Some(&key()),
            &CreateCapture { amount_minor: 1500 },
        )
        .await;
    assert_eq!(cap.status, StatusCode::OK, "{}", cap.body);

    processor.set_outage(true).await;
    processor.restart().await;
    let down = c
        .post(paths::AUTHORIZATIONS, Some(&key()), &auth("tok_visa"))
        .await;
    assert_eq!(
        down.error().2,
        codes::PROCESSOR_OUTAGE,
        "the outage survives"
    );
    processor.set_outage(false).await;
    assert_eq!(
        c.post(paths::AUTHORIZATIONS, Some(&key()), &auth("tok_visa"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_requests_for_one_payment_hold_once_and_agree() {
    let processor = CardProcessor::start().await;
    let req = auth("tok_visa");
    let k = key();
    // The same key from several callers at once, and other keys for the
    // same payment (a second payments replica's retry): one hold.
    let sends = (0..8).map(|i| {
        let c = Client::new(&processor);
        let req = req.clone();
        let k = if i % 2 == 0 { k.clone() } else { key() };
        async move { c.post(paths::AUTHORIZATIONS, Some(&k), &req).await }
    });
    let answers = futures::future::join_all(sends).await;
    let ids: Vec<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            a.json::<Authorization>().id.to_string()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let activity = processor.activity(req.order_reference).await;
    assert_eq!((activity.calls, activity.authorizations), (8, 1));
}
