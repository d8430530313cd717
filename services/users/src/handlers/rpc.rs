//! The users service's endpoints, served as the `users` micro service.
//! Groups and endpoint names come from `contracts::subjects::users`.

use std::future::Future;

use jetshop_contracts::{Rpc, RpcError, subjects};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcService};

use super::{Ctx, accounts, oauth};
use crate::Error;

/// Register the micro service and all its endpoints.
pub async fn start(client: &async_nats::Client, ctx: Ctx) -> Result<RpcService, Error> {
    use subjects::users::{
        RPC_CLIENT_GROUP as CLIENT, RPC_CREDENTIALS_GROUP as CREDENTIALS, RPC_GRANT_GROUP as GRANT,
        RPC_USER_GROUP as USER,
    };
    let mut s = RpcService::start(
        client,
        crate::SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        "Accounts, credentials and OAuth clients and grants of jetshop",
    )
    .await?;
    serve(&mut s, &ctx, USER, accounts::register).await?;
    serve(&mut s, &ctx, USER, accounts::get).await?;
    serve(&mut s, &ctx, USER, accounts::update).await?;
    serve(&mut s, &ctx, CREDENTIALS, accounts::verify).await?;
    serve(&mut s, &ctx, CLIENT, oauth::get_client).await?;
    serve(&mut s, &ctx, CLIENT, oauth::authenticate_client).await?;
    serve(&mut s, &ctx, GRANT, oauth::store_code).await?;
    serve(&mut s, &ctx, GRANT, oauth::redeem_code).await?;
    serve(&mut s, &ctx, GRANT, oauth::issue_refresh).await?;
    serve(&mut s, &ctx, GRANT, oauth::rotate_refresh).await?;
    serve(&mut s, &ctx, GRANT, oauth::revoke_refresh).await?;
    Ok(s)
}

/// Serve `R` at its contract subject inside `group`, translating errors in
/// the one place that does it (`From<Error> for RpcError`).
async fn serve<R, F, Fut>(
    service: &mut RpcService,
    ctx: &Ctx,
    group: &str,
    handler: F,
) -> Result<(), Error>
where
    R: Rpc,
    F: Fn(Ctx, R, MessageMeta) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Reply, Error>> + Send + 'static,
{
    let ctx = ctx.clone();
    let endpoint = subjects::endpoint_of(R::SUBJECT, group);
    service
        .endpoint::<R, _, _>(group, endpoint, move |req, meta| {
            let reply = handler(ctx.clone(), req, meta);
            async move { reply.await.map_err(RpcError::from) }
        })
        .await?;
    Ok(())
}
