//! The HTTP API: RongCloud's Server API subset (tokens, blocks, blacklists, groups, kicking a
//! user from a call, ICE servers), the dev-only `GET /dev/token` and `POST /dev/group`,
//! `GET /healthz` and `GET /metrics`.
//!
//! Compatible with RongCloud's request signing (`App-Key`, `Nonce`, `Timestamp`,
//! `Signature = hex(SHA1(secret + nonce + timestamp))`) so existing app servers can point at
//! rcall unchanged; on top of that a request whose `Timestamp` is further than the configured
//! window from the server clock is refused, and so is a nonce used twice inside the window (in
//! cluster mode on any node: nonces and policy changes go through Redis, see
//! [`crate::cluster::shared`]).
//! `Timestamp` may be in milliseconds (RongCloud's docs) or seconds (some RongCloud SDKs).
//! Every answer is JSON: `{"code": 200, …}` or `{"code": n, "errorMessage": "…"}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::clock::now_ms;
use crate::cluster::shared::PolicyChange;
use crate::hub::AppId;
use crate::metrics::{Gauges, Metrics};
use crate::store::StoreError;
use crate::{ice, rooms, token, AppState};

/// Longest accepted user id (RongCloud's limit).
pub const MAX_USER_ID_CHARS: usize = rooms::MAX_USER_ID_CHARS;
/// Longest accepted group id (RongCloud's limit).
pub const MAX_GROUP_ID_CHARS: usize = 64;
/// Longest accepted nonce.
pub const MAX_NONCE_CHARS: usize = 64;
/// Most user ids one request may name.
pub const MAX_USERS_PER_REQUEST: usize = 1000;
/// Longest block (RongCloud: 30 days).
pub const MAX_BLOCK_MINUTES: i64 = 43_200;

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
    /// Missing or wrong `App-Key` / `Nonce` / `Timestamp` / `Signature`, stale timestamp,
    /// replayed nonce.
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

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "server API request failed");
    ApiError::Internal
}

/// Counts the request and turns the result into a response.
fn respond<T: IntoResponse>(metrics: &Metrics, r: Result<T, ApiError>) -> Response {
    Metrics::inc(&metrics.api_requests);
    match r {
        Ok(v) => v.into_response(),
        Err(e) => {
            metrics.error(e.code() as i32);
            e.into_response()
        }
    }
}

