//! The HTTP API: RongCloud's Server API subset (`POST /user/getToken.json`), the dev-only
//! `GET /dev/token`, and `GET /healthz`.
//!
//! Compatible with RongCloud's request signing so existing app servers can point their
//! getToken call at rcall unchanged. Every error is JSON `{"code": n, "errorMessage": "…"}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::clock::now_ms;
use crate::token;
use crate::AppState;

/// Longest accepted user id (RongCloud's limit).
pub const MAX_USER_ID_CHARS: usize = 64;

/// Success body of getToken (and /dev/token).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// Always 200, as RongCloud answers.
    pub code: u16,
    pub user_id: String,
    pub token: String,
}

/// Server API errors, each with a RongCloud code and an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong `App-Key` / `Nonce` / `Timestamp` / `Signature`.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A required parameter is missing or invalid, or the body is not a form.
    #[error("{0}")]
    BadRequest(String),
    /// Something failed on our side; details are logged, not returned.
    #[error("internal server error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// RongCloud Server API code: 1004 signature, 1002 parameter, 1000 internal.
    pub fn code(&self) -> u32 {
        match self {
            ApiError::Unauthorized(_) => 1004,
            ApiError::BadRequest(_) => 1002,
            ApiError::Internal => 1000,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    code: u32,
    error_message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code(),
            error_message: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Lowercase hex SHA-1 of `secret + nonce + timestamp`: RongCloud's request signature.
pub fn request_signature(app_secret: &str, nonce: &str, timestamp: &str) -> String {
    let mut h = Sha1::new();
    h.update(app_secret.as_bytes());
    h.update(nonce.as_bytes());
    h.update(timestamp.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_signature(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let app_key =
        header(headers, "App-Key").ok_or(ApiError::Unauthorized("missing App-Key header"))?;
    let nonce = header(headers, "Nonce").ok_or(ApiError::Unauthorized("missing Nonce header"))?;
    let timestamp =
        header(headers, "Timestamp").ok_or(ApiError::Unauthorized("missing Timestamp header"))?;
    let signature =
        header(headers, "Signature").ok_or(ApiError::Unauthorized("missing Signature header"))?;
    if app_key != state.config.app_key {
        return Err(ApiError::Unauthorized("unknown App-Key"));
    }
    let expected = request_signature(&state.config.app_secret, nonce, timestamp);
    if !constant_time_eq(
        expected.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    ) {
        return Err(ApiError::Unauthorized("signature error"));
    }
    Ok(())
}

fn validate_user_id(user_id: Option<&str>) -> Result<&str, ApiError> {
    match user_id {
        None | Some("") => Err(ApiError::BadRequest("userId is required".into())),
        Some(u) if u.chars().count() > MAX_USER_ID_CHARS => Err(ApiError::BadRequest(format!(
            "userId is longer than {MAX_USER_ID_CHARS} characters"
        ))),
        Some(u) => Ok(u),
    }
}

fn parse_form(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|_| ApiError::BadRequest("body must be application/x-www-form-urlencoded".into()))
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn issue_for(
    state: &AppState,
    user_id: &str,
    name: Option<&str>,
    portrait_uri: Option<&str>,
) -> Result<Json<TokenResponse>, ApiError> {
    let cfg = &state.config;
    let now = now_ms();
    state
        .store
        .upsert_user(&cfg.app_key, user_id, name, portrait_uri, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing user failed");
            ApiError::Internal
        })?;
    let ttl = i64::try_from(cfg.token_ttl.as_millis()).unwrap_or(i64::MAX);
    let token = token::issue(&cfg.app_key, &cfg.app_secret, user_id, now, ttl);
    tracing::info!(user_id, "token issued");
    Ok(Json(TokenResponse {
        code: 200,
        user_id: user_id.to_owned(),
        token,
    }))
}

/// `POST /user/getToken.json` (form: `userId`, `name`, `portraitUri`).
pub async fn get_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    check_signature(&state, &headers)?;
    let body = body.map_err(|e| ApiError::BadRequest(format!("unreadable body: {e}")))?;
    let form = parse_form(&body)?;
    let user_id = validate_user_id(field(&form, "userId"))?;
    issue_for(
        &state,
        user_id,
        field(&form, "name"),
        field(&form, "portraitUri"),
    )
    .await
}

/// `GET /dev/token?userId=…` (dev mode only): a token without Server API signing, so demo
/// pages can log in by themselves.
pub async fn dev_token(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Json<TokenResponse>, ApiError> {
    let form = parse_form(query.unwrap_or_default().as_bytes())?;
    let user_id = validate_user_id(field(&form, "userId"))?;
    issue_for(
        &state,
        user_id,
        field(&form, "name"),
        field(&form, "portraitUri"),
    )
    .await
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rongcloud_example_shape() {
        let s = request_signature("secret", "14314", "1408710653491");
        assert_eq!(s.len(), 40);
        assert!(s
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(s, request_signature("secret", "14315", "1408710653491"));
    }

    #[test]
    fn sha1_known_vector() {
        // SHA-1("abc")
        assert_eq!(
            request_signature("a", "b", "c"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn user_id_rules() {
        assert!(validate_user_id(None).is_err());
        assert!(validate_user_id(Some("")).is_err());
        assert!(validate_user_id(Some(&"x".repeat(65))).is_err());
        assert_eq!(validate_user_id(Some(&"x".repeat(64))).unwrap().len(), 64);
    }
}
