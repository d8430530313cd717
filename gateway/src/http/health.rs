//! Liveness and readiness: `GET /healthz` answers while the process runs;
//! `GET /readyz` runs every registered check (the gateway's NATS connection
//! and whatever the services in this process registered) and answers 200 or
//! 503.

use jetshop_platform::health::Health;
use poem::{Response, handler, web::Data};

pub use jetshop_platform::admin::healthz;

/// The name of the gateway's own NATS readiness check.
pub const NATS_CHECK: &str = "gateway-nats";

/// `GET /readyz`.
#[handler]
pub async fn readyz(Data(health): Data<&Health>) -> Response {
    jetshop_platform::admin::readiness(health).await
}
