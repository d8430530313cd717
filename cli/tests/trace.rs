//! One trace per order: `jetshop up` exports its spans over OTLP/HTTP to a
//! receiver that decodes the protobuf, a customer signs in (code flow with
//! PKCE) and places one order through the REST API, and once the order is
//! final and notifications has handled it, the order's trace must hold
//! together: every span of it under one trace id, one root (the gateway's
//! `POST /v1/orders`), every other span's parent in the trace, the work
//! of the gateway, orders, catalog, payments and notifications each under
//! its own service name, and the span kinds right for what each span is
//! (SERVER for HTTP and for answering an RPC, CLIENT for calling one,
//! PRODUCER for a publish, CONSUMER for handling a delivery, each
//! delivery the child of its publish).

use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use jetshop_contracts::{
    card_processor,
    subjects::{self, keyed},
};
use jetshop_loadtests::shop::{Retries, Shop};
use jetshop_testkit::{OtlpReceiver, ReceivedSpan, eventually, free_port};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_jetshop");

/// The parts one order passes through.
const PARTS: [&str; 5] = ["gateway", "orders", "catalog", "payments", "notifications"];

/// `jetshop up`, killed on drop if the test fails midway (its log's end
/// then printed).
struct Up {
    child: Child,
    log: PathBuf,
}

impl Up {
    fn start(data: &Path, http_port: u16, otlp: &str) -> Self {
        let log_path = data.join("up.log");
        let log = File::create(&log_path).unwrap();
        let child = Command::new(BIN)
            .args(["up", "--seed-demo", "--data-dir"])
            .arg(data.join("data"))
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .env_remove("NATS_URL")
            .env_remove("JETSHOP_ADMIN_EMAIL")
            .env_remove("JETSHOP_ADMIN_PASSWORD")
            .env_remove("JETSHOP_HTTP_ADDR")
            .env_remove("PAYMENTS_PROVIDER_URL")
            .env_remove("RUST_LOG")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            // Finished spans leave within 100 ms instead of 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start jetshop up");
        Self {
            child,
            log: log_path,
        }
    }

    /// SIGTERM, then wait for the exit, which flushes the last spans.
    async fn stop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "jetshop up exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "jetshop up did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- the end of jetshop up's log ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_through_every_part() {
    let receiver = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = Up::start(dir.path(), port, receiver.endpoint());
    let shop = Shop::new(std::slice::from_ref(&base));
    let http = shop.http().clone();

    eventually("/readyz to answer 200", Duration::from_secs(90), || {
        let r = http.get(format!("{base}/readyz")).send();
        async move { r.await.ok()?.status().is_success().then_some(()) }
    })
    .await;
    let mug = jetshop_catalog::demo::products()[0].id;
    eventually("the demo mug listed", Duration::from_secs(30), || {
        let r = http.get(format!("{base}/v1/products/{mug}")).send();
        async move { r.await.ok()?.status().is_success().then_some(()) }
    })
    .await;

    let customer = shop
        .sign_up(0, "orders:read orders:write")
        .await
        .expect("a customer signs up and in");
    let retries = std::sync::Mutex::new(Retries::default());
    let order = shop
        .place(&customer, &[(mug, 1)], "tok_visa", &retries)
        .await
        .expect("the order is accepted");
    let status = eventually("the order to end", Duration::from_secs(60), || {
        let r = http
            .get(format!("{base}/v1/orders/{order}"))
            .bearer_auth(&customer.token)
            .send();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let body: Value = r.await.ok()?.json().await.ok()?;
            let status = body["status"].as_str()?.to_owned();
            ["confirmed", "cancelled"]
                .contains(&status.as_str())
                .then_some(status)
        }
    })
    .await;
    assert_eq!(status, "confirmed", "order {order}");

    // Notifications hears of the order after it reads confirmed.
    receiver
        .wait_for(
            "notifications handling the order",
            Duration::from_secs(30),
            |spans| {
                let Some(root) = placement(spans) else {
                    return false;
                };
                spans.iter().any(|s| {
                    s.trace_id == root.trace_id
                        && s.service == "notifications"
                        && s.kind == "consumer"
                })
            },
        )
        .await;
    // Let what that delivery set off (its outbox publish) finish, then stop:
    // the exit flushes every span still waiting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    up.stop().await;

    let spans = receiver.spans();
    let root = placement(&spans)
        .unwrap_or_else(|| panic!("no SERVER span POST /v1/orders from the gateway"))
        .clone();
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    eprintln!(
        "order {order}: trace {}, {} spans\n{}",
        root.trace_id,
        trace.len(),
        tree(&trace, &root)
    );
    check(&trace, &root);
}

/// The gateway's span of the one order placement, if it arrived.
fn placement(spans: &[ReceivedSpan]) -> Option<&ReceivedSpan> {
    let mut found = spans
        .iter()
        .filter(|s| s.kind == "server" && s.name == "POST /v1/orders");
    let root = found.next()?;
    assert!(found.next().is_none(), "two POST /v1/orders spans");
    Some(root)
}

/// The subject a `publish`, `consume`, `call` or `rpc` span is about
/// (its `subject` attribute, when its name starts with `verb`).
fn subject<'a>(span: &'a ReceivedSpan, verb: &str) -> Option<&'a str> {
    span.name.strip_prefix(verb)?.strip_prefix(' ')?;
    span.attribute("subject")
}

/// Whether a delivery on `consumed` is of the message published on
/// `published`: a partitioned stream adds the partition to the subject.
fn same_message_subject(consumed: &str, published: &str) -> bool {
    keyed::base(consumed) == keyed::base(published) && keyed::key(consumed) == keyed::key(published)
}

