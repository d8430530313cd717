//! `jetshop sagas ls|retry`: the orders service's saga operations, asked
//! over its RPC endpoints (`orders.rpc.saga.*`), so they work against any
//! running deployment.

use anyhow::Context;
use jetshop_contracts::orders::{ListSagas, RetrySaga, SagaView};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};

use crate::args::{SagasLsArgs, SagasRetryArgs};

async fn client(nats: &jetshop_platform::config::NatsSettings) -> anyhow::Result<RpcClient> {
    let client = jetshop_platform::nats::connect(nats, "jetshop-sagas").await?;
    Ok(RpcClient::new(client, std::time::Duration::from_secs(5), 1))
}

/// List sagas as a table or JSON.
pub async fn ls(args: SagasLsArgs) -> anyhow::Result<()> {
    let rpc = client(&args.nats).await?;
    let list = rpc
        .call(
            &ListSagas {
                state: args.state.clone(),
                limit: Some(args.limit),
            },
            &MessageMeta::correlated("jetshop-sagas"),
        )
        .await
        .context("list sagas (is the orders service running?)")?;
    if args.json {
        println!("{}", serde_json::to_string(&list.items)?);
        return Ok(());
    }
    if list.items.is_empty() {
        match &args.state {
            Some(state) => println!("no {state} sagas"),
            None => println!("no open sagas"),
        }
        return Ok(());
    }
    println!(
        "{:<36}  {:<19}  {:<18}  {:>8}  {:<20}  LAST ERROR",
        "ORDER", "STATE", "STEP", "ATTEMPTS", "UPDATED"
    );
    for s in &list.items {
        println!("{}", row(s));
    }
    println!("{} in all", list.items.len());
    Ok(())
}

fn row(s: &SagaView) -> String {
    format!(
        "{:<36}  {:<19}  {:<18}  {:>8}  {:<20}  {}",
        s.order_id,
        s.state,
        s.step,
        s.attempts,
        s.updated_at.format("%Y-%m-%d %H:%M:%S"),
        s.last_error.as_deref().unwrap_or("")
    )
}

/// Retry one stuck saga.
pub async fn retry(args: SagasRetryArgs) -> anyhow::Result<()> {
    let rpc = client(&args.nats).await?;
    let saga = rpc
        .call(
            &RetrySaga {
                order_id: args.order_id,
            },
            &MessageMeta::correlated("jetshop-sagas"),
        )
        .await
        .with_context(|| format!("retry the saga of order {}", args.order_id))?;
    if args.json {
        println!("{}", serde_json::to_string(&saga)?);
    } else {
        println!(
            "saga of order {} is {} again (step {}, attempt {})",
            saga.order_id, saga.state, saga.step, saga.attempts
        );
    }
    Ok(())
}
