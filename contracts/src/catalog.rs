//! The catalog's messages: its events, its commands and its RPC pairs.
//!
//! These are wire shapes, deliberately plain: the catalog service validates
//! them into domain types (`Sku`, `Money`, ...) on the way in.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Command, Event, Message, Rpc, subjects::catalog as subj};

/// A price in the currency's minor unit (cents for EUR and USD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    /// Amount in minor units, never negative.
    pub amount_minor: i64,
    /// ISO 4217 code, upper case (`EUR`).
    pub currency: String,
}

/// A product as the catalog publishes and serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Product {
    /// Product id.
    pub id: Uuid,
    /// Stock keeping unit, unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer text.
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// Units on hand, never negative.
    pub stock: i64,
    /// Bumped on every change (optimistic concurrency, cache freshness).
    pub version: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Command: create a product. The caller chooses the id so that it can poll
/// for the result and so that a retried command is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// Id of the product to create.
    pub id: Uuid,
    /// Stock keeping unit, unique across the catalog.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer text.
    #[serde(default)]
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// Initial units on hand.
    #[serde(default)]
    pub stock: i64,
}

/// Command: change a product's descriptive fields or price. Absent fields stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    /// The product to change.
    pub id: Uuid,
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
}

/// Command: add (`delta > 0`) or remove (`delta < 0`) units of stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    /// The product whose stock changes.
    pub id: Uuid,
    /// Units to add (positive) or remove (negative).
    pub delta: i64,
    /// Why, for the audit trail (`restock`, `damaged`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Event: a product was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductCreated {
    /// The product as created.
    pub product: Product,
}

/// Event: a product's descriptive fields or price changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductChanged {
    /// The product after the change.
    pub product: Product,
}

/// Event: a product's stock was adjusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockAdjusted {
    /// The product.
    pub product_id: Uuid,
    /// Units added or removed.
    pub delta: i64,
    /// Units on hand after the adjustment.
    pub stock: i64,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The product's version after the adjustment.
    pub version: i64,
}

/// One line of a reservation: a product and how many units of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReservationLine {
    /// The product.
    pub product_id: Uuid,
    /// Units, at least 1.
    pub quantity: i64,
}

/// A line of a rejected reservation that the catalog could not satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnavailableLine {
    /// The product (unknown to the catalog when `available` is 0 and it
    /// never existed).
    pub product_id: Uuid,
    /// Units the order asked for.
    pub requested: i64,
    /// Units on hand when the reservation was tried.
    pub available: i64,
}

/// Command: take stock for all lines of an order, or for none. Idempotent
/// per `order_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveStock {
    /// The order the stock is held for.
    pub order_id: Uuid,
    /// What to reserve; lines of the same product are added together.
    pub lines: Vec<ReservationLine>,
}

/// Command: give an order's reserved (not committed) stock back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseStock {
    /// The order whose reservation ends.
    pub order_id: Uuid,
    /// Why, for the audit trail (`payment declined`, `cancelled`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Command: make an order's reservation final (the goods are sold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitReservation {
    /// The order whose reservation becomes final.
    pub order_id: Uuid,
}

/// Event: stock for every line of an order was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockReserved {
    /// The order.
    pub order_id: Uuid,
    /// What was reserved, one line per product.
    pub lines: Vec<ReservationLine>,
}

/// Event: an order's reservation could not be made; nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockRejected {
    /// The order.
    pub order_id: Uuid,
    /// Why, for people.
    pub reason: String,
    /// The lines that could not be satisfied.
    pub unavailable: Vec<UnavailableLine>,
}

/// Event: an order's reserved stock went back on hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockReleased {
    /// The order.
    pub order_id: Uuid,
    /// What went back, one line per product.
    pub lines: Vec<ReservationLine>,
}

/// Event: an order's reservation became final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReservationCommitted {
    /// The order.
    pub order_id: Uuid,
    /// What was committed, one line per product.
    pub lines: Vec<ReservationLine>,
}

/// RPC: fetch one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetProduct {
    /// Product id.
    pub id: Uuid,
}

/// RPC: one page of products, ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListProducts {
    /// Opaque cursor from a previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1..=100 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Case-insensitive text matched against sku, name and description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Only the product with exactly this sku (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
}

/// RPC reply: a page of products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductPage {
    /// The products on this page.
    pub items: Vec<Product>,
    /// Cursor for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Largest page [`ListProducts`] serves.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

macro_rules! message {
    ($ty:ty, $name:literal, $version:literal) => {
        impl Message for $ty {
            const TYPE: &'static str = $name;
            const VERSION: u32 = $version;
        }
    };
}