fn ok() -> Json<Value> {
    Json(json!({ "code": 200 }))
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

/// Nonces seen inside the timestamp window, per app.
#[derive(Default)]
pub struct NonceCache {
    seen: Mutex<NonceMap>,
}

#[derive(Default)]
struct NonceMap {
    /// (app, nonce) → forget after (ms).
    entries: HashMap<(AppId, String), i64>,
    last_prune: i64,
}

impl NonceCache {
    /// A nonce loaded from the database at startup.
    pub fn restore(&self, app: AppId, nonce: String, until: i64) {
        let mut m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        m.entries.insert((app, nonce), until);
    }

    /// Records `nonce`; false if it was already used and has not expired.
    fn check_and_insert(&self, app: AppId, nonce: &str, now: i64, keep_ms: i64) -> bool {
        let mut m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if m.entries.len() > 1024 && now - m.last_prune > 1000 {
            m.entries.retain(|_, until| *until > now);
            m.last_prune = now;
        }
        let key = (app, nonce.to_owned());
        if m.entries.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        m.entries.insert(key, now + keep_ms);
        true
    }
}

/// Milliseconds since the epoch from a `Timestamp` header in ms or s; `None` for anything
/// negative (no valid request was signed before 1970).
fn parse_timestamp(ts: &str) -> Option<i64> {
    let v: i64 = ts.parse().ok().filter(|v| *v >= 0)?;
    // Below 10^11 it cannot be ms (that would be 1973); treat it as seconds.
    Some(if v < 100_000_000_000 {
        v.saturating_mul(1000)
    } else {
        v
    })
}

/// Checks the RongCloud signature, timestamp window and nonce; returns the app once the nonce
/// is recorded durably (so a replay after a crash is still refused): in SQLite, or in cluster
/// mode in Redis, where a replay to any other node is refused as well.
async fn check_signature(state: &AppState, headers: &HeaderMap) -> Result<AppId, ApiError> {
    let app_key = header(headers, "App-Key")
        .or_else(|| header(headers, "RC-App-Key"))
        .ok_or(ApiError::Unauthorized("missing App-Key header"))?;
    let nonce = header(headers, "Nonce").ok_or(ApiError::Unauthorized("missing Nonce header"))?;
    let timestamp =
        header(headers, "Timestamp").ok_or(ApiError::Unauthorized("missing Timestamp header"))?;
    let signature =
        header(headers, "Signature").ok_or(ApiError::Unauthorized("missing Signature header"))?;
    let app = state
        .hub
        .app_by_key(app_key)
        .ok_or(ApiError::Unauthorized("unknown App-Key"))?;
    let expected = request_signature(state.hub.app(app).secret(), nonce, timestamp);
    if !constant_time_eq(
        expected.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    ) {
        return Err(ApiError::Unauthorized("signature error"));
    }
    let now = now_ms();
    let window = i64::try_from(state.config.api_timestamp_window.as_millis()).unwrap_or(i64::MAX);
    let ts = parse_timestamp(timestamp).ok_or(ApiError::Unauthorized("invalid Timestamp"))?;
    // abs_diff: a Timestamp near i64::MIN must be refused, not overflow (found by fuzzing:
    // `(now - ts).abs()` panicked in debug builds and wrapped into the window in release).
    if now.abs_diff(ts) > window.unsigned_abs() {
        return Err(ApiError::Unauthorized(
            "Timestamp is outside the accepted window",
        ));
    }
    if nonce.chars().count() > MAX_NONCE_CHARS {
        return Err(ApiError::Unauthorized("Nonce is too long"));
    }
    // Kept for twice the window: a request is acceptable for `window` either side of now.
    let keep = window.saturating_mul(2);
    const REPLAYED: ApiError = ApiError::Unauthorized("Nonce has already been used");
    if let Some(shared) = &state.cluster {
        let key = &state.hub.app(app).key;
        return match shared.claim_nonce(key, nonce, keep).await {
            Ok(true) => Ok(app),
            Ok(false) => Err(REPLAYED),
            Err(e) => Err(internal(e)),
        };
    }
    if !state.nonces.check_and_insert(app, nonce, now, keep) {
        return Err(REPLAYED);
    }
    let ticket = state.store.save_nonce(
        state.hub.app(app).key.clone(),
        nonce.to_owned(),
        now.saturating_add(keep),
    );
    state.store.wait_committed(ticket).await;
    Ok(app)
}

/// Persists a policy change and applies it to this node's hub. Alone: in SQLite (`sqlite`, the
/// write to await). In cluster mode: in Redis instead, published to every node in the same
/// step; this node applies it at once as well, so its answers reflect the change as soon as
/// the request is answered (the published copy, applied again later, changes nothing).
async fn change_policy(
    state: &AppState,
    app: AppId,
    change: PolicyChange,
    sqlite: impl std::future::Future<Output = Result<(), StoreError>>,
) -> Result<(), ApiError> {
    match &state.cluster {
        Some(shared) => shared
            .commit(&state.hub.app(app).key, &change)
            .await
            .map_err(internal)?,
        None => sqlite.await.map_err(internal)?,
    }
    change.apply(&state.hub, app);
    Ok(())
}

type Form = Vec<(String, String)>;

fn parse_form(bytes: &[u8]) -> Result<Form, ApiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|_| ApiError::BadRequest("body must be application/x-www-form-urlencoded".into()))
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn validate_id<'a>(what: &str, max: usize, v: Option<&'a str>) -> Result<&'a str, ApiError> {
    match v {
        None | Some("") => Err(ApiError::BadRequest(format!("{what} is required"))),
        Some(u) if u.chars().count() > max => Err(ApiError::BadRequest(format!(
            "{what} is longer than {max} characters"
        ))),
        Some(u) => Ok(u),
    }
}

fn validate_user_id(user_id: Option<&str>) -> Result<&str, ApiError> {
    validate_user_field("userId", user_id)
}

