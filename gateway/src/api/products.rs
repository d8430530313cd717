//! `/v1/products`: the catalog's products over HTTP, read through the
//! catalog's RPC endpoints (open to everyone: a shop's catalog is public)
//! and written through its commands over JetStream (`catalog:write`). The
//! response objects mirror the wire types in `jetshop_contracts::catalog`
//! and are mapped from them here.
//!
//! Writes answer **202 Accepted** with `Location: /v1/products/{id}` as
//! soon as JetStream has stored the command: the catalog applies it
//! moments later (poll `Location`; `version` increases). The body carries
//! the command id (its `Nats-Msg-Id`, so a retried publish is dropped by
//! the stream). Bodies are validated here with the catalog's own rules, so
//! a bad write is a 400 problem now rather than a dead letter later.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use jetshop_contracts::catalog::{self as wire, DEFAULT_PAGE_SIZE};
use jetshop_platform::{
    envelope::{MessageMeta, send_command},
    rpc::RpcClient,
};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use crate::{
    api::{
        money::{MoneyBody, NewMoneyBody},
        product_reads::ProductReads,
    },
    auth::{
        guard::{Authenticated, Public},
        scopes::Scope,
    },
    error::Error,
    http::{
        problem::{Guarded, operation as problems},
        request_id::RequestId,
        strict_json::StrictJson,
    },
};

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
enum Tag {
    /// Products, prices and stock levels.
    Products,
}

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Product")]
pub struct ProductBody {
    /// Product id.
    pub id: Uuid,
    /// Stock keeping unit, unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer text.
    pub description: String,
    /// Unit price.
    pub price: MoneyBody,
    /// Units on hand, never negative.
    pub stock: i64,
    /// Bumped on every change.
    pub version: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A page of products, ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "ProductPage")]
