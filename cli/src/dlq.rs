//! `jetshop dlq ls|show|replay|purge`: argument handling and printing over
//! [`jetshop_platform::dlq`], which does the work.

use anyhow::Context;
use async_nats::jetstream;
use jetshop_platform::dlq::{self, Selection};
use serde_json::json;

use crate::args::{DlqLsArgs, DlqPurgeArgs, DlqReplayArgs, DlqShowArgs};

async fn connect(
    nats: &jetshop_platform::config::NatsSettings,
) -> anyhow::Result<jetstream::Context> {
    let client = jetshop_platform::nats::connect(nats, "jetshop-dlq").await?;
    Ok(jetstream::new(client))
}

fn print_json(value: &impl serde::Serialize, pretty: bool) -> anyhow::Result<()> {
    let text = if pretty {
        serde_json::to_string_pretty(value)?
    } else {
        serde_json::to_string(value)?
    };
    println!("{text}");
    Ok(())
}

fn scope(consumer: Option<&str>) -> String {
    consumer.map_or_else(
        || "dead letters".to_owned(),
        |c| format!("dead letters of consumer {c}"),
    )
}

/// Counts per consumer and reason, as a table or JSON.
pub async fn ls(args: DlqLsArgs) -> anyhow::Result<()> {
    let js = connect(&args.nats).await?;
    let summary = dlq::summary(&js, &Selection::from_consumer(args.consumer.as_deref()))
        .await
        .context("list dead letters")?;
    if args.json {
        return print_json(&summary, false);
    }
    if summary.total == 0 {
        println!("no {}", scope(args.consumer.as_deref()));
        return Ok(());
    }
    let width = summary
        .counts
        .iter()
        .map(|c| c.consumer.len())
        .chain(["CONSUMER".len()])
        .max()
        .unwrap_or(0);
    println!("{:<width$}  {:>6}  REASON", "CONSUMER", "COUNT");
    for c in &summary.counts {
        println!("{:<width$}  {:>6}  {}", c.consumer, c.count, c.reason);
    }
    println!("{} in all", plural(summary.total));
    Ok(())
}

/// One dead letter as JSON.
pub async fn show(args: DlqShowArgs) -> anyhow::Result<()> {
    let js = connect(&args.nats).await?;
    let dead = dlq::show(&js, args.seq)
        .await
        .with_context(|| format!("show dead letter {}", args.seq))?;
    print_json(&dead, !args.json)
}

/// Replay one dead letter, one consumer's or all of them.
pub async fn replay(args: DlqReplayArgs) -> anyhow::Result<()> {
    let js = connect(&args.nats).await?;
    let report = match (args.seq, args.all) {
        (Some(seq), _) => dlq::ReplayReport {
            replayed: vec![
                dlq::replay(&js, seq)
                    .await
                    .with_context(|| format!("replay dead letter {seq}"))?,
            ],
            failed: vec![],
        },
        (None, all) => {
            let selection = if all {
                Selection::All
            } else {
                Selection::from_consumer(args.consumer.as_deref())
            };
            dlq::replay_all(&js, &selection)
                .await
                .context("replay dead letters")?
        }
    };
    if args.json {
        print_json(&report, false)?;
    } else {
        for r in &report.replayed {
            println!(
                "replayed #{} ({}) to {} as {} ({} #{})",
                r.dlq_sequence,
                r.consumer.as_deref().unwrap_or("?"),
                r.subject,
                r.message_id,
                r.stream,
                r.stream_sequence
            );
        }
        for f in &report.failed {
            println!("not replayed #{}: {}", f.dlq_sequence, f.error);
        }
        if report.replayed.is_empty() && report.failed.is_empty() {
            println!("nothing to replay");
        }
    }
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} of {} dead letters not replayed (they stay in the DLQ unless said otherwise above)",
            report.failed.len(),
            report.failed.len() + report.replayed.len()
        );
    }
    Ok(())
}

/// Delete dead letters, only with `--yes`.
pub async fn purge(args: DlqPurgeArgs) -> anyhow::Result<()> {
    let what = scope(args.consumer.as_deref());
    if !args.yes {
        anyhow::bail!("purge deletes the {what} for good; run again with --yes to do it");
    }
    let js = connect(&args.nats).await?;
    let purged = dlq::purge(&js, &Selection::from_consumer(args.consumer.as_deref()))
        .await
        .context("purge dead letters")?;
    if args.json {
        print_json(&json!({ "purged": purged }), false)
    } else {
        println!("purged {} ({what})", plural(purged));
        Ok(())
    }
}

fn plural(n: u64) -> String {
    if n == 1 {
        "1 dead letter".to_owned()
    } else {
        format!("{n} dead letters")
    }
}
