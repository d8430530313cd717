//! The faults, one at a time, each healed a few seconds later, and the
//! figures of how the checkout's pace went through them.
//!
//! One pass of the schedule: SIGKILL of the NATS node leading
//! `ORDERS_EVENTS`; the NATS node in a network namespace, first made
//! leader of `ORDERS_EVENTS`, partitioned away for [`PARTITIONED`] and
//! healed; SIGKILL of one replica of every part in turn (orders, payments,
//! notifications, gateway, catalog, users, card processor);
//! SIGSTOP of an orders and of a notifications replica for longer than the
//! consumers' `ack_wait`, then SIGCONT; PostgreSQL stopped and started;
//! Redis stopped and started. Between faults the system gets [`GAP`] to
//! recover, which is also the next fault's baseline.

use std::{
    collections::HashMap,
    fmt::Write,
    time::{Duration, Instant},
};

use jetshop_contracts::streams;
use uuid::Uuid;

use crate::{
    Tracked, Tracker,
    deployment::{ACK_WAIT, Deployment},
};

/// How long a killed process, node or server stays down.
const DOWN: Duration = Duration::from_secs(3);
/// How long a frozen replica stays frozen: past `ack_wait`, so the server
/// redelivers what it held to the other replica.
const FROZEN: Duration = Duration::from_secs(ACK_WAIT.as_secs() + 4);
/// How long the namespaced NATS node stays cut off: past the clients'
/// and routes' ping timeouts, so everything connected to it moves away.
const PARTITIONED: Duration = Duration::from_secs(8);
/// Time between one fault's healing and the next fault.
const GAP: Duration = Duration::from_secs(8);
/// Before the first fault: the pace without faults, the first baseline.
const WARM_UP: Duration = Duration::from_secs(8);

/// One fault as it happened.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: String,
    pub started: Instant,
    /// When it started by the wall clock (what database rows are stamped with).
    pub wall: chrono::DateTime<chrono::Utc>,
    pub healed: Instant,
}

/// Run one pass of the schedule (`pass` picks which replica is hurt).
pub async fn run_pass(d: &mut Deployment, pass: usize, tracker: &Tracker, log: &mut Vec<Fault>) {
    if pass == 0 {
        tokio::time::sleep(WARM_UP).await;
    }
    let say = |what: &str| {
        println!(
            "chaos: pass {pass}: {what} ({} orders placed)",
            tracker.placed()
        );
    };

    // The NATS node leading the orders events stream.
    let leader = d
        .nats
        .stream_leader(&d.js, streams::ORDERS_EVENTS)
        .await
        .expect("ORDERS_EVENTS has a leader");
    let name = format!(
        "SIGKILL NATS node {} (leader of {})",
        d.nats.name(leader),
        streams::ORDERS_EVENTS
    );
    say(&name);
    let (started, wall) = (Instant::now(), chrono::Utc::now());
    d.nats.kill(leader);
    tokio::time::sleep(DOWN).await;
    d.nats.restart(leader);
    log.push(Fault {
        name,
        started,
        wall,
        healed: Instant::now(),
    });
    tokio::time::sleep(GAP).await;

    partition_leader(d, &say, log).await;

    // One replica of each part in turn.
    for part in [
        "orders",
        "payments",
        "notifications",
        "gateway",
        "catalog",
        "users",
        "card-processor",
    ] {
        let n = d.parts[part].replicas.len();
        let p = d.replica(part, pass % n);
        let name = format!("SIGKILL {}", p.name());
        say(&name);
        let (started, wall) = (Instant::now(), chrono::Utc::now());
        p.kill();
        tokio::time::sleep(DOWN).await;
        p.ensure_running();
        d.wait_ready().await;
        log.push(Fault {
            name,
            started,
            wall,
            healed: Instant::now(),
        });
        tokio::time::sleep(GAP).await;
    }

    // Frozen past ack_wait: it holds messages, leases and connections.
    for part in ["orders", "notifications"] {
        let n = d.parts[part].replicas.len();
        let p = d.replica(part, (pass + 1) % n);
        let name = format!("SIGSTOP {} for {FROZEN:?}", p.name());
        say(&name);
        let (started, wall) = (Instant::now(), chrono::Utc::now());
        p.pause();
        tokio::time::sleep(FROZEN).await;
        p.resume();
        log.push(Fault {
            name,
            started,
            wall,
            healed: Instant::now(),
        });
        tokio::time::sleep(GAP).await;
    }

    say("PostgreSQL stopped");
    let (started, wall) = (Instant::now(), chrono::Utc::now());
    d.postgres.stop();
    tokio::time::sleep(DOWN).await;
    d.postgres.start_again();
    log.push(Fault {
        name: "PostgreSQL stopped and started".into(),
        started,
        wall,
        healed: Instant::now(),
    });
    tokio::time::sleep(GAP).await;

    say("Redis stopped");
    let (started, wall) = (Instant::now(), chrono::Utc::now());
    d.redis.stop();
    tokio::time::sleep(DOWN).await;
    d.redis.restart();
    log.push(Fault {
        name: "Redis stopped and started".into(),
        started,
        wall,
        healed: Instant::now(),
    });
    tokio::time::sleep(GAP).await;
}

