//! The catalog's synchronous reads, served as the `catalog` micro service.

use jetshop_contracts::{
    RpcError,
    catalog::{GetProduct, ListProducts, Product, ProductPage},
    subjects::catalog as subj,
};
use jetshop_platform::{envelope::MessageMeta, read_cache::Lookup, rpc::RpcService};
use sea_orm::DatabaseConnection;

use crate::{Error, cache::ProductCache, storage::products};

/// Register the micro service and its endpoints.
pub async fn start(
    client: &async_nats::Client,
    db: DatabaseConnection,
    cache: ProductCache,
) -> Result<RpcService, Error> {
    let mut service = RpcService::start(
        client,
        crate::SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        "Products, prices and stock of the jetshop catalog",
    )
    .await?;
    let get_db = db.clone();
    service
        .endpoint::<GetProduct, _, _>(
            subj::RPC_PRODUCT_GROUP,
            subj::RPC_GET_ENDPOINT,
            move |req, meta| get(get_db.clone(), cache.clone(), req, meta),
        )
        .await?;
    service
        .endpoint::<ListProducts, _, _>(
            subj::RPC_PRODUCT_GROUP,
            subj::RPC_LIST_ENDPOINT,
            move |req, meta| list(db.clone(), req, meta),
        )
        .await?;
    Ok(service)
}

async fn get(
    db: DatabaseConnection,
    cache: ProductCache,
    req: GetProduct,
    _meta: MessageMeta,
) -> Result<Product, RpcError> {
    let ticket = match cache.get(req.id) {
        Lookup::Hit(product) => return Ok(product),
        Lookup::Miss(ticket) => ticket,
    };
    let row = products::find(&db, req.id)
        .await?
        .ok_or(Error::NotFound(req.id))?;
    let product = products::to_wire(&row)?;
    cache.fill(product.clone(), ticket);
    Ok(product)
}

async fn list(
    db: DatabaseConnection,
    req: ListProducts,
    _meta: MessageMeta,
) -> Result<ProductPage, RpcError> {
    Ok(products::list(&db, &req).await?)
}
