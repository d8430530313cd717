//! `jetshop users create-admin` and `jetshop oauth create-client`: write
//! straight to the users service's database, through the users crate's own
//! admin functions (the same rules and the same outbox as the service), so
//! they work whether or not the service is running.

use std::io::BufRead;

use anyhow::Context;
use jetshop_contracts::users::Role;
use jetshop_users::admin::{self, NewClient};

use crate::args::{CreateAdminArgs, CreateClientArgs};

/// Create an admin account; an existing admin with that email is left alone.
pub async fn create_admin(args: CreateAdminArgs) -> anyhow::Result<()> {
    let password = match args.password {
        Some(p) => p,
        None => read_password()?,
    };
    let db = admin::connect_and_migrate(&args.database_url)
        .await
        .context("users database")?;
    match admin::create_user(&db, &args.email, &password, &[Role::Admin]).await {
        Ok(user) => println!("created admin {} ({})", user.email, user.id),
        Err(jetshop_users::Error::EmailTaken) => {
            println!(
                "an account with email {} already exists; left unchanged",
                args.email
            )
        }
        Err(err) => return Err(err).context("create admin"),
    }
    Ok(())
}

/// Register an OAuth client and print its secret once.
pub async fn create_client(args: CreateClientArgs) -> anyhow::Result<()> {
    let db = admin::connect_and_migrate(&args.database_url)
        .await
        .context("users database")?;
    let spec = NewClient {
        name: args.name.unwrap_or_else(|| args.client_id.clone()),
        client_id: args.client_id,
        confidential: args.confidential,
        redirect_uris: args.redirect_uris,
        grant_types: args.grants,
        scopes: args.scopes,
        service_account: None,
    };
    let (client, secret) = admin::create_client(&db, spec)
        .await
        .context("create client")?;
    println!("created OAuth client {}", client.client_id);
    if let Some(secret) = secret {
        // Shown once: only its hash is stored.
        println!("client_secret: {secret}");
        println!("(store it now; it cannot be shown again)");
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    eprintln!("admin password (12 characters or more), then Enter:");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password given");
    Ok(password)
}