message!(Product, "catalog.product", 1);
message!(CreateProduct, "catalog.create-product", 1);
message!(UpdateProduct, "catalog.update-product", 1);
message!(AdjustStock, "catalog.adjust-stock", 1);
message!(ProductCreated, "catalog.product-created", 1);
message!(ProductChanged, "catalog.product-changed", 1);
message!(StockAdjusted, "catalog.stock-adjusted", 1);
message!(ReserveStock, "catalog.reserve-stock", 1);
message!(ReleaseStock, "catalog.release-stock", 1);
message!(CommitReservation, "catalog.commit-reservation", 1);
message!(StockReserved, "catalog.stock-reserved", 1);
message!(StockRejected, "catalog.stock-rejected", 1);
message!(StockReleased, "catalog.stock-released", 1);
message!(ReservationCommitted, "catalog.reservation-committed", 1);
message!(GetProduct, "catalog.get-product", 1);
message!(ListProducts, "catalog.list-products", 1);
message!(ProductPage, "catalog.product-page", 1);

impl Command for CreateProduct {
    const SUBJECT: &'static str = subj::CREATE_PRODUCT;
}
impl Command for UpdateProduct {
    const SUBJECT: &'static str = subj::UPDATE_PRODUCT;
}
impl Command for AdjustStock {
    const SUBJECT: &'static str = subj::ADJUST_STOCK;
}
impl Event for ProductCreated {
    const SUBJECT: &'static str = subj::PRODUCT_CREATED;
}
impl Event for ProductChanged {
    const SUBJECT: &'static str = subj::PRODUCT_CHANGED;
}
impl Event for StockAdjusted {
    const SUBJECT: &'static str = subj::STOCK_ADJUSTED;
}
impl Command for ReserveStock {
    const SUBJECT: &'static str = subj::RESERVE_STOCK;
    fn subject(&self) -> std::borrow::Cow<'static, str> {
        crate::subjects::keyed::subject(Self::SUBJECT, self.order_id).into()
    }
}
impl Command for ReleaseStock {
    const SUBJECT: &'static str = subj::RELEASE_STOCK;
    fn subject(&self) -> std::borrow::Cow<'static, str> {
        crate::subjects::keyed::subject(Self::SUBJECT, self.order_id).into()
    }
}
impl Command for CommitReservation {
    const SUBJECT: &'static str = subj::COMMIT_RESERVATION;
    fn subject(&self) -> std::borrow::Cow<'static, str> {
        crate::subjects::keyed::subject(Self::SUBJECT, self.order_id).into()
    }
}
impl Event for StockReserved {
    const SUBJECT: &'static str = subj::STOCK_RESERVED;
    fn subject(&self) -> std::borrow::Cow<'static, str> {
        crate::subjects::keyed::subject(Self::SUBJECT, self.order_id).into()
    }
}
impl Event for StockRejected {
    const SUBJECT: &'static str = subj::STOCK_REJECTED;
    fn subject(&self) -> std::borrow::Cow<'static, str> {
        crate::subjects::keyed::subject(Self::SUBJECT, self.order_id).into()
    }
}
impl Event for StockReleased {
    const SUBJECT: &'static str = subj::STOCK_RELEASED;
    fn subject(&self) -> std::borrow::Cow<'static, str> {
        crate::subjects::keyed::subject(Self::SUBJECT, self.order_id).into()
    }
}
impl Event for ReservationCommitted {
    const SUBJECT: &'static str = subj::RESERVATION_COMMITTED;
    fn subject(&self) -> std::borrow::Cow<'static, str> {
        crate::subjects::keyed::subject(Self::SUBJECT, self.order_id).into()
    }
}
impl Rpc for GetProduct {
    type Reply = Product;
    const SUBJECT: &'static str = subj::RPC_PRODUCT_GET;
}
impl Rpc for ListProducts {
    type Reply = ProductPage;
    const SUBJECT: &'static str = subj::RPC_PRODUCT_LIST;
}

/// What a catalog event says about cached products: the product itself
/// (created or changed), or the products whose stock moved. `None` for
/// events that change no product (a rejection, a commit of stock already
/// taken) and for payloads that are not what their type says.
/// `ty` is the `Jetshop-Type` header.
pub fn product_touch(
    ty: Option<&str>,
    encoding: crate::Encoding,
    payload: &[u8],
) -> Option<crate::Touch<Uuid, Product>> {
    use crate::Touch;
    fn lines(lines: Vec<ReservationLine>) -> Touch<Uuid, Product> {
        Touch::Changed(lines.into_iter().map(|l| l.product_id).collect())
    }
    match ty? {
        ProductCreated::TYPE => {
            let p = encoding.decode::<ProductCreated>(payload).ok()?.product;
            Some(Touch::Current(p.id, p))
        }
        ProductChanged::TYPE => {
            let p = encoding.decode::<ProductChanged>(payload).ok()?.product;
            Some(Touch::Current(p.id, p))
        }
        StockAdjusted::TYPE => {
            let e = encoding.decode::<StockAdjusted>(payload).ok()?;
            Some(Touch::Changed(vec![e.product_id]))
        }
        // Reservations move stock without carrying it.
        StockReserved::TYPE => Some(lines(encoding.decode::<StockReserved>(payload).ok()?.lines)),
        StockReleased::TYPE => Some(lines(encoding.decode::<StockReleased>(payload).ok()?.lines)),
        _ => None,
    }
}
