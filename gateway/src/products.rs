//! `/v1/products`: the catalog's products over HTTP, read through the
//! catalog's RPC endpoints. The response objects mirror the wire types in
//! `jetshop_contracts::catalog` and are mapped from them here.

use chrono::{DateTime, Utc};
use jetshop_contracts::catalog::{self as wire, DEFAULT_PAGE_SIZE};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::web::Data;
use poem_openapi::{
    Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use crate::{Error, problem::operation as problems, request_id::RequestId};

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
enum Tag {
    /// Products, prices and stock levels.
    Products,
}

/// A price in the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Money")]
pub struct MoneyBody {
    /// Amount in minor units (cents for EUR and USD), never negative.
    pub amount_minor: i64,
    /// ISO 4217 currency code, upper case (`EUR`).
    pub currency: String,
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

impl From<wire::Money> for MoneyBody {
    fn from(m: wire::Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
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
    async fn list(
        &self,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        #[oai(validator(max_length = 512))]
        cursor: Query<Option<String>>,
        /// Text to search for in sku, name and description.
        #[oai(validator(max_length = 200))]
        q: Query<Option<String>>,
    ) -> Result<Json<ProductPageBody>, Error> {
        let request = wire::ListProducts {
            cursor: cursor.0,
            limit: Some(limit.0.unwrap_or(DEFAULT_PAGE_SIZE)),
            q: q.0.filter(|q| !q.trim().is_empty()),
        };
        let page = rpc
            .call(&request, &MessageMeta::correlated(request_id.as_str()))
            .await?;
        Ok(Json(page.into()))
    }

    /// Get a product
    ///
    /// The product with this id, as the catalog has it now.
    #[oai(
        path = "/v1/products/:id",
        method = "get",
        operation_id = "getProduct",
        transform = "problems"
    )]
    async fn get(
        &self,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        /// Product id (a UUID).
        id: Path<Uuid>,
    ) -> Result<Json<ProductBody>, Error> {
        let product = rpc
            .call(
                &wire::GetProduct { id: id.0 },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        Ok(Json(product.into()))
    }
}