pub struct ProductPageBody {
    /// The products on this page.
    pub items: Vec<ProductBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

impl From<wire::Product> for ProductBody {
    fn from(p: wire::Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price: p.price.into(),
            stock: p.stock,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl From<wire::ProductPage> for ProductPageBody {
    fn from(page: wire::ProductPage) -> Self {
        Self {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// A product to create.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "NewProduct", deny_unknown_fields)]
pub struct NewProductBody {
    /// Id to give it (a UUID); chosen by the gateway when absent. Sending
    /// your own makes a retried create harmless.
    pub id: Option<Uuid>,
    /// Stock keeping unit, unique: 1 to 64 of `A-Z a-z 0-9 - _ .` (stored upper case).
    #[oai(validator(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
    pub sku: String,
    /// Display name, 1 to 200 characters.
    #[oai(validator(min_length = 1, max_length = 200, pattern = "\\S"))]
    pub name: String,
    /// Longer text, up to 5000 characters.
    #[oai(validator(max_length = 5000))]
    pub description: Option<String>,
    /// Unit price.
    pub price: NewMoneyBody,
    /// Initial units on hand (default 0).
    #[oai(validator(minimum(value = "0")))]
    pub stock: Option<i64>,
}

/// Changes to a product; absent fields stay, at least one must be given.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "ProductChanges", deny_unknown_fields)]
pub struct ProductChangesBody {
    /// New display name, 1 to 200 characters.
    #[oai(validator(min_length = 1, max_length = 200, pattern = "\\S"))]
    pub name: Option<String>,
    /// New description, up to 5000 characters.
    #[oai(validator(max_length = 5000))]
    pub description: Option<String>,
    /// New price.
    pub price: Option<NewMoneyBody>,
}

/// The stock level to set.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "StockLevel", deny_unknown_fields)]
pub struct StockLevelBody {
    /// Units on hand, never negative.
    #[oai(validator(minimum(value = "0")))]
    pub stock: i64,
}

/// A write the catalog will apply.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Accepted")]
pub struct AcceptedBody {
    /// The product the command is about.
    pub id: Uuid,
    /// The command's id (its `Nats-Msg-Id`); absent when nothing needed changing.
    #[oai(skip_serializing_if_is_none)]
    pub command_id: Option<Uuid>,
    /// `accepted`: the command is stored and will be applied; poll `Location`.
    pub status: String,
}

#[derive(ApiResponse)]
enum Accepted {
    /// The command is queued; the catalog applies it shortly. Poll `Location`.
    #[oai(status = 202)]
    Accepted(
        Json<AcceptedBody>,
        /// `/v1/products/{id}`.
        #[oai(header = "Location")]
        String,
    ),
}

impl Accepted {
    fn new(id: Uuid, command_id: Option<Uuid>) -> Self {
        Self::Accepted(
            Json(AcceptedBody {
                id,
                command_id,
                status: "accepted".to_owned(),
            }),
            format!("/v1/products/{id}"),
        )
    }
}

/// Send a command with a fresh id as its `Nats-Msg-Id`.
async fn send<C: jetshop_contracts::Command>(
    js: &jetstream::Context,
    command: &C,
    request_id: &RequestId,
) -> Result<Uuid, Error> {
    let command_id = jetshop_platform::envelope::new_message_id();
    send_command(
        js,
        &command_id.to_string(),
        command,
        &MessageMeta::correlated(request_id.as_str()),
    )
    .await
    .map_err(Error::Publish)?;
    Ok(command_id)
}

/// A 409 when `id` (if the caller chose it) or `sku` is already taken.
async fn clash_check(
    rpc: &RpcClient,
    id: Uuid,
    id_chosen: bool,
    sku: &str,
    request_id: &RequestId,
) -> Result<(), Error> {
    let meta = MessageMeta::correlated(request_id.as_str());
    if id_chosen {
        match rpc.call(&wire::GetProduct { id }, &meta).await {
            Ok(_) => return Err(Error::Conflict(format!("a product with id {id} exists"))),
            Err(jetshop_platform::rpc::CallError::Remote(e))
                if e.code == jetshop_contracts::ErrorCode::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let same_sku = wire::ListProducts {
        sku: Some(sku.to_owned()),
        limit: Some(1),
        ..Default::default()
    };
    let page = rpc.call(&same_sku, &meta).await?;
    if !page.items.is_empty() {
        return Err(Error::Conflict(format!(
            "sku {sku} is taken by another product"
        )));
    }
    Ok(())
}

/// The product operations. Stateless: the RPC client and the request id
/// come from request data.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductsApi;

#[OpenApi(tag = "Tag::Products")]
impl ProductsApi {
    /// List products
    ///
    /// One page of products ordered by id, optionally filtered by a text
    /// matched case-insensitively against sku, name and description. Follow
    /// `next_cursor` for the next page.
    #[oai(
        path = "/v1/products",
        method = "get",
        operation_id = "listProducts",
        transform = "problems"
    )]
    #[allow(
        clippy::too_many_arguments,
        reason = "poem-openapi takes each query parameter as an argument"
    )]
    async fn list(
        &self,
        _auth: Public,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page (opaque; 32 hex digits).
        #[oai(validator(pattern = "^[0-9a-fA-F]{32}$"))]
        cursor: Query<Option<String>>,
        /// Text to search for in sku, name and description.
        #[oai(validator(max_length = 200))]
        q: Query<Option<String>>,
        /// Only the product with exactly this sku (case-insensitive): 1 to
        /// 64 of `A-Z a-z 0-9 - _ .`, as skus are.
        #[oai(validator(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
        sku: Query<Option<String>>,
    ) -> Result<Json<ProductPageBody>, Error> {
        let request = wire::ListProducts {
            cursor: cursor.0,
            limit: Some(limit.0.unwrap_or(DEFAULT_PAGE_SIZE)),
            q: q.0.filter(|q| !q.trim().is_empty()),
            sku: sku.0,
        };
        let page = rpc
            .call(&request, &MessageMeta::correlated(request_id.as_str()))
            .await?;
        Ok(Json(page.into()))
    }

    /// Get a product
    ///
    /// The product with this id, as the catalog has it now. Gateways cache
    /// products and learn of changes within moments; `version` increases
    /// with every change.
    #[oai(
        path = "/v1/products/:id",
        method = "get",
        operation_id = "getProduct",
        transform = "problems"
    )]
    async fn get(
        &self,
        _auth: Public,
        rpc: Data<&RpcClient>,
        reads: Data<&ProductReads>,
        request_id: Data<&RequestId>,
        /// Product id (a UUID).
        id: Path<Uuid>,
    ) -> Result<Json<ProductBody>, Error> {
        let product = reads
            .get(&rpc, id.0, &MessageMeta::correlated(request_id.as_str()))
            .await?;
        Ok(Json(product.into()))
    }

    /// Create a product
    ///
    /// Queue a `CreateProduct` command for the catalog. Needs `catalog:write`.
    /// Answers 202 with `Location: /v1/products/{id}` once JetStream stored
    /// the command; the product appears there shortly. A create whose id or
    /// sku exists already changes nothing.
    #[oai(
        path = "/v1/products",
        method = "post",
        operation_id = "createProduct",
        transform = "problems"
    )]
    async fn create(
        &self,
        #[oai(scope = "Scope::CatalogWrite")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        js: Data<&jetstream::Context>,
        request_id: Data<&RequestId>,
        body: StrictJson<NewProductBody>,
    ) -> Result<Accepted, Guarded> {
        auth.require(Scope::CatalogWrite)?;
        let body = body.0;
        let id = body.id.unwrap_or_else(Uuid::now_v7);
        let sku = body.sku.trim().to_ascii_uppercase();
        // The catalog would dead-letter a create that clashes; say so now.
        // Two creates racing for one sku can still both be accepted here:
        // the catalog keeps the first and dead-letters the other.
        clash_check(&rpc, id, body.id.is_some(), &sku, &request_id).await?;
        let command = wire::CreateProduct {
            id,
            sku,
            name: body.name.trim().to_owned(),
            description: body.description.unwrap_or_default(),
            price: body.price.into(),
            stock: body.stock.unwrap_or(0),
        };
        let command_id = send(&js, &command, &request_id).await?;
        tracing::info!(product_id = %id, %command_id, "create product accepted");
        Ok(Accepted::new(id, Some(command_id)))
    }