/// A user id field: present, and one the hub routes to ([`rooms::valid_user_id`], the one home
/// of the rule). A token for an id the WebSocket side refuses (33003) would make a user nobody
/// can call.
fn validate_user_field<'a>(what: &str, v: Option<&'a str>) -> Result<&'a str, ApiError> {
    let u = validate_id(what, MAX_USER_ID_CHARS, v)?;
    if !rooms::valid_user_id(u) {
        return Err(ApiError::BadRequest(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(u)
}

/// Every value of a repeatable field, validated as user ids; at least one.
fn user_ids(form: &[(String, String)], name: &str) -> Result<Vec<String>, ApiError> {
    let mut v = Vec::new();
    for (k, val) in form {
        if k == name {
            v.push(validate_user_field(name, Some(val))?.to_owned());
        }
    }
    if v.is_empty() {
        return Err(ApiError::BadRequest(format!("{name} is required")));
    }
    if v.len() > MAX_USERS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_USERS_PER_REQUEST} {name} values per request"
        )));
    }
    v.sort();
    v.dedup();
    Ok(v)
}

fn group_id(form: &[(String, String)]) -> Result<&str, ApiError> {
    validate_id("groupId", MAX_GROUP_ID_CHARS, field(form, "groupId"))
}

/// A signed Server API request, the one shape of every signed endpoint: the signature checked
/// and the form parsed, then `f` on them, the answer counted ([`respond`]).
async fn signed<T: IntoResponse>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    f: impl AsyncFnOnce(AppId, Form) -> Result<T, ApiError>,
) -> Response {
    let r = async {
        let app = check_signature(state, headers).await?;
        let body = body.map_err(|e| ApiError::BadRequest(format!("unreadable body: {e}")))?;
        f(app, parse_form(&body)?).await
    }
    .await;
    respond(&state.metrics, r)
}

/// getToken's and `user/refresh`'s profile fields (a field left out keeps its value): in
/// SQLite, and in cluster mode in Redis too, where a login on any node reads it
/// ([`crate::cluster::shared::Shared::save_profile`]).
async fn save_profile(
    state: &AppState,
    app: AppId,
    user_id: &str,
    name: Option<&str>,
    portrait_uri: Option<&str>,
    now: i64,
) -> Result<(), ApiError> {
    let key = &state.hub.app(app).key;
    state
        .store
        .upsert_user(key, user_id, name, portrait_uri, now)
        .await
        .map_err(internal)?;
    if let Some(shared) = &state.cluster {
        shared
            .save_profile(key, user_id, name, portrait_uri)
            .await
            .map_err(internal)?;
    }
    Ok(())
}

async fn issue_for(
    state: &AppState,
    app: AppId,
    user_id: &str,
    name: Option<&str>,
    portrait_uri: Option<&str>,
) -> Result<Json<TokenResponse>, ApiError> {
    let shard = state.hub.app(app);
    let now = now_ms();
    save_profile(state, app, user_id, name, portrait_uri, now).await?;
    let ttl = i64::try_from(state.config.token_ttl.as_millis()).unwrap_or(i64::MAX);
    let token = token::issue(&shard.key, shard.secret(), user_id, now, ttl);
    tracing::info!(app = &*shard.key, user_id, "token issued");
    Ok(Json(TokenResponse {
        code: 200,
        user_id: user_id.to_owned(),
        token,
    }))
}

type Body = Result<Bytes, BytesRejection>;
type St = State<Arc<AppState>>;

/// `POST /user/getToken.json` (form: `userId`, `name`, `portraitUri`).
pub async fn get_token(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let user_id = validate_user_id(field(&form, "userId"))?;
        issue_for(
            &state,
            app,
            user_id,
            field(&form, "name"),
            field(&form, "portraitUri"),
        )
        .await
    })
    .await
}

/// `POST /user/refresh.json` (form: `userId`, `name`, `portraitUri`): updates the profile
/// getToken registered; a field left out keeps its value. Devices pick it up on their next
/// connect (`AuthResult.profile`).
pub async fn refresh_user(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let user_id = validate_user_id(field(&form, "userId"))?;
        let (name, portrait_uri) = (field(&form, "name"), field(&form, "portraitUri"));
        save_profile(&state, app, user_id, name, portrait_uri, now_ms()).await?;
        Ok(ok())
    })
    .await
}

