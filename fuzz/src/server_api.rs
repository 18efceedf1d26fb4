//! See the crate docs. One real server (temp SQLite file, the production router) for the whole
//! fuzzing process; each input is one signed-or-not HTTP request to one Server API route.
//! Checks: no panic, and never a 5xx: bad input must get a 4xx/JSON error, not an internal one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt as _;

use crate::{FuzzServer, APP_KEY, APP_SECRET};

/// The route of input byte `i`: one of the Server API's (the router's own list) or `/healthz`.
fn route(i: u8) -> &'static str {
    let api = rcall_server::SERVER_API_PATHS;
    api.get(i as usize % (api.len() + 1)).copied().unwrap_or("/healthz")
}

const FIELDS: [&str; 10] = ["userId", "name", "portraitUri", "groupId", "groupName", "minute", "blackUserId", "roomId", "time", "x"];

struct Server {
    server: FuzzServer,
    router: axum::Router,
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let server = FuzzServer::start(|_| {});
        let router = rcall_server::router(server.running.state().clone());
        Server { server, router }
    })
}

#[derive(Arbitrary, Debug)]
enum Timestamp {
    Now,
    Offset(i32),
    Raw(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Signature {
    Valid,
    Raw(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum FormBody {
    Fields(Vec<(u8, String)>),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct ApiRequest {
    route: u8,
    post: bool,
    right_app_key: bool,
    other_app_key: String,
    unique_nonce: bool,
    nonce: String,
    timestamp: Timestamp,
    signature: Signature,
    body: FormBody,
    form_content_type: bool,
}

/// Runs one input; panics on a server panic or a 5xx answer.
pub fn run(data: &[u8]) {
    let Ok(req) = ApiRequest::arbitrary(&mut Unstructured::new(data)) else { return };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let s = server();
    let nonce = if req.unique_nonce {
        format!("{}{}", COUNTER.fetch_add(1, Ordering::Relaxed), req.nonce.chars().take(8).collect::<String>())
    } else {
        req.nonce.clone()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let timestamp = match &req.timestamp {
        Timestamp::Now => Some(now.to_string()),
        Timestamp::Offset(o) => Some((now + i64::from(*o)).to_string()),
        Timestamp::Raw(r) => Some(r.clone()),
        Timestamp::Missing => None,
    };
    let mut b = Request::builder()
        .method(if req.post { "POST" } else { "GET" })
        .uri(route(req.route));
    let header_ok = |v: &str| axum::http::HeaderValue::from_str(v).is_ok();
    let app_key = if req.right_app_key { APP_KEY.to_string() } else { req.other_app_key.clone() };
    if header_ok(&app_key) {
        b = b.header("App-Key", app_key);
    }
    if header_ok(&nonce) {
        b = b.header("Nonce", nonce.clone());
    }
    if let Some(ts) = &timestamp {
        if header_ok(ts) {
            b = b.header("Timestamp", ts.clone());
        }
        let sig = match &req.signature {
            Signature::Valid => Some(rcall_server::server_api::request_signature(APP_SECRET, &nonce, ts)),
            Signature::Raw(r) => Some(r.clone()),
            Signature::Missing => None,
        };
        if let Some(sig) = sig.filter(|s| header_ok(s)) {
            b = b.header("Signature", sig);
        }
    }
    if req.form_content_type {
        b = b.header("Content-Type", "application/x-www-form-urlencoded");
    }
    let summary = format!("{req:?}");
    let body = match req.body {
        FormBody::Fields(fields) => {
            let mut ser = String::new();
            for (i, (k, v)) in fields.into_iter().take(32).enumerate() {
                if i > 0 {
                    ser.push('&');
                }
                ser.push_str(FIELDS[k as usize % FIELDS.len()]);
                ser.push('=');
                for byte in v.bytes() {
                    if byte.is_ascii_alphanumeric() {
                        ser.push(byte as char);
                    } else {
                        ser.push_str(&format!("%{byte:02X}"));
                    }
                }
            }
            ser.into_bytes()
        }
        FormBody::Raw(raw) => raw,
    };
    let Ok(request) = b.body(Body::from(body)) else { return };
    let status = s.server.rt.block_on(async { s.router.clone().oneshot(request).await.map(|r| r.status()) });
    let status = status.expect("the router is infallible");
    assert!(!status.is_server_error(), "{summary} → HTTP {status}");
}
