//! `/v1/orders`: placing, reading, following and cancelling orders.
//!
//! Commands go to the orders service over JetStream and are answered with
//! **202 Accepted** and `Location: /v1/orders/{id}` once the stream stored
//! them; the order saga (stock, payment, confirmation) runs behind it.
//! Reads use the orders service's RPC endpoints. Follow an order with
//! `GET /v1/orders/{id}/events` (Server-Sent Events, see
//! [`crate::api::order_hub`]) or by polling `Location`.
//!
//! Who sees what: a customer sees only their own orders; a token with
//! `users:admin` sees every order. Someone else's order answers exactly
//! like a missing one (404), so ids cannot be probed.
//!
//! Placing an order checks here what the orders service would only
//! dead-letter or cancel later: the body's shape, that every product
//! exists (422 naming the line otherwise), and that the token speaks for a
//! customer. The gateway chooses the order id (UUIDv7) and derives the
//! command's `Nats-Msg-Id` from it, so a publish retried after a lost
//! acknowledgement is dropped as a duplicate by JetStream; a retried HTTP
//! request with the same `Idempotency-Key` gets the first answer (and
//! order id) back from [`crate::http::idempotency`].

use std::collections::HashMap;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::BoxStream};
use jetshop_contracts::{
    Command, ErrorCode,
    orders::{
        self as wire, CancelOrder, GetOrder, GetOrderHistory, LineRequest, ListOrders,
        MAX_QUANTITY, OrderStatus, PlaceOrder,
    },
    users::GetUser,
};
use jetshop_platform::{
    envelope::{MessageMeta, send_command},
    rpc::{CallError, RpcClient},
};
use poem::web::{Data, sse::Event};
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::{EventStream, Json},
    types::Example,
};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    api::{
        money::MoneyBody,
        order_hub::{OrderHub, RESYNC, Watch},
        product_reads::ProductReads,
    },
    auth::{
        guard::{AuthError, Authenticated, Principal},
        scopes::{self, Scope},
    },
    error::{Error, UnknownProduct},
    http::{
        idempotency::KeyedId,
        problem::{Guarded, operation as problems},
        request_id::RequestId,
        strict_json::{OptionalJson, StrictJson},
    },
};

/// Catalog lookups in flight at once while checking an order's products.
const PRODUCT_CHECKS_IN_FLIGHT: usize = 8;
/// How long a command is offered to JetStream again after failed
/// attempts: long enough to ride out a stream leader election after a NATS
/// node dies (a few seconds), short of the request deadline. Safe to
/// repeat: the message id is derived from the order, so the stream keeps
/// one copy.
const PUBLISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Tags)]
enum Tag {
    /// Orders: place, follow and cancel them.
    Orders,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "OrderStatus", rename_all = "snake_case")]
pub enum OrderStatusBody {
    /// Accepted, prices frozen; stock not yet held.
    Placed,
    /// Stock held; payment not yet authorized.
    StockReserved,
    /// Money held on the card; being captured. Too late to cancel.
    PaymentAuthorized,
    /// Money taken; the stock is being committed. Too late to cancel.
    Paid,
    /// Done: stock committed, money captured.
    Confirmed,
    /// Being unwound: holds are being released.
    Cancelling,
    /// Done: nothing held or charged.
    Cancelled,
}