/// `POST /user/token/expire.json` (form: `userId` (repeatable), `time` = ms): tokens of these
/// users issued before `time` are refused from now on with 31020. Live connections stay.
pub async fn token_expire(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let users = user_ids(&form, "userId")?;
        let time: i64 = field(&form, "time")
            .and_then(|t| t.trim().parse().ok())
            .filter(|t| *t > 0)
            .ok_or_else(|| ApiError::BadRequest("time (ms since epoch) is required".into()))?;
        let count = users.len();
        let sqlite = state
            .store
            .set_token_expiry(&state.hub.app(app).key, users.clone(), time);
        let change = PolicyChange::ExpireTokens {
            before_ms: time,
            users,
        };
        change_policy(&state, app, change, sqlite).await?;
        tracing::info!(count, "tokens expired");
        Ok(ok())
    })
    .await
}

/// `POST /user/block.json` (form: `userId` (repeatable), `minute` 1..=43200): the users are
/// disconnected (ErrorFrame 31009) and cannot connect (31009) until the time passes or
/// `/user/unblock.json`.
pub async fn block(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let users = user_ids(&form, "userId")?;
        let minutes: i64 = field(&form, "minute")
            .and_then(|m| m.trim().parse().ok())
            .filter(|m| (1..=MAX_BLOCK_MINUTES).contains(m))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("minute must be 1..={MAX_BLOCK_MINUTES}"))
            })?;
        let until = now_ms() + minutes * 60_000;
        let count = users.len();
        let sqlite = state
            .store
            .set_blocked(&state.hub.app(app).key, users.clone(), Some(until));
        let change = PolicyChange::Block {
            users,
            until_ms: until,
        };
        change_policy(&state, app, change, sqlite).await?;
        tracing::info!(count, minutes, "users blocked");
        Ok(ok())
    })
    .await
}

/// `POST /user/unblock.json` (form: `userId` (repeatable)).
pub async fn unblock(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let users = user_ids(&form, "userId")?;
        let sqlite = state
            .store
            .set_blocked(&state.hub.app(app).key, users.clone(), None);
        change_policy(&state, app, PolicyChange::Unblock { users }, sqlite).await?;
        Ok(ok())
    })
    .await
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from ms since the epoch.
fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `POST /user/block/query.json`: `{"code":200,"users":[{"userId","blockEndTime"}]}`.
pub async fn block_query(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, _| {
        let users: Vec<Value> = state
            .hub
            .blocked_users(app)
            .into_iter()
            .map(|(u, until)| json!({ "userId": u, "blockEndTime": format_utc(until) }))
            .collect();
        Ok(Json(json!({ "code": 200, "users": users })))
    })
    .await
}

async fn blacklist_change(
    state: &AppState,
    app: AppId,
    form: &Form,
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let user = validate_user_id(field(form, "userId"))?.to_owned();
    let others = user_ids(form, "blackUserId")?;
    let sqlite = state
        .store
        .set_blacklist(&state.hub.app(app).key, &user, others.clone(), add);
    let change = PolicyChange::Blacklist {
        owner: user.clone(),
        others,
        add,
    };
    change_policy(state, app, change, sqlite).await?;
    Ok(ok())
}

/// `POST /user/blacklist/add.json` (form: `userId`, `blackUserId` (repeatable)): private
/// messages from those users to `userId` fail with 405.
pub async fn blacklist_add(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        blacklist_change(&state, app, &form, true).await
    })
    .await
}

/// `POST /user/blacklist/remove.json` (form: `userId`, `blackUserId` (repeatable)).
pub async fn blacklist_remove(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        blacklist_change(&state, app, &form, false).await
    })
    .await
}

/// `POST /user/blacklist/query.json` (form: `userId`): `{"code":200,"users":[…]}`.
pub async fn blacklist_query(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let user = validate_user_id(field(&form, "userId"))?;
        Ok(Json(
            json!({ "code": 200, "users": state.hub.blacklist_of(app, user) }),
        ))
    })
    .await
}

