//! `jetshop`: run the whole system (`up`), one service (`run`), load the
//! demo catalog (`seed`), print the API spec (`openapi`), manage admins
//! and OAuth clients (`users`, `oauth`), or operate the dead letters (`dlq`)
//! and the order sagas (`sagas`), or write the NATS server's users and TLS
//! material (`nats-config`).
//!
//! - [`args`]: the command line, flags and environment variables.
//! - [`up`]: everything in one process, with an embedded [`nats_child`].
//! - [`run`]: one service per process, as in a container.
//! - [`seed`]: the demo catalog, under `up --seed-demo` or on its own.
//! - [`supervisor`]: start parts side by side, stop them in order.
//! - [`signals`]: Ctrl-C and SIGTERM as a cancellation token.
//! - [`openapi`]: the gateway's spec.
//! - [`accounts`]: admin accounts and OAuth clients, straight into the users database.
//! - [`dlq`]: list, show, replay and purge dead letters.
//! - [`sagas`]: list sagas and retry stuck ones.
//! - [`nats_config`]: NATS users, permissions and TLS material from the contracts.
//!
//! Any failure ends the process with one `error: ...` line and a non-zero code.

/// mimalloc rather than glibc's malloc. Argon2 hashes take 19 MiB each on
/// the blocking pool's threads; glibc raises its mmap threshold after the
/// first one and then serves them from per-thread arenas that it never
/// gives back: `jetshop up` sat at 1.1 GB resident after 32 sign-ups and
/// sign-ins while heaptrack saw a heap peak of 92 MB. mimalloc returns
/// freed large blocks to the system (and is cheaper per call on the many
/// small allocations of message handling).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod accounts;
mod args;
mod dlq;
mod nats_child;
mod nats_config;
mod openapi;
mod run;
mod sagas;
mod seed;
mod signals;
mod supervisor;
mod up;

use std::process::ExitCode;

use args::{Command, DlqCommand, OauthCommand, RunService, SagasCommand, UsersCommand};

fn main() -> ExitCode {
    let cli = match args::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let (service_name, parts) = trace_names(&cli.command);
    let _telemetry = match cli
        .telemetry()
        .map(|t| jetshop_platform::telemetry::init(t, service_name, parts))
    {
        Some(Err(err)) => return fail(&err.into()),
        Some(Ok(guard)) => Some(guard),
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return fail(&err.into()),
    };
    // `block_on` polls on this (main) thread, which is where `up` forks the
    // nats-server child: its parent-death signal is tied to this thread.
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Openapi(args) => openapi::run(&args),
        Command::NatsConfig(args) => nats_config::run(&args),
        Command::Seed(args) => seed::run(args, signals::shutdown_token()?).await,
        Command::Up(args) => up::run(*args, signals::shutdown_token()?).await,
        Command::Run(RunService::Catalog(args)) => {
            run::catalog(*args, signals::shutdown_token()?).await
        }
        Command::Run(RunService::Users(args)) => {
            run::users(*args, signals::shutdown_token()?).await
        }
        Command::Users(UsersCommand::CreateAdmin(args)) => accounts::create_admin(args).await,
        Command::Oauth(OauthCommand::CreateClient(args)) => accounts::create_client(args).await,
        Command::Run(RunService::Gateway(args)) => {
            run::gateway(*args, signals::shutdown_token()?).await
        }
        Command::Dlq(DlqCommand::Ls(args)) => dlq::ls(args).await,
        Command::Dlq(DlqCommand::Show(args)) => dlq::show(args).await,
        Command::Dlq(DlqCommand::Replay(args)) => dlq::replay(args).await,
        Command::Dlq(DlqCommand::Purge(args)) => dlq::purge(args).await,
        Command::Sagas(SagasCommand::Ls(args)) => sagas::ls(args).await,
        Command::Sagas(SagasCommand::Retry(args)) => sagas::retry(args).await,
        Command::Run(RunService::Orders(args)) => {
            run::orders(*args, signals::shutdown_token()?).await
        }
        Command::Run(RunService::Payments(args)) => {
            run::payments(*args, signals::shutdown_token()?).await
        }
        Command::Run(RunService::Notifications(args)) => {
            run::notifications(*args, signals::shutdown_token()?).await
        }
        Command::Run(RunService::CardProcessor(args)) => {
            run::card_processor(*args, signals::shutdown_token()?).await
        }
    }
}

/// What this process is called in traces, and the parts whose spans are
/// sent under their own names: under `up` each part names itself, so a
/// trace shows which one did what; `run <part>` is that part.
fn trace_names(command: &Command) -> (&'static str, &'static [&'static str]) {
    const UP_PARTS: &[&str] = &[
        jetshop_gateway::SERVICE_NAME,
        jetshop_users::SERVICE_NAME,
        jetshop_catalog::SERVICE_NAME,
        jetshop_orders::SERVICE_NAME,
        jetshop_payments::SERVICE_NAME,
        jetshop_notifications::SERVICE_NAME,
        jetshop_card_processor::SERVICE_NAME,
    ];
    let part = match command {
        Command::Up(_) => return ("jetshop", UP_PARTS),
        Command::Run(RunService::Gateway(_)) => jetshop_gateway::SERVICE_NAME,
        Command::Run(RunService::Users(_)) => jetshop_users::SERVICE_NAME,
        Command::Run(RunService::Catalog(_)) => jetshop_catalog::SERVICE_NAME,
        Command::Run(RunService::Orders(_)) => jetshop_orders::SERVICE_NAME,
        Command::Run(RunService::Payments(_)) => jetshop_payments::SERVICE_NAME,
        Command::Run(RunService::Notifications(_)) => jetshop_notifications::SERVICE_NAME,
        Command::Run(RunService::CardProcessor(_)) => jetshop_card_processor::SERVICE_NAME,
        _ => "jetshop",
    };
    (part, &[])
}

/// One line on stderr, whatever the error chain looks like.
fn fail(err: &anyhow::Error) -> ExitCode {
    let line = format!("{err:#}").replace('\n', " ");
    eprintln!("error: {line}");
    ExitCode::FAILURE
}
