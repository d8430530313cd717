//! The orders' synchronous reads and saga operations, served as the
//! `orders` micro service (`nats micro ls` shows it; `nats req
//! orders.rpc.saga.list '{"state":"stuck"}'` works from a terminal).

use jetshop_contracts::{
    RpcError,
    orders::{
        DEFAULT_PAGE_SIZE, GetOrder, GetOrderHistory, ListOrders, ListSagas, MAX_PAGE_SIZE,
        OrderHistory, OrderPage, OrderView, RetrySaga, SagaList, SagaView,
    },
    subjects::{endpoint_of, orders as subj},
};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcService};
use uuid::Uuid;

use crate::{
    Error,
    domain::saga::{Input, SagaState},
    engine::{Engine, Fed},
    storage::{events, projection, sagas, timeline},
};

/// Register the micro service and its endpoints.
pub async fn start(client: &async_nats::Client, engine: Engine) -> Result<RpcService, Error> {
    let mut service = RpcService::start(
        client,
        crate::SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        "Orders of jetshop: reads and saga operations",
    )
    .await?;
    let e = engine.clone();
    service
        .endpoint::<GetOrder, _, _>(
            subj::RPC_ORDER_GROUP,
            endpoint_of(subj::RPC_ORDER_GET, subj::RPC_ORDER_GROUP),
            move |req, _| get(e.clone(), req),
        )
        .await?;
    let e = engine.clone();
    service
        .endpoint::<ListOrders, _, _>(
            subj::RPC_ORDER_GROUP,
            endpoint_of(subj::RPC_ORDER_LIST, subj::RPC_ORDER_GROUP),
            move |req, _| list(e.clone(), req),
        )
        .await?;
    let e = engine.clone();
    service
        .endpoint::<GetOrderHistory, _, _>(
            subj::RPC_ORDER_GROUP,
            endpoint_of(subj::RPC_ORDER_HISTORY, subj::RPC_ORDER_GROUP),
            move |req, _| history(e.clone(), req),
        )
        .await?;
    let e = engine.clone();
    service
        .endpoint::<ListSagas, _, _>(
            subj::RPC_SAGA_GROUP,
            endpoint_of(subj::RPC_SAGA_LIST, subj::RPC_SAGA_GROUP),
            move |req, _| list_sagas(e.clone(), req),
        )
        .await?;
    service
        .endpoint::<RetrySaga, _, _>(
            subj::RPC_SAGA_GROUP,
            endpoint_of(subj::RPC_SAGA_RETRY, subj::RPC_SAGA_GROUP),
            move |req, meta| retry(engine.clone(), req, meta),
        )
        .await?;
    Ok(service)
}

async fn get(engine: Engine, req: GetOrder) -> Result<OrderView, RpcError> {
    let row = projection::find(engine.db(), req.order_id)
        .await?
        .ok_or(Error::NotFound(req.order_id))?;
    let notes = timeline::of_order(engine.db(), req.order_id).await?;
    Ok(projection::to_view(&row, notes)?)
}

async fn list(engine: Engine, req: ListOrders) -> Result<OrderPage, RpcError> {
    let limit = req.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Error::invalid("limit", format!("must be 1..={MAX_PAGE_SIZE}")).into());
    }
    let before = match req.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<Uuid>()
                .map_err(|_| Error::invalid("cursor", "not a cursor from a previous page"))?,
        ),
    };
    // One more than asked tells whether there is a next page.
    let mut rows = projection::page(
        engine.db(),
        req.customer_id,
        req.status,
        before,
        u64::from(limit) + 1,
    )
    .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let items = rows
        .iter()
        .map(|r| projection::to_view(r, vec![]))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = more
        .then(|| items.last().map(|o| o.id.to_string()))
        .flatten();
    Ok(OrderPage { items, next_cursor })
}

async fn history(engine: Engine, req: GetOrderHistory) -> Result<OrderHistory, RpcError> {
    let stored = events::load(engine.db(), req.order_id).await?;
    if stored.is_empty() {
        return Err(Error::NotFound(req.order_id).into());
    }
    Ok(OrderHistory {
        order_id: req.order_id,
        events: events::to_history(&stored),
    })
}

async fn list_sagas(engine: Engine, req: ListSagas) -> Result<SagaList, RpcError> {
    let state = match req.state.as_deref() {
        None | Some("") | Some("open") => None,
        Some(s) => Some(SagaState::parse(s).ok_or_else(|| {
            let known: Vec<_> = SagaState::ALL.iter().map(|s| s.as_str()).collect();
            Error::invalid("state", format!("one of open, {}", known.join(", ")))
        })?),
    };
    let limit = u64::from(req.limit.unwrap_or(100).clamp(1, 10_000));
    let rows = sagas::list(engine.db(), state, limit).await?;
    let items = rows
        .iter()
        .map(sagas::to_view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SagaList { items })
}

async fn retry(engine: Engine, req: RetrySaga, meta: MessageMeta) -> Result<SagaView, RpcError> {
    let order_id = req.order_id;
    let row = sagas::find(engine.db(), order_id)
        .await?
        .ok_or(Error::SagaNotFound(order_id))?;
    if row.state != SagaState::Stuck.as_str() {
        return Err(Error::SagaState {
            order_id,
            state: row.state,
            reason: "only a stuck saga can be retried",
        }
        .into());
    }
    let caused = meta.caused_by();
    let meta = MessageMeta {
        correlation_id: caused.correlation_id.clone().or(Some(order_id.to_string())),
        ..caused
    };
    match engine
        .feed(None, order_id, Input::OperatorRetry, &meta)
        .await?
    {
        Fed::Applied => {}
        // Completed meanwhile by a late answer: nothing to retry.
        _ => tracing::info!(%order_id, "saga no longer stuck; retry is a no-op"),
    }
    let row = sagas::find(engine.db(), order_id)
        .await?
        .ok_or(Error::SagaNotFound(order_id))?;
    Ok(sagas::to_view(&row)?)
}
