//! The API listener's routes, assembled in one place above the two
//! surfaces it serves: the read API with its documents, health and
//! `/metrics` (`api`), and the web UI (`ui`). Both read the same
//! [`ApiState`] (`read`) and neither imports the other.

use axum::Router;

use crate::api;
use crate::read::ApiState;
use crate::ui;

/// Every route of the API listener, with the HTTP series middleware, the
/// JSON 404 and the refusal of `%00`.
pub fn router(state: ApiState) -> Router {
    api::routes()
        .merge(ui::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            sextant_kit::http_metrics::track,
        ))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(api::refuse_nul))
        .with_state(state)
}
