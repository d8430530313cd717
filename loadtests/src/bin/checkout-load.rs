//! The checkout load generator (`make bench`): customers sign in with the
//! code flow and PKCE, place orders through REST at a fixed rate or as fast
//! as the gateway takes them, and each order is followed to its end. It
//! reports what a shop owner asks of checkout: orders/s end to end, p50,
//! p99 and p99.9 from placing to final, and, given the processes' pids, CPU
//! seconds per order and resident memory before and after.
//!
//! Placed -> final is measured from the client's clock at sending to the
//! order's `updated_at` (when it became final), both on this machine.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use futures::{StreamExt, stream};
use jetshop_loadtests::shop::{Customer, Retries, Shop};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Place orders through the REST API and follow each to its end")]
struct Args {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin account that creates the product the orders buy.
    #[arg(long, default_value = "admin@jetshop.local")]
    admin_email: String,
    #[arg(long, env = "JETSHOP_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// Customers signed in (each its own account and token).
    #[arg(long, default_value_t = 32)]
    customers: usize,
    /// Orders placed.
    #[arg(long, default_value_t = 600)]
    orders: usize,
    /// Orders per second; 0 places as fast as the gateway accepts, one
    /// placement in flight per customer.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Processes to account CPU and memory to, as `name=pid` (repeatable).
    #[arg(long = "process", value_parser = parse_process)]
    processes: Vec<(String, u32)>,
    /// A label for this scenario in the JSON result.
    #[arg(long, default_value = "checkout")]
    scenario: String,
    /// Where to write the JSON result.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn parse_process(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or("expected name=pid")?;
    Ok((name.to_owned(), pid.parse().map_err(|e| format!("{e}"))?))
}

/// CPU time (user + system) and resident memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu: Duration,
    rss_bytes: u64,
}

fn usage(pid: u32) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 10);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Usage {
        cpu,
        rss_bytes: rss_kb * 1024,
    })
}

/// One placed order.
#[derive(Debug, Clone, Copy)]
struct Placed {
    id: Uuid,
    sent_at: DateTime<Utc>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let shop = Shop::new(std::slice::from_ref(&args.url));
    let gw = args.url.trim_end_matches('/').to_owned();

