//! The checkout with NATS secured as `jetshop nats-config` writes it:
//! catalog, orders, payments and notifications each connected as its own
//! nkey user, limited to the subjects the contracts give it, over TLS with
//! client certificates. Any grant the generated permissions miss shows up
//! here as an order that never ends or a broken invariant.

use std::time::Duration;

use jetshop_platform::{Error, config::NatsSettings};

use crate::{
    invariants,
    system::{Options, System},
};

#[tokio::test]
async fn a_checkout_passes_with_per_part_credentials_over_mutual_tls() {
    let system = System::start(Options {
        secured: true,
        ..Options::default()
    })
    .await;
    // Security is really on: without credentials the same server is shut.
    let mut anonymous = NatsSettings::for_url(system.nats.url());
    anonymous.connect_timeout = Duration::from_millis(300);
    assert!(matches!(
        jetshop_platform::nats::connect(&anonymous, "anonymous").await,
        Err(Error::Connect { .. })
    ));

    let products = system.products(&[30, 20]).await;
    let orders = system.place_many(40, &products).await;
    system
        .wait_terminal(&orders, Duration::from_secs(120))
        .await;
    let outcome = invariants::check(&system.stores(), &products, &orders).await;
    assert!(
        outcome.confirmed > 0 && outcome.cancelled > 0,
        "{outcome:?}"
    );
    system.shutdown().await;
}