    /// Change a product
    ///
    /// Queue an `UpdateProduct` command: name, description and price;
    /// absent fields stay. Needs `catalog:write`. Answers 202 with
    /// `Location` (404 when the product does not exist).
    #[oai(
        path = "/v1/products/:id",
        method = "patch",
        operation_id = "updateProduct",
        transform = "problems"
    )]
    async fn update(
        &self,
        #[oai(scope = "Scope::CatalogWrite")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        js: Data<&jetstream::Context>,
        request_id: Data<&RequestId>,
        /// Product id (a UUID).
        id: Path<Uuid>,
        body: StrictJson<ProductChangesBody>,
    ) -> Result<Accepted, Guarded> {
        auth.require(Scope::CatalogWrite)?;
        let body = body.0;
        if body.name.is_none() && body.description.is_none() && body.price.is_none() {
            return Err(Error::Invalid {
                field: "body",
                reason: "name at least one of name, description, price",
            }
            .into());
        }
        // A command for a product that does not exist would only be dead-lettered.
        rpc.call(
            &wire::GetProduct { id: id.0 },
            &MessageMeta::correlated(request_id.as_str()),
        )
        .await?;
        let command = wire::UpdateProduct {
            id: id.0,
            name: body.name.map(|n| n.trim().to_owned()),
            description: body.description,
            price: body.price.map(Into::into),
        };
        let command_id = send(&js, &command, &request_id).await?;
        tracing::info!(product_id = %id.0, %command_id, "update product accepted");
        Ok(Accepted::new(id.0, Some(command_id)))
    }

    /// Set a product's stock
    ///
    /// Set the units on hand. Needs `catalog:write`. The gateway reads the
    /// current level and queues an `AdjustStock` command with the
    /// difference (reason `set via API`); nothing is queued when the level
    /// is already right. Answers 202 with `Location`.
    ///
    /// Not atomic: a stock change applied between the read and the command
    /// (an order reserving units, another admin) is kept and the result is
    /// off by that change. Adjust stock by a delta through the catalog's
    /// commands where that matters.
    #[oai(
        path = "/v1/products/:id/stock",
        method = "put",
        operation_id = "setProductStock",
        transform = "problems"
    )]
    async fn set_stock(
        &self,
        #[oai(scope = "Scope::CatalogWrite")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        js: Data<&jetstream::Context>,
        request_id: Data<&RequestId>,
        /// Product id (a UUID).
        id: Path<Uuid>,
        body: StrictJson<StockLevelBody>,
    ) -> Result<Accepted, Guarded> {
        auth.require(Scope::CatalogWrite)?;
        let current = rpc
            .call(
                &wire::GetProduct { id: id.0 },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        let delta = body.0.stock - current.stock;
        if delta == 0 {
            return Ok(Accepted::new(id.0, None));
        }
        let command = wire::AdjustStock {
            id: id.0,
            delta,
            reason: Some("set via API".to_owned()),
        };
        let command_id = send(&js, &command, &request_id).await?;
        tracing::info!(product_id = %id.0, delta, %command_id, "stock change accepted");
        Ok(Accepted::new(id.0, Some(command_id)))
    }
}
