//! Static hosting: the browser SDK at `/sdk/` and the demo pages at `/`, so one process is all
//! a demo needs. Missing directories simply answer 404.

use std::path::Path;

use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::Router;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// `/sdk/*` from `dir`, with `Access-Control-Allow-Origin: *` because pages on other origins
/// load the SDK script and then fetch its wasm.
pub fn sdk_router<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    Router::new()
        .nest_service("/sdk", ServeDir::new(dir))
        .layer(SetResponseHeaderLayer::overriding(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        // `WebAssembly.instantiateStreaming` insists on this exact type.
        .layer(axum::middleware::map_response(wasm_content_type))
}

async fn wasm_content_type(
    uri: axum::http::Uri,
    mut res: axum::response::Response,
) -> axum::response::Response {
    if uri.path().ends_with(".wasm") && res.status().is_success() {
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    }
    res
}

/// Everything not matched by another route, from `dir` (`/` → `index.html`).
pub fn web_service(dir: &Path) -> ServeDir {
    ServeDir::new(dir)
}