/// Move the leadership of `ORDERS_EVENTS` onto the NATS node in a network
/// namespace, cut it off for [`PARTITIONED`], plug it back in, and say how
/// long it took to hold the whole stream again. Skipped when no node is in
/// a namespace (no root).
async fn partition_leader(d: &mut Deployment, say: &impl Fn(&str), log: &mut Vec<Fault>) {
    let Some(node) = d.nats.isolated() else {
        return;
    };
    let leads = d
        .nats
        .move_stream_leader(&d.js, streams::ORDERS_EVENTS, node, Duration::from_secs(30))
        .await;
    // Let the election's own dip pass before the baseline of the fault.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let name = format!(
        "partition {} for {PARTITIONED:?} ({}leader of {})",
        d.nats.name(node),
        if leads { "" } else { "not " },
        streams::ORDERS_EVENTS
    );
    say(&name);
    let (started, wall) = (Instant::now(), chrono::Utc::now());
    d.nats.partition(node);
    tokio::time::sleep(PARTITIONED).await;
    d.nats.heal(node);
    let healed = Instant::now();
    log.push(Fault {
        name,
        started,
        wall,
        healed,
    });
    let deadline = healed + Duration::from_secs(60);
    while !d.nats.is_current(&d.js, streams::ORDERS_EVENTS, node).await {
        assert!(
            Instant::now() < deadline,
            "{} not a current replica of {} 60 s after healing",
            d.nats.name(node),
            streams::ORDERS_EVENTS
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    say(&format!(
        "{} current again on {} {:.1} s after healing",
        d.nats.name(node),
        streams::ORDERS_EVENTS,
        healed.elapsed().as_secs_f64()
    ));
    tokio::time::sleep(GAP.saturating_sub(healed.elapsed())).await;
}

/// Orders ended in `[from, to)`.
fn ended_between(ends: &[Instant], from: Instant, to: Instant) -> usize {
    ends.iter().filter(|&&e| e >= from && e < to).count()
}

/// The report: pace under faults, the slowest order, and per fault the
/// pace in the 5 s before it, its low point (the slowest second from the
/// fault to 3 s after healing), and how long after healing the pace (over
/// 3 s) was back to 70 % of the fault-free pace of the warm-up.
pub fn figures(
    tracked: &HashMap<Uuid, Tracked>,
    log: &[Fault],
    load_started: Instant,
    faults_ended: Instant,
) -> String {
    let mut ends: Vec<Instant> = tracked.values().filter_map(|t| t.ended).collect();
    ends.sort();
    let mut took: Vec<Duration> = tracked
        .values()
        .filter_map(|t| t.ended.map(|e| e - t.accepted))
        .collect();
    took.sort();
    let pct = |p: f64| took[((took.len() - 1) as f64 * p) as usize];
    let window = (faults_ended - load_started).as_secs_f64();
    // The warm-up's second half: the pace before any fault, once going.
    let calm = log.first().map_or(0.0, |f| {
        let from = load_started + (f.started - load_started) / 2;
        ended_between(&ends, from, f.started) as f64 / (f.started - from).as_secs_f64().max(1.0)
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chaos: {:.1} orders/s ended under faults ({} in {window:.0} s; {calm:.1}/s before the first fault); time to end p50 {:.2} s, p99 {:.2} s, longest {:.2} s",
        ended_between(&ends, load_started, faults_ended) as f64 / window,
        ended_between(&ends, load_started, faults_ended),
        pct(0.5).as_secs_f64(),
        pct(0.99).as_secs_f64(),
        took.last().copied().unwrap_or_default().as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "chaos: {:<48} {:>9} {:>9} {:>12}",
        "fault", "before/s", "lowest/s", "recovered"
    );
    let second = Duration::from_secs(1);
    for (i, f) in log.iter().enumerate() {
        // Recovery is looked for until the next fault begins.
        let next = log
            .get(i + 1)
            .map_or(f.healed + Duration::from_secs(60), |n| n.started);
        let base_from = f
            .started
            .checked_sub(Duration::from_secs(5))
            .unwrap_or(f.started);
        let before = ended_between(&ends, base_from, f.started) as f64
            / (f.started - base_from).as_secs_f64().max(1.0);
        let mut lowest = f64::MAX;
        let mut t = f.started;
        while t + second <= f.healed + Duration::from_secs(3) {
            lowest = lowest.min(ended_between(&ends, t, t + second) as f64);
            t += Duration::from_millis(250);
        }
        let mut recovered = None;
        let mut t = f.healed;
        while t + Duration::from_secs(3) <= next.max(f.healed + Duration::from_secs(3)) {
            let rate = ended_between(&ends, t, t + Duration::from_secs(3)) as f64 / 3.0;
            if rate >= 0.7 * calm {
                recovered = Some(t - f.healed);
                break;
            }
            t += Duration::from_millis(250);
        }
        let _ = writeln!(
            out,
            "chaos: {:<48} {before:>9.1} {:>9.1} {:>12}",
            f.name,
            if lowest == f64::MAX { 0.0 } else { lowest },
            recovered.map_or("not yet".into(), |r| format!("{:.2} s", r.as_secs_f64())),
        );
    }
    out
}
