//! `bare-poem`: the floor the gateway is measured against.
//!
//! It serves one fixed JSON body at `/v1/products/{id}` with Poem and
//! nothing else: no NATS, no middleware, no database. `bench.sh` fetches a
//! real response from the gateway and hands it over in a file, so both
//! servers send byte-identical bodies and the difference between them is
//! the cost of the gateway's path (middleware, RPC over NATS, the catalog).

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Parser;
use poem::{EndpointExt, Response, Route, Server, get, handler, listener::TcpListener, web::Data};

/// Serve a fixed JSON body at /v1/products/{id}.
#[derive(Parser, Debug)]
struct Args {
    /// Where to listen.
    #[arg(long, env = "BARE_POEM_ADDR", default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// File holding the JSON body to answer with.
    #[arg(long, env = "BARE_POEM_BODY")]
    body: PathBuf,
}

#[handler]
fn product(Data(body): Data<&Body>) -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(body.0.clone())
}

/// The response body, shared by reference count (cloning is cheap).
#[derive(Clone)]
struct Body(bytes::Bytes);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = std::fs::read(&args.body)
        .with_context(|| format!("cannot read {}", args.body.display()))?;
    let app = Route::new()
        .at("/v1/products/:id", get(product))
        .data(Body(body.into()));
    eprintln!("bare-poem listening on {}", args.addr);
    Server::new(TcpListener::bind(args.addr))
        .run_with_graceful_shutdown(
            app,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            None,
        )
        .await?;
    Ok(())
}
