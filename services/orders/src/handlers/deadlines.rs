//! The deadline scan: every tick, find waiting sagas whose step is overdue
//! and feed them `DeadlinePassed` (resend, compensate or park as stuck).
//! It also keeps the stuck-sagas gauge, read from the database so it is
//! right after a restart and across instances.
//!
//! This is also what resumes sagas after a crash: their state, deadlines
//! and unsent commands (outbox) are in the database, so a restarted
//! process picks every open saga up from where it was.

use std::time::Duration;

use chrono::Utc;
use jetshop_platform::envelope::MessageMeta;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::saga::{Input, SagaState},
    engine::Engine,
    metrics as m,
    storage::sagas,
};

/// Overdue sagas handled per tick.
const BATCH: u64 = 200;

/// Scan every `period` until `shutdown`.
pub async fn run(engine: Engine, period: Duration, shutdown: CancellationToken) {
    match sagas::count_open(engine.db()).await {
        Ok(open) if open > 0 => tracing::info!(open, "resuming open sagas"),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot count open sagas"),
    }
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(err) = scan(&engine).await {
            tracing::warn!(error = %err, "deadline scan failed; trying again next tick");
        }
    }
}

/// One pass: feed every overdue saga; returns how many were handled.
pub async fn scan(engine: &Engine) -> Result<usize, crate::Error> {
    let stuck = sagas::count(engine.db(), SagaState::Stuck).await?;
    metrics::gauge!(m::SAGAS_STUCK).set(stuck as f64);
    let overdue = sagas::overdue(engine.db(), Utc::now(), BATCH).await?;
    let mut handled = 0;
    for row in overdue {
        let Ok(order_id) = row.order_id.parse::<uuid::Uuid>() else {
            continue;
        };
        let meta = MessageMeta::correlated(order_id.to_string());
        match engine
            .feed(None, order_id, Input::DeadlinePassed, &meta)
            .await
        {
            Ok(_) => handled += 1,
            Err(err) => tracing::warn!(%order_id, error = %err, "cannot act on an overdue saga"),
        }
    }
    Ok(handled)
}