fn check(trace: &[&ReceivedSpan], root: &ReceivedSpan) {
    let by_id: HashMap<&str, &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let listing = || tree(trace, root);

    // One root: the placement.
    let roots: Vec<&str> = trace
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        roots,
        ["POST /v1/orders"],
        "roots of the trace\n{}",
        listing()
    );
    assert_eq!(root.service, "gateway");

    // No orphans: every parent (or linked span) is in the trace.
    for span in trace.iter().filter(|s| !s.parent_span_id.is_empty()) {
        let linked = span
            .links
            .iter()
            .any(|(_, id)| by_id.contains_key(id.as_str()));
        assert!(
            by_id.contains_key(span.parent_span_id.as_str()) || linked,
            "{} ({}) has a parent outside the trace\n{}",
            span.name,
            span.service,
            listing()
        );
    }

    // Every part the order passes through did its share under its own name.
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for part in PARTS {
        assert!(
            services.contains(part),
            "no span from {part}\n{}",
            listing()
        );
    }
    assert!(
        !services.contains("jetshop") && !services.contains(""),
        "spans not named after their part\n{}",
        listing()
    );

    // Kinds fit what each span is, and each hop's two ends meet.
    let parent = |s: &ReceivedSpan| by_id.get(s.parent_span_id.as_str()).copied();
    for span in trace {
        let what = format!("{} {} ({})", span.kind, span.name, span.service);
        if let Some(consumed) = subject(span, "consume") {
            assert_eq!(span.kind, "consumer", "{what}");
            let publish = parent(span).unwrap_or_else(|| panic!("{what}: no parent"));
            assert!(
                publish.kind == "producer"
                    && subject(publish, "publish")
                        .is_some_and(|p| same_message_subject(consumed, p)),
                "{what}: not the child of its publish\n{}",
                listing()
            );
            assert_eq!(
                Some(span.service.as_str()),
                span.attribute("consumer").and_then(|c| c.split('-').next()),
                "{what}: consumed by another part's consumer"
            );
        } else if span.name.starts_with("publish ") {
            assert_eq!(span.kind, "producer", "{what}");
        } else if let Some(asked) = subject(span, "rpc") {
            assert_eq!(span.kind, "server", "{what}");
            assert_eq!(
                Some(span.service.as_str()),
                asked.split('.').next(),
                "{what}"
            );
            let call = parent(span).unwrap_or_else(|| panic!("{what}: no parent"));
            assert_eq!(
                (call.kind, subject(call, "call")),
                ("client", Some(asked)),
                "{what}: not the child of its call\n{}",
                listing()
            );
        } else if span.name.starts_with("call ") {
            assert_eq!(span.kind, "client", "{what}");
        } else if span.attribute("http.request.method").is_some() {
            // Payments calling the card processor (outside the shop: the
            // trace ends there).
            assert_eq!(span.kind, "client", "{what}");
            assert_eq!(span.service, "payments", "{what}");
        } else if span.attribute("method").is_some() {
            assert_eq!(span.kind, "server", "{what}");
            assert_eq!(span.service, "gateway", "{what}");
        } else {
            panic!("unexpected span {what} in the order's trace\n{}", listing());
        }
    }

    // The saga's hops, each where it belongs.
    for (service, kind, verb, subject) in [
        (
            "gateway",
            "producer",
            "publish",
            subjects::orders::PLACE_ORDER,
        ),
        (
            "orders",
            "consumer",
            "consume",
            subjects::orders::PLACE_ORDER,
        ),
        (
            "orders",
            "producer",
            "publish",
            subjects::catalog::RESERVE_STOCK,
        ),
        (
            "catalog",
            "consumer",
            "consume",
            subjects::catalog::RESERVE_STOCK,
        ),
        (
            "payments",
            "consumer",
            "consume",
            subjects::payments::AUTHORIZE,
        ),
        (
            "payments",
            "client",
            "POST",
            card_processor::paths::AUTHORIZATIONS,
        ),
        ("orders", "producer", "publish", subjects::orders::CONFIRMED),
        (
            "notifications",
            "consumer",
            "consume",
            subjects::orders::CONFIRMED,
        ),
    ] {
        let name = format!("{verb} {subject}");
        assert!(
            trace
                .iter()
                .any(|s| s.service == service && s.kind == kind && s.name == name),
            "no {kind} span {name} from {service}\n{}",
            listing()
        );
    }
}

/// The trace as an indented tree: service, kind, name.
fn tree(trace: &[&ReceivedSpan], root: &ReceivedSpan) -> String {
    let mut children: HashMap<&str, Vec<&ReceivedSpan>> = HashMap::new();
    for span in trace {
        children
            .entry(span.parent_span_id.as_str())
            .or_default()
            .push(span);
    }
    let mut out = String::new();
    let mut stack = vec![(root, 0usize)];
    let mut seen = 0;
    while let Some((span, depth)) = stack.pop() {
        seen += 1;
        out.push_str(&format!(
            "{:indent$}{:<14} {:<9} {}\n",
            "",
            span.service,
            span.kind,
            span.name,
            indent = depth * 2
        ));
        if let Some(kids) = children.get(span.span_id.as_str()) {
            // Earliest first (popped from the end).
            let mut kids = kids.clone();
            kids.sort_by_key(|k| std::cmp::Reverse(k.start_unix_nano));
            stack.extend(kids.into_iter().map(|k| (k, depth + 1)));
        }
    }
    if seen < trace.len() {
        out.push_str(&format!(
            "({} spans not under the root)\n",
            trace.len() - seen
        ));
    }
    out
}