/// Adds `userId`s to `groupId` (created if missing), in the database and the routing policy.
async fn join_group(state: &AppState, app: AppId, form: &Form) -> Result<Json<Value>, ApiError> {
    let users = user_ids(form, "userId")?;
    let group = group_id(form)?.to_owned();
    let name = field(form, "groupName").map(str::to_owned);
    let sqlite = state.store.group_join(
        &state.hub.app(app).key,
        &group,
        name,
        users.clone(),
        now_ms(),
    );
    change_policy(
        state,
        app,
        PolicyChange::GroupJoin {
            group: group.clone(),
            users,
        },
        sqlite,
    )
    .await?;
    Ok(ok())
}

/// `POST /group/create.json` (form: `userId` (repeatable), `groupId`, `groupName`).
pub async fn group_create(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        join_group(&state, app, &form).await
    })
    .await
}

/// `POST /group/join.json` (form: `userId` (repeatable), `groupId`, `groupName`); creates the
/// group if it does not exist, as RongCloud does.
pub async fn group_join(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        join_group(&state, app, &form).await
    })
    .await
}

/// `POST /group/quit.json` (form: `userId` (repeatable), `groupId`).
pub async fn group_quit(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let users = user_ids(&form, "userId")?;
        let group = group_id(&form)?.to_owned();
        let sqlite = state
            .store
            .group_quit(&state.hub.app(app).key, &group, users.clone());
        change_policy(
            &state,
            app,
            PolicyChange::GroupQuit {
                group: group.clone(),
                users,
            },
            sqlite,
        )
        .await?;
        Ok(ok())
    })
    .await
}

/// `POST /group/dismiss.json` (form: `userId` (the operator), `groupId`).
pub async fn group_dismiss(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        validate_user_id(field(&form, "userId"))?;
        let group = group_id(&form)?.to_owned();
        let sqlite = state.store.group_dismiss(&state.hub.app(app).key, &group);
        change_policy(
            &state,
            app,
            PolicyChange::GroupDismiss {
                group: group.clone(),
            },
            sqlite,
        )
        .await?;
        Ok(ok())
    })
    .await
}

/// `POST /group/user/query.json` (form: `groupId`): `{"code":200,"users":[{"id":…}]}` (empty
/// for a group that does not exist).
pub async fn group_user_query(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let group = group_id(&form)?;
        let users: Vec<Value> = state
            .hub
            .group_members(app, group)
            .unwrap_or_default()
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        Ok(Json(json!({ "code": 200, "users": users })))
    })
    .await
}

/// `POST /rtc/user/kick.json` (form: `roomId` = the call id, `userId`): every connected device
/// of the user gets `Kicked { call_id }` and ends that call with KICKED_BY_SERVER (23).
/// Answers `{"code":200,"devices":n}`.
pub async fn rtc_kick(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |app, form| {
        let user = validate_user_id(field(&form, "userId"))?;
        let room = validate_id("roomId", 256, field(&form, "roomId"))?;
        let n = state.hub.kick(app, user, room);
        tracing::info!(user_id = user, devices = n, "kicked from call");
        Ok(Json(json!({ "code": 200, "devices": n })))
    })
    .await
}

/// `POST /rtc/iceServers.json` (form: `userId`): the ICE servers (with fresh TURN credentials)
/// that user's clients get, for apps that configure their own peer connections:
/// `{"code":200,"iceServers":[{"urls":[…],"username":…,"credential":…}],"ttl":secs}`.
pub async fn ice_servers(State(state): St, headers: HeaderMap, body: Body) -> Response {
    signed(&state, &headers, body, async |_, form| {
        let user = validate_user_id(field(&form, "userId"))?;
        let servers: Vec<Value> = ice::ice_servers(&state.config, user, now_ms())
            .into_iter()
            .map(|s| json!({ "urls": s.urls, "username": s.username, "credential": s.credential }))
            .collect();
        Ok(Json(json!({
            "code": 200,
            "iceServers": servers,
            "ttl": state.config.turn_ttl.as_secs(),
        })))
    })
    .await
}