impl From<OrderStatus> for OrderStatusBody {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Placed => Self::Placed,
            OrderStatus::StockReserved => Self::StockReserved,
            OrderStatus::PaymentAuthorized => Self::PaymentAuthorized,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::Cancelling => Self::Cancelling,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<OrderStatusBody> for OrderStatus {
    fn from(s: OrderStatusBody) -> Self {
        match s {
            OrderStatusBody::Placed => Self::Placed,
            OrderStatusBody::StockReserved => Self::StockReserved,
            OrderStatusBody::PaymentAuthorized => Self::PaymentAuthorized,
            OrderStatusBody::Paid => Self::Paid,
            OrderStatusBody::Confirmed => Self::Confirmed,
            OrderStatusBody::Cancelling => Self::Cancelling,
            OrderStatusBody::Cancelled => Self::Cancelled,
        }
    }
}

/// One line of an order, priced when it was placed.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "OrderLine")]
pub struct OrderLineBody {
    /// The product.
    pub product_id: Uuid,
    /// Its sku when the order was placed.
    pub sku: String,
    /// Its name when the order was placed.
    pub name: String,
    /// Units.
    pub quantity: i64,
    /// Unit price when the order was placed.
    pub unit_price: MoneyBody,
    /// `unit_price * quantity`.
    pub line_total: MoneyBody,
}

/// One step of the order's saga.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "TimelineEntry")]
pub struct TimelineEntryBody {
    /// `reserve_stock`, `authorize_payment`, `capture_payment`,
    /// `commit_reservation`, `void_payment`, `release_stock`, ...
    pub step: String,
    /// `started`, `retried`, `succeeded`, `failed`, `stuck`.
    pub outcome: String,
    /// Details: a decline reason, the attempt number.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Order", example)]
pub struct OrderBody {
    /// Order id.
    pub id: Uuid,
    /// The customer who placed it.
    pub customer_id: Uuid,
    /// Where it stands; `confirmed` and `cancelled` are final.
    pub status: OrderStatusBody,
    /// The lines, priced when the order was placed (empty when it could
    /// not be placed at all).
    pub lines: Vec<OrderLineBody>,
    /// Sum of the line totals.
    pub total: MoneyBody,
    /// Why it was cancelled.
    #[oai(skip_serializing_if_is_none)]
    pub cancel_reason: Option<String>,
    /// The saga's steps, oldest first (empty in lists).
    pub timeline: Vec<TimelineEntryBody>,
    /// Number of events the order has had.
    pub version: i64,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<wire::OrderView> for OrderBody {
    fn from(o: wire::OrderView) -> Self {
        Self {
            id: o.id,
            customer_id: o.customer_id,
            status: o.status.into(),
            lines: o
                .lines
                .into_iter()
                .map(|l| OrderLineBody {
                    product_id: l.product_id,
                    sku: l.sku,
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                    line_total: l.line_total.into(),
                })
                .collect(),
            total: o.total.into(),
            cancel_reason: o.cancel_reason,
            timeline: o
                .timeline
                .into_iter()
                .map(|t| TimelineEntryBody {
                    step: t.step,
                    outcome: t.outcome,
                    detail: t.detail,
                    at: t.at,
                })
                .collect(),
            version: o.version,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

fn example_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
        .expect("a valid timestamp")
        .with_timezone(&Utc)
}

const EXAMPLE_ORDER: Uuid = Uuid::from_u128(0x0194_b4a1_7c00_7000_8000_0000_0000_0001);
const EXAMPLE_CUSTOMER: Uuid = Uuid::from_u128(0x0194_b4a0_0000_7000_8000_0000_0000_0002);
const EXAMPLE_PRODUCT: Uuid = Uuid::from_u128(0x0194_b49f_0000_7000_8000_0000_0000_0003);

impl Example for OrderBody {
    fn example() -> Self {
        let eur = |amount_minor| MoneyBody {
            amount_minor,
            currency: "EUR".into(),
        };
        let at = example_time();
        Self {
            id: EXAMPLE_ORDER,
            customer_id: EXAMPLE_CUSTOMER,
            status: OrderStatusBody::Confirmed,
            lines: vec![OrderLineBody {
                product_id: EXAMPLE_PRODUCT,
                sku: "MUG-01".into(),
                name: "Mug".into(),
                quantity: 2,
                unit_price: eur(1250),
                line_total: eur(2500),
            }],
            total: eur(2500),
            cancel_reason: None,
            timeline: ["reserve_stock", "authorize_payment", "capture_payment"]
                .into_iter()
                .map(|step| TimelineEntryBody {
                    step: step.into(),
                    outcome: "succeeded".into(),
                    detail: None,
                    at,
                })
                .collect(),
            version: 6,
            created_at: at,
            updated_at: at,
        }
    }
}

/// A page of orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "OrderPage")]
pub struct OrderPageBody {
    /// The orders on this page (without their timelines).
    pub items: Vec<OrderBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
    /// The next page's URL (same filters); absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

/// One line to order.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "NewOrderLine", deny_unknown_fields)]
pub struct NewOrderLineBody {
    /// The product (a UUID).
    pub product_id: Uuid,
    /// Units, 1 to 1000. Lines naming the same product are added up.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub quantity: i64,
}

/// An order to place.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "NewOrder", deny_unknown_fields, example)]
pub struct NewOrderBody {
    /// What to buy: 1 to 50 lines.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub lines: Vec<NewOrderLineBody>,
    /// The card token to pay with: 1 to 64 of `A-Z a-z 0-9 _`. The
    /// card processor in test mode approves `tok_visa`, declines
    /// `tok_chargeDeclined` and `tok_insufficientFunds`.
    #[oai(validator(pattern = "^[A-Za-z0-9_]{1,64}$"))]
    pub card_token: String,
}

impl Example for NewOrderBody {
    fn example() -> Self {
        Self {
            lines: vec![NewOrderLineBody {
                product_id: EXAMPLE_PRODUCT,
                quantity: 2,
            }],
            card_token: "tok_visa".into(),
        }
    }
}

/// Why you cancel.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "CancelOrder", deny_unknown_fields, example)]
pub struct CancelOrderBody {
    /// A reason, up to 500 characters.
    #[oai(validator(max_length = 500))]
    pub reason: Option<String>,
}

impl Example for CancelOrderBody {
    fn example() -> Self {
        Self {
            reason: Some("ordered the wrong size".into()),
        }
    }
}

/// Where to follow an order.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "OrderLinks")]
pub struct OrderLinksBody {
    /// The order (poll it).
    #[oai(rename = "self")]
    pub order: String,
    /// Its status changes as Server-Sent Events.
    pub events: String,
    /// Its events so far.
    pub history: String,
    /// Where to `POST` to cancel it.
    pub cancel: String,
}

impl OrderLinksBody {
    fn of(id: Uuid) -> Self {
        let order = location(id);
        Self {
            events: format!("{order}/events"),
            history: format!("{order}/history"),
            cancel: format!("{order}/cancel"),
            order,
        }
    }
}

/// A command about an order, accepted.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "OrderAccepted", example)]
pub struct OrderAcceptedBody {
    /// The order.
    pub order_id: Uuid,
    /// `placed` for a new order; `cancelling` for a cancellation (the
    /// order ends `cancelled`, or `confirmed` if capture began meanwhile).
    pub status: String,
    /// Where to follow it.
    pub links: OrderLinksBody,
}

impl Example for OrderAcceptedBody {
    fn example() -> Self {
        Self {
            order_id: EXAMPLE_ORDER,
            status: "placed".into(),
            links: OrderLinksBody::of(EXAMPLE_ORDER),
        }
    }
}

/// One stored event of an order.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename = "OrderHistoryEntry")]
pub struct HistoryEntryBody {
    /// 1 for the order's first event, then 2, 3, ...
    pub sequence: i64,
    /// The event's type (`orders.placed`).
    #[oai(rename = "type")]
    pub event_type: String,
    /// The event's id.
    pub event_id: Uuid,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The event itself.
    pub data: serde_json::Value,
}

/// An order's events, oldest first: the source of truth its state is built from.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename = "OrderHistory")]
pub struct OrderHistoryBody {
    /// The order.
    pub order_id: Uuid,
    /// Its events.
    pub events: Vec<HistoryEntryBody>,
}

impl From<wire::OrderHistory> for OrderHistoryBody {
    fn from(h: wire::OrderHistory) -> Self {
        Self {
            order_id: h.order_id,
            events: h
                .events
                .into_iter()
                .map(|e| HistoryEntryBody {
                    sequence: e.sequence,
                    event_type: e.event_type,
                    event_id: e.event_id,
                    recorded_at: e.recorded_at,
                    data: e.data,
                })
                .collect(),
        }
    }
}

/// The `data` of a `status` event on an order's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "OrderStatusEvent", example)]
pub struct StatusEventBody {
    /// The order.
    pub order_id: Uuid,
    /// Its status now.
    pub status: OrderStatusBody,
    /// When the order last changed.
    pub at: DateTime<Utc>,
    /// Why it was cancelled.
    #[oai(skip_serializing_if_is_none)]
    pub cancel_reason: Option<String>,
}

impl StatusEventBody {
    fn of(view: &wire::OrderView) -> Self {
        Self {
            order_id: view.id,
            status: view.status.into(),
            at: view.updated_at,
            cancel_reason: view.cancel_reason.clone(),
        }
    }
}

impl Example for StatusEventBody {
    fn example() -> Self {
        Self {
            order_id: EXAMPLE_ORDER,
            status: OrderStatusBody::StockReserved,
            at: example_time(),
            cancel_reason: None,
        }
    }
}

#[derive(ApiResponse)]
enum Accepted {
    /// The command is stored; the order changes shortly. Follow `Location`
    /// (or its `/events`).
    #[oai(status = 202)]
    Accepted(
        Json<OrderAcceptedBody>,
        /// `/v1/orders/{id}`.
        #[oai(header = "Location")]
        String,
    ),
}

impl Accepted {
    fn new(order_id: Uuid, status: &str) -> Self {
        Self::Accepted(
            Json(OrderAcceptedBody {
                order_id,
                status: status.to_owned(),
                links: OrderLinksBody::of(order_id),
            }),
            location(order_id),
        )
    }
}

#[derive(ApiResponse)]
enum Listed {
    /// A page of orders.
    #[oai(status = 200)]
    Page(
        Json<OrderPageBody>,
        /// `<next page URL>; rel="next"` (RFC 8288), absent on the last page.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

/// The SSE stream of an order's statuses.
type StatusEvents = EventStream<BoxStream<'static, StatusEventBody>>;

#[derive(ApiResponse)]
enum Followed {
    /// `text/event-stream`: one `status` event (`data`: an
    /// `OrderStatusEvent`) for the current status, then one per change;
    /// the stream ends after `confirmed` or `cancelled`. A comment line
    /// every 15 s keeps idle connections open.
    #[oai(status = 200)]
    Events(StatusEvents),
}

/// `/v1/orders/{id}`.
fn location(id: Uuid) -> String {
    format!("/v1/orders/{id}")
}

/// The `Nats-Msg-Id` of the `PlaceOrder` command of `order_id`.
pub fn place_message_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&order_id, b"place")
}

/// The `Nats-Msg-Id` of a `CancelOrder` command of `order_id`: one per
/// order, so repeated cancellations within the stream's duplicate window
/// are stored once.
pub fn cancel_message_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&order_id, b"cancel")
}

/// Whether `principal` may see an order of `customer_id`: its own, or any
/// with `users:admin`.
pub fn may_see(principal: &Principal, customer_id: Uuid) -> bool {
    principal.user_id() == Some(customer_id) || principal.has_scope(scopes::USERS_ADMIN)
}

/// The one 404 for a missing order and for someone else's.
fn no_such_order(id: Uuid) -> Error {
    Error::NotFound(format!("no order {id}"))
}

/// Read an order the caller may see; a 404 otherwise.
async fn read_visible(
    rpc: &RpcClient,
    principal: &Principal,
    id: Uuid,
    meta: &MessageMeta,
) -> Result<wire::OrderView, Error> {
    match rpc.call(&GetOrder { order_id: id }, meta).await {
        Ok(view) if may_see(principal, view.customer_id) => Ok(view),
        Ok(_) => Err(no_such_order(id)),
        Err(CallError::Remote(e)) if e.code == ErrorCode::NotFound => Err(no_such_order(id)),
        Err(e) => Err(e.into()),
    }
}

/// The lines of a request, one per product (quantities of repeated
/// products added up, first occurrence first), each with the index of the
/// request line it came from first.
pub fn merge_lines(lines: &[NewOrderLineBody]) -> Result<Vec<(usize, LineRequest)>, Error> {
    let mut merged: Vec<(usize, LineRequest)> = Vec::with_capacity(lines.len());
    let mut at: HashMap<Uuid, usize> = HashMap::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        match at.get(&line.product_id) {
            Some(&slot) => merged[slot].1.quantity += line.quantity,
            None => {
                at.insert(line.product_id, merged.len());
                merged.push((
                    index,
                    LineRequest {
                        product_id: line.product_id,
                        quantity: line.quantity,
                    },
                ));
            }
        }
    }
    if let Some((line, over)) = merged.iter().find(|(_, l)| l.quantity > MAX_QUANTITY) {
        return Err(Error::TooManyUnits {
            line: *line,
            product_id: over.product_id,
            units: over.quantity,
            max: MAX_QUANTITY,
        });
    }
    Ok(merged)
}

/// A 422 naming every line whose product the catalog does not have.
async fn check_products(
    rpc: &RpcClient,
    reads: &ProductReads,
    lines: &[(usize, LineRequest)],
    meta: &MessageMeta,
) -> Result<(), Error> {
    // Owned futures: borrowing ones trip the `Send` check of the handler.
    async fn lookup(
        rpc: RpcClient,
        reads: ProductReads,
        meta: MessageMeta,
        line: usize,
        product_id: Uuid,
    ) -> (usize, Uuid, Result<(), CallError>) {
        let found = reads.get(&rpc, product_id, &meta).await;
        (line, product_id, found.map(drop))
    }
    let lookups: Vec<_> = lines
        .iter()
        .map(|(line, l)| {
            lookup(
                rpc.clone(),
                reads.clone(),
                meta.clone(),
                *line,
                l.product_id,
            )
        })
        .collect();
    let mut lookups = futures::stream::iter(lookups).buffer_unordered(PRODUCT_CHECKS_IN_FLIGHT);
    let mut unknown = Vec::new();
    while let Some((line, product_id, found)) = lookups.next().await {
        match found {
            Ok(_) => {}
            Err(CallError::Remote(e)) if e.code == ErrorCode::NotFound => {
                unknown.push(UnknownProduct { line, product_id });
            }
            Err(e) => return Err(e.into()),
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_by_key(|u| u.line);
    Err(Error::UnknownProducts(unknown))
}

/// Hand a command to JetStream under `message_id`, retrying a failed
/// publish (the acknowledgement may be what got lost: the stream drops the
/// repeat as a duplicate).
async fn send<C: Command>(
    js: &jetstream::Context,
    message_id: Uuid,
    command: &C,
    meta: &MessageMeta,
) -> Result<(), Error> {
    let id = message_id.to_string();
    let started = tokio::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send_command(js, &id, command, meta).await {
            Ok(_) => return Ok(()),
            Err(err) if started.elapsed() + pause < PUBLISH_PATIENCE => {
                tracing::warn!(error = %err, attempt, subject = %command.subject(), "publish failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            Err(err) => return Err(Error::Publish(err)),
        }
    }
}

/// The URL of the page after this one, with the same filters.
pub fn next_page(
    cursor: &str,
    limit: Option<u32>,
    status: Option<OrderStatusBody>,
    customer_id: Option<Uuid>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("cursor", cursor);
    if let Some(limit) = limit {
        q.append_pair("limit", &limit.to_string());
    }
    if let Some(status) = status {
        q.append_pair("status", OrderStatus::from(status).as_str());
    }
    if let Some(customer) = customer_id {
        q.append_pair("customer_id", &customer.to_string());
    }
    format!("/v1/orders?{}", q.finish())
}

/// Who is cancelling, as `CancelOrder.requested_by` says it: the user id
/// for the order's own customer, `admin:<id>` for an admin cancelling
/// someone else's.
fn requester(principal: &Principal, customer_id: Uuid) -> String {
    match principal.user_id() {
        Some(user) if user == customer_id => user.to_string(),
        Some(user) => format!("admin:{user}"),
        None => format!(
            "admin:{}",
            principal.client_id.as_deref().unwrap_or(&principal.subject)
        ),
    }
}

/// Whether an order in `status` can still be cancelled, and if not, why.
pub fn cancellable(status: OrderStatus) -> Result<(), &'static str> {
    match status {
        OrderStatus::Confirmed => Err("the order is confirmed"),
        OrderStatus::Cancelled => Err("the order is cancelled already"),
        // The saga asks for the capture as soon as the payment is authorized.
        OrderStatus::PaymentAuthorized | OrderStatus::Paid => {
            Err("the payment is being captured; the order can no longer be cancelled")
        }
        OrderStatus::Placed | OrderStatus::StockReserved | OrderStatus::Cancelling => Ok(()),
    }
}

/// Follows one order for its SSE stream: the status first read, then one
/// item per change, until a final status.
struct Follow {
    watch: Watch,
    rpc: RpcClient,
    meta: MessageMeta,
    /// The first read, not yet sent.
    first: Option<wire::OrderView>,
    /// The status last sent.
    last: Option<OrderStatus>,
    /// A final status was sent.
    done: bool,
    /// Re-read now and then even without a wake-up.
    resync: tokio::time::Interval,
}

impl Follow {
    fn start(watch: Watch, rpc: RpcClient, meta: MessageMeta, first: wire::OrderView) -> Self {
        let resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
        Self {
            watch,
            rpc,
            meta,
            first: Some(first),
            last: None,
            done: false,
            resync,
        }
    }

    /// The stream of status events. Its re-reads run in one span, a child
    /// of the request's (which ends when the stream starts), so they stay
    /// in the request's trace.
    fn into_stream(self) -> BoxStream<'static, StatusEventBody> {
        let span = tracing::info_span!("order events", order_id = %self.watch.order_id());
        futures::stream::unfold(self, move |mut follow| {
            let span = span.clone();
            async move {
                let view = follow.next_change().instrument(span).await?;
                Some((StatusEventBody::of(&view), follow))
            }
        })
        .boxed()
    }

    fn sent(&mut self, view: wire::OrderView) -> wire::OrderView {
        self.last = Some(view.status);
        self.done = view.status.is_terminal();
        view
    }

    /// The order when its status next differs from the last one sent;
    /// `None` when the stream should end.
    async fn next_change(&mut self) -> Option<wire::OrderView> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some(self.sent(first));
        }
        let order_id = self.watch.order_id();
        loop {
            tokio::select! {
                woken = self.watch.changed() => if !woken {
                    return None;
                },
                _ = self.resync.tick() => {}
            }
            match self.rpc.call(&GetOrder { order_id }, &self.meta).await {
                Ok(view) if Some(view.status) != self.last => return Some(self.sent(view)),
                Ok(_) => {}
                Err(CallError::Remote(e)) if e.code == ErrorCode::NotFound => return None,
                // The next wake-up or resync reads again.
                Err(err) => {
                    tracing::warn!(%order_id, error = %err, "cannot re-read a followed order");
                }
            }
        }
    }
}

/// The order operations. Stateless: clients, the hub and the request id
/// come from request data.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersApi;

#[OpenApi(tag = "Tag::Orders")]
impl OrdersApi {
    /// Place an order
    ///
    /// Queue a `PlaceOrder` command for the orders service. Needs
    /// `orders:write` and a token issued to a customer (not a bare client).
    /// Every product must exist (422 naming the line otherwise); lines of
    /// the same product are added up. Answers 202 with the new order's id
    /// and `Location: /v1/orders/{id}`; the order moves on from `placed` to
    /// `confirmed` (or `cancelled`, with a reason) as the saga runs: poll
    /// `Location` or follow `/v1/orders/{id}/events`.
    ///
    /// Send an `Idempotency-Key` to retry safely: a repeat with the same key
    /// and body gets the first answer (the same order id) back, and a
    /// retry of an attempt that got no answer places the same order, never
    /// a second one.
    #[oai(
        path = "/v1/orders",
        method = "post",
        operation_id = "placeOrder",
        transform = "problems"
    )]
    #[allow(
        clippy::too_many_arguments,
        reason = "poem-openapi extractors are arguments"
    )]
    async fn place(
        &self,
        #[oai(scope = "Scope::OrdersWrite")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        reads: Data<&ProductReads>,
        js: Data<&jetstream::Context>,
        request_id: Data<&RequestId>,
        /// Makes a retry safe: 1 to 255 visible ASCII characters, unique per
        /// order you mean to place. Kept 24 h.
        #[oai(
            name = "Idempotency-Key",
            validator(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")
        )]
        _idempotency_key: Header<Option<String>>,
        body: StrictJson<NewOrderBody>,
        req: &poem::Request,
    ) -> Result<Accepted, Guarded> {
        auth.require(Scope::OrdersWrite)?;
        let customer_id = auth.user_id()?;
        let body = body.0;
        let meta = MessageMeta::correlated(request_id.as_str());
        let lines = merge_lines(&body.lines)?;
        let who = GetUser { id: customer_id };
        let (products, customer) = tokio::join!(
            check_products(&rpc, &reads, &lines, &meta),
            rpc.call(&who, &meta),
        );
        products?;
        let customer = match customer {
            Ok(user) => user,
            // A token outliving its account speaks for nobody.
            Err(CallError::Remote(e)) if e.code == ErrorCode::NotFound => {
                return Err(AuthError::NotAUser.into());
            }
            Err(e) => return Err(e.into()),
        };
        // With a key, every attempt names the same order, so a retry after
        // a gateway died mid-request re-sends that order instead of a second.
        let order_id = KeyedId::of(req).unwrap_or_else(Uuid::now_v7);
        let command = PlaceOrder {
            order_id,
            customer_id,
            customer_email: Some(customer.email),
            lines: lines.into_iter().map(|(_, line)| line).collect(),
            card_token: body.card_token,
        };
        send(&js, place_message_id(order_id), &command, &meta).await?;
        tracing::info!(%order_id, %customer_id, lines = command.lines.len(), "order placement accepted");
        Ok(Accepted::new(order_id, OrderStatus::Placed.as_str()))
    }

    /// List orders
    ///
    /// Your orders, newest first, one page at a time (follow `next`, or
    /// pass `next_cursor` as `cursor`). Needs `orders:read`. With
    /// `users:admin`, `customer_id` lists any customer's orders.
    #[oai(
        path = "/v1/orders",
        method = "get",
        operation_id = "listOrders",
        transform = "problems"
    )]
    #[allow(
        clippy::too_many_arguments,
        reason = "poem-openapi extractors are arguments"
    )]
    async fn list(
        &self,
        #[oai(scope = "Scope::OrdersRead")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page (opaque; a UUID).
        #[oai(validator(
            pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))]
        cursor: Query<Option<String>>,
        /// Only orders in this status.
        status: Query<Option<OrderStatusBody>>,
        /// Whose orders (needs `users:admin` unless it is you); yours by default.
        customer_id: Query<Option<Uuid>>,
    ) -> Result<Listed, Guarded> {
        let principal = auth.require(Scope::OrdersRead)?;
        let customer = match customer_id.0 {
            Some(id) if principal.user_id() == Some(id) => id,
            Some(id) if principal.has_scope(scopes::USERS_ADMIN) => id,
            Some(_) => return Err(AuthError::InsufficientScope(scopes::USERS_ADMIN).into()),
            None => auth.user_id()?,
        };
        let request = ListOrders {
            customer_id: Some(customer),
            status: status.0.map(Into::into),
            cursor: cursor.0,
            limit: Some(limit.0.unwrap_or(wire::DEFAULT_PAGE_SIZE)),
        };
        let page = rpc
            .call(&request, &MessageMeta::correlated(request_id.as_str()))
            .await?;
        let next = page
            .next_cursor
            .as_deref()
            .map(|c| next_page(c, limit.0, status.0, customer_id.0));
        let link = next.as_ref().map(|url| format!("<{url}>; rel=\"next\""));
        Ok(Listed::Page(
            Json(OrderPageBody {
                items: page.items.into_iter().map(Into::into).collect(),
                next_cursor: page.next_cursor,
                next,
            }),
            link,
        ))
    }

    /// Get an order
    ///
    /// Status, lines, totals, the reason of a cancellation, and the
    /// timeline of the saga's steps. Needs `orders:read`; your own orders
    /// only (any with `users:admin`): someone else's is a 404.
    #[oai(
        path = "/v1/orders/:id",
        method = "get",
        operation_id = "getOrder",
        transform = "problems"
    )]
    async fn get(
        &self,
        #[oai(scope = "Scope::OrdersRead")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        /// Order id (a UUID).
        id: Path<Uuid>,
    ) -> Result<Json<OrderBody>, Guarded> {
        let principal = auth.require(Scope::OrdersRead)?;
        let meta = MessageMeta::correlated(request_id.as_str());
        let view = read_visible(&rpc, principal, id.0, &meta).await?;
        Ok(Json(view.into()))
    }

    /// Cancel an order
    ///
    /// Queue a `CancelOrder` command. Needs `orders:write`; your own orders
    /// only (any with `users:admin`). Answers 202 with `Location`; the
    /// order ends `cancelled` with every hold released. 409 when it is
    /// final already, or `payment_authorized` or `paid` (capture has begun:
    /// too late to cancel).
    /// The body (a reason) is optional.
    #[oai(
        path = "/v1/orders/:id/cancel",
        method = "post",
        operation_id = "cancelOrder",
        transform = "problems"
    )]
    async fn cancel(
        &self,
        #[oai(scope = "Scope::OrdersWrite")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        js: Data<&jetstream::Context>,
        request_id: Data<&RequestId>,
        /// Order id (a UUID).
        id: Path<Uuid>,
        body: OptionalJson<CancelOrderBody>,
    ) -> Result<Accepted, Guarded> {
        let principal = auth.require(Scope::OrdersWrite)?;
        let meta = MessageMeta::correlated(request_id.as_str());
        let view = read_visible(&rpc, principal, id.0, &meta).await?;
        if let Err(why) = cancellable(view.status) {
            return Err(Error::Conflict(why.to_owned()).into());
        }
        let command = CancelOrder {
            order_id: view.id,
            requested_by: requester(principal, view.customer_id),
            reason: body
                .0
                .and_then(|b| b.reason)
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
        };
        send(&js, cancel_message_id(view.id), &command, &meta).await?;
        tracing::info!(order_id = %view.id, requested_by = %command.requested_by, "order cancellation accepted");
        Ok(Accepted::new(view.id, OrderStatus::Cancelling.as_str()))
    }

    /// An order's history
    ///
    /// The order's events, oldest first: what its status and timeline are
    /// built from. Needs `orders:read`; your own orders only (any with
    /// `users:admin`).
    #[oai(
        path = "/v1/orders/:id/history",
        method = "get",
        operation_id = "getOrderHistory",
        transform = "problems"
    )]
    async fn history(
        &self,
        #[oai(scope = "Scope::OrdersRead")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        /// Order id (a UUID).
        id: Path<Uuid>,
    ) -> Result<Json<OrderHistoryBody>, Guarded> {
        let principal = auth.require(Scope::OrdersRead)?;
        let meta = MessageMeta::correlated(request_id.as_str());
        // Both at once; the history is only shown once the order proved visible.
        let events = GetOrderHistory { order_id: id.0 };
        let (view, history) = tokio::join!(
            read_visible(&rpc, principal, id.0, &meta),
            rpc.call(&events, &meta),
        );
        view?;
        let history = match history {
            Ok(h) => h,
            Err(CallError::Remote(e)) if e.code == ErrorCode::NotFound => {
                return Err(no_such_order(id.0).into());
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Json(history.into()))
    }

    /// Follow an order
    ///
    /// Server-Sent Events (`text/event-stream`): a `status` event with the
    /// order's current status, then one per change, until `confirmed` or
    /// `cancelled`, after which the stream ends. Needs `orders:read`; your
    /// own orders only (any with `users:admin`). A comment line every 15 s
    /// keeps idle connections open.
    #[oai(
        path = "/v1/orders/:id/events",
        method = "get",
        operation_id = "followOrder",
        transform = "problems"
    )]
    async fn events(
        &self,
        #[oai(scope = "Scope::OrdersRead")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        hub: Data<&OrderHub>,
        request_id: Data<&RequestId>,
        /// Order id (a UUID).
        id: Path<Uuid>,
    ) -> Result<Followed, Guarded> {
        let principal = auth.require(Scope::OrdersRead)?;
        let meta = MessageMeta::correlated(request_id.as_str());
        // Watch first, then read: a change in between still wakes us.
        let watch = hub.watch(id.0).await?;
        let first = read_visible(&rpc, principal, id.0, &meta).await?;
        let stream = Follow::start(watch, rpc.clone(), meta, first).into_stream();
        Ok(Followed::Events(
            EventStream::new(stream)
                .keep_alive(hub.keep_alive())
                .to_event(|event| {
                    use poem_openapi::types::ToJSON;
                    Event::message(event.to_json_string()).event_type("status")
                }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn line(product_id: Uuid, quantity: i64) -> NewOrderLineBody {
        NewOrderLineBody {
            product_id,
            quantity,
        }
    }

    fn principal(user: Option<Uuid>, scopes: &[&str]) -> Principal {
        let client = "swagger-ui".to_owned();
        Principal {
            subject: user
                .map(|u| u.to_string())
                .unwrap_or_else(|| client.clone()),
            client_id: Some(client),
            scopes: scopes
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>(),
            roles: vec![],
        }
    }

    #[test]
    fn repeated_products_are_added_up_in_first_seen_order() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let merged = merge_lines(&[line(a, 2), line(b, 1), line(a, 3)]).unwrap();
        assert_eq!(
            merged,
            vec![
                (
                    0,
                    LineRequest {
                        product_id: a,
                        quantity: 5
                    }
                ),
                (
                    1,
                    LineRequest {
                        product_id: b,
                        quantity: 1
                    }
                ),
            ]
        );
        let err = merge_lines(&[line(b, 1), line(a, 600), line(a, 401)]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooManyUnits {
                    line: 1,
                    units: 1001,
                    max: MAX_QUANTITY,
                    ..
                }
            ),
            "{err}"
        );
        assert!(merge_lines(&[line(a, 500), line(a, 500)]).is_ok());
    }

    #[test]
    fn customers_see_their_own_orders_and_admins_all() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let customer = principal(Some(me), &["orders:read"]);
        assert!(may_see(&customer, me));
        assert!(!may_see(&customer, other));
        assert!(may_see(&principal(Some(other), &["users:admin"]), me));
        // A bare client sees nothing of customers' without users:admin.
        assert!(!may_see(&principal(None, &["orders:read"]), me));
        assert!(may_see(
            &principal(None, &["orders:read", "users:admin"]),
            me
        ));
    }

    #[test]
    fn who_cancels() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(requester(&principal(Some(me), &[]), me), me.to_string());
        assert_eq!(
            requester(&principal(Some(other), &["users:admin"]), me),
            format!("admin:{other}")
        );
        assert_eq!(requester(&principal(None, &[]), me), "admin:swagger-ui");
    }

    #[test]
    fn only_orders_not_yet_captured_nor_final_can_be_cancelled() {
        for s in [
            OrderStatus::Placed,
            OrderStatus::StockReserved,
            OrderStatus::Cancelling,
        ] {
            assert!(cancellable(s).is_ok(), "{s:?}");
        }
        for s in [
            OrderStatus::PaymentAuthorized,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled,
        ] {
            assert!(cancellable(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn message_ids_are_derived_from_the_order() {
        let id = Uuid::now_v7();
        assert_eq!(place_message_id(id), place_message_id(id));
        assert_ne!(place_message_id(id), cancel_message_id(id));
        assert_ne!(place_message_id(id), place_message_id(Uuid::now_v7()));
    }

    #[test]
    fn the_next_page_keeps_the_filters() {
        let customer = Uuid::nil();
        assert_eq!(
            next_page(
                "a b+c",
                Some(5),
                Some(OrderStatusBody::StockReserved),
                Some(customer)
            ),
            format!(
                "/v1/orders?cursor=a+b%2Bc&limit=5&status=stock_reserved&customer_id={customer}"
            )
        );
        assert_eq!(next_page("x", None, None, None), "/v1/orders?cursor=x");
    }

    #[test]
    fn statuses_map_both_ways() {
        for s in [
            OrderStatus::Placed,
            OrderStatus::StockReserved,
            OrderStatus::PaymentAuthorized,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            OrderStatus::Cancelling,
            OrderStatus::Cancelled,
        ] {
            let body = OrderStatusBody::from(s);
            assert_eq!(OrderStatus::from(body), s);
            // The API's names are the wire's.
            let json = poem_openapi::types::ToJSON::to_json(&body).unwrap();
            assert_eq!(json, serde_json::Value::String(s.as_str().into()));
        }
    }
}