    // The product: plenty of stock, so every tok_visa order is confirmed.
    let admin = shop
        .sign_in(
            &gw,
            &args.admin_email,
            &args.admin_password,
            "catalog:write",
        )
        .await
        .map_err(anyhow::Error::msg)
        .context("admin sign-in")?;
    let sku = format!("BENCH-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let created = shop
        .http()
        .post(format!("{gw}/v1/products"))
        .bearer_auth(&admin)
        .json(&json!({
            "sku": sku, "name": "Benchmark mug",
            "price": {"amount_minor": 1200, "currency": "EUR"},
            "stock": 1_000_000_000i64,
        }))
        .send()
        .await?;
    if created.status() != reqwest::StatusCode::ACCEPTED {
        bail!(
            "create product: {} {}",
            created.status(),
            created.text().await?
        );
    }
    let product: Uuid = created.json::<Value>().await?["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("product id")?;
    let ready = Instant::now();
    loop {
        let r = shop
            .http()
            .get(format!("{gw}/v1/products/{product}"))
            .send()
            .await?;
        if r.status().is_success() {
            break;
        }
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("the product did not appear: {}", r.status());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let customers: Vec<Customer> = stream::iter(0..args.customers)
        .map(|n| {
            let shop = shop.clone();
            async move { shop.sign_up(n, "orders:read orders:write").await }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "checkout-load: {} customers signed in; placing {} orders",
        customers.len(),
        args.orders
    );

    let before: HashMap<String, Usage> = args
        .processes
        .iter()
        .map(|(name, pid)| Ok((name.clone(), usage(*pid)?)))
        .collect::<Result<_>>()?;
    let retries = Arc::new(Mutex::new(Retries::default()));
    let started = Instant::now();
    let placed = place_all(&shop, &customers, product, &args, &retries).await?;
    let accepted_in = started.elapsed();

    // Follow every order to its end.
    let finals = follow(&shop, &customers, &placed).await?;
    let after: HashMap<String, Usage> = args
        .processes
        .iter()
        .map(|(name, pid)| Ok((name.clone(), usage(*pid)?)))
        .collect::<Result<_>>()?;

    let first = placed
        .iter()
        .map(|p| p.sent_at)
        .min()
        .context("no orders")?;
    let last = finals
        .iter()
        .map(|(_, at, _)| *at)
        .max()
        .context("no orders")?;
    let span = (last - first)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-3);
    let mut took: Vec<f64> = placed
        .iter()
        .zip(&finals)
        .map(|(p, (_, at, _))| (*at - p.sent_at).num_microseconds().unwrap_or(0) as f64 / 1e6)
        .collect();
    took.sort_by(f64::total_cmp);
    let pct = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    let confirmed = finals.iter().filter(|(_, _, s)| s == "confirmed").count();
    let cpu_total: f64 = args
        .processes
        .iter()
        .map(|(n, _)| (after[n].cpu.saturating_sub(before[n].cpu)).as_secs_f64())
        .sum();
    let processes: serde_json::Map<String, Value> = args
        .processes
        .iter()
        .map(|(n, _)| {
            let cpu = after[n].cpu.saturating_sub(before[n].cpu).as_secs_f64();
            (
                n.clone(),
                json!({
                    "cpu_seconds": cpu,
                    "cpu_ms_per_order": cpu * 1e3 / args.orders as f64,
                    "rss_mb_before": before[n].rss_bytes as f64 / 1048576.0,
                    "rss_mb_after": after[n].rss_bytes as f64 / 1048576.0,
                }),
            )
        })
        .collect();
    let result = json!({
        "scenario": args.scenario,
        "orders": args.orders,
        "customers": args.customers,
        "rate_asked": if args.rate > 0.0 { json!(args.rate) } else { json!("full speed") },
        "confirmed": confirmed,
        "accepted_per_s": args.orders as f64 / accepted_in.as_secs_f64(),
        "orders_per_s_end_to_end": args.orders as f64 / span,
        "placed_to_final_s": {"p50": pct(0.50), "p99": pct(0.99), "p99_9": pct(0.999), "max": pct(1.0)},
        "cpu_ms_per_order": if args.processes.is_empty() { Value::Null } else { json!(cpu_total * 1e3 / args.orders as f64) },
        "processes": processes,
        "placement_retries": format!("{:?}", *retries.lock().unwrap_or_else(|e| e.into_inner())),
    });
    println!(
        "{}: {} orders ({confirmed} confirmed) {:.1} orders/s end to end (accepted {:.1}/s); placed -> final p50 {:.0} ms, p99 {:.0} ms, p99.9 {:.0} ms{}",
        args.scenario,
        args.orders,
        args.orders as f64 / span,
        args.orders as f64 / accepted_in.as_secs_f64(),
        pct(0.5) * 1e3,
        pct(0.99) * 1e3,
        pct(0.999) * 1e3,
        if args.processes.is_empty() {
            String::new()
        } else {
            format!("; CPU {:.2} ms/order", cpu_total * 1e3 / args.orders as f64)
        }
    );
    for (n, p) in &processes {
        println!("  {n}: {p}");
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&result)?)?;
    }
    Ok(())
}

/// Place every order: at `--rate` per second, or back to back with one
/// placement in flight per customer. In placing order.
async fn place_all(
    shop: &Shop,
    customers: &[Customer],
    product: Uuid,
    args: &Args,
    retries: &Arc<Mutex<Retries>>,
) -> Result<Vec<Placed>> {
    let lines = [(product, 1i64)];
    let one = |i: usize| {
        let (shop, customer, retries) = (
            shop.clone(),
            customers[i % customers.len()].clone(),
            retries.clone(),
        );
        async move {
            let sent_at = Utc::now();
            shop.place(&customer, &lines, "tok_visa", &retries)
                .await
                .map(|id| Placed { id, sent_at })
                .map_err(anyhow::Error::msg)
        }
    };
    if args.rate > 0.0 {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = Vec::with_capacity(args.orders);
        for i in 0..args.orders {
            tick.tick().await;
            tasks.push(tokio::spawn(one(i)));
        }
        let mut placed = Vec::with_capacity(args.orders);
        for t in tasks {
            placed.push(t.await??);
        }
        Ok(placed)
    } else {
        stream::iter(0..args.orders)
            .map(one)
            .buffered(customers.len())
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// Each order's id, when it became final and its status, in placing order.
async fn follow(
    shop: &Shop,
    customers: &[Customer],
    placed: &[Placed],
) -> Result<Vec<(Uuid, DateTime<Utc>, String)>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    stream::iter(placed.iter().enumerate())
        .map(|(i, p)| {
            let token = customers[i % customers.len()].token.clone();
            async move {
                loop {
                    let r = shop
                        .http()
                        .get(format!("{}/v1/orders/{}", shop.gateway(0), p.id))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    if let Ok(r) = r
                        && r.status().is_success()
                    {
                        let v: Value = r.json().await?;
                        let status = v["status"].as_str().unwrap_or_default().to_owned();
                        if status == "confirmed" || status == "cancelled" {
                            let at: DateTime<Utc> = v["updated_at"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                                .context("updated_at")?;
                            return Ok((p.id, at, status));
                        }
                    }
                    if Instant::now() > deadline {
                        bail!("order {} did not end in 10 minutes", p.id);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