/// `GET /dev/token?userId=…` (dev mode only): a token for the primary app without Server API
/// signing, so demo pages can log in by themselves.
pub async fn dev_token(State(state): St, RawQuery(query): RawQuery) -> Response {
    let r = async {
        let form = parse_form(query.unwrap_or_default().as_bytes())?;
        let user_id = validate_user_id(field(&form, "userId"))?;
        issue_for(
            &state,
            0,
            user_id,
            field(&form, "name"),
            field(&form, "portraitUri"),
        )
        .await
    }
    .await;
    respond(&state.metrics, r)
}

/// `POST /dev/group` (dev mode only; form as `/group/join.json`: `groupId`, `userId`
/// (repeatable), `groupName`): joins users to a group of the primary app without Server API
/// signing, so the demo page can start a group call and invite mid-call by itself (group calls
/// reach only group members).
pub async fn dev_group(State(state): St, body: Body) -> Response {
    let r = async {
        let body = body.map_err(|e| ApiError::BadRequest(format!("unreadable body: {e}")))?;
        join_group(&state, 0, &parse_form(&body)?).await
    }
    .await;
    respond(&state.metrics, r)
}

/// A known path with the wrong method (e.g. `GET /user/getToken.json`): JSON like every
/// other API error.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody {
            code: 1002,
            error_message: "method not allowed (the Server API takes POST)".into(),
        }),
    )
        .into_response()
}

/// `GET /healthz`: `ok` while the server runs and its database answers — and, in cluster mode,
/// its Redis: a load balancer's health check then moves new clients off a node cut off from
/// Redis, which could not route their messages.
pub async fn healthz(State(state): St) -> Response {
    let unavailable = |what| (StatusCode::SERVICE_UNAVAILABLE, what).into_response();
    match tokio::time::timeout(std::time::Duration::from_secs(5), state.store.flush()).await {
        Ok(Ok(())) => {}
        _ => return unavailable("database unavailable"),
    }
    if let Some(routing) = &state.routing {
        let mut conn = routing.mailboxes.bus().connection();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => {}
            _ => return unavailable("redis unavailable"),
        }
    }
    "ok".into_response()
}

/// `GET /metrics`: Prometheus text format; with a configured `metrics_token`, only for
/// `Authorization: Bearer <token>` (401 JSON otherwise).
///
/// Without a metrics token only loopback peers get an answer (403 otherwise): the page lists
/// every app key and its traffic.
pub async fn metrics(
    State(state): St,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if state.config.metrics_token.is_none()
        && !peer.is_some_and(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip().is_loopback())
    {
        return (
            axum::http::StatusCode::FORBIDDEN,
            "GET /metrics answers loopback peers only unless --metrics-token is set\n",
        )
            .into_response();
    }
    if let Some(token) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given.as_bytes(), token.as_bytes()) {
            return ApiError::Unauthorized(
                "GET /metrics needs Authorization: Bearer <metrics token>",
            )
            .into_response();
        }
    }
    let gauges = Gauges {
        connections: state
            .hub
            .apps()
            .iter()
            .map(|a| (a.key.to_string(), a.connections()))
            .collect(),
        offline_queue_depth: state.store.offline_depth(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    )
        .into_response()
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        assert!(validate_user_id(Some("a\0b")).is_err());
        assert!(validate_user_id(Some("a\nb")).is_err());
        assert!(user_ids(
            &[
                ("userId".into(), "ok".into()),
                ("userId".into(), "\u{7f}".into())
            ],
            "userId"
        )
        .is_err());
    }

    #[test]
    fn timestamps_in_seconds_or_ms() {
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(parse_timestamp("x"), None);
    }

    #[test]
    fn nonces_are_single_use_within_their_lifetime() {
        let c = NonceCache::default();
        assert!(c.check_and_insert(0, "n", 1000, 100));
        assert!(!c.check_and_insert(0, "n", 1050, 100));
        assert!(c.check_and_insert(1, "n", 1050, 100)); // another app
        assert!(c.check_and_insert(0, "n", 1101, 100)); // expired
    }

    #[test]
    fn utc_format() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
