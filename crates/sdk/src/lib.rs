//! # rcall-sdk — the browser surface of rcall
//!
//! The wasm-bindgen layer a CallLib 5.X app talks to: `RCCallClient`, `RCCallSession`,
//! `RCTrack`, and the small `RongIMLib` / `RCRTC` shims every app calls first. It is the thin
//! IO shell around `rtc-core`'s sans-IO engine ([`runtime`]): WebSocket frames in and out
//! ([`im`]), media through `web-rtc` ([`media`]; a group call's through the SFU, `media::sfu`),
//! listener calls out ([`sessions`]), and IMLib's connection status and events ([`connection`]).
//!
//! Each concern has one owner with private state — the IM link (`im::ImLink`), the sessions
//! (`sessions::Sessions`), the media (`media::MediaShell`) — composed by the runtime, which
//! also drives the engine. The owners do not name the runtime (they reach it through their
//! module's `Host` trait, passed explicitly), so the modules form no import cycle: the API
//! modules (`lib`, `client`, `session`, `imlib_compat`) reach the page's runtime through
//! `runtime::rt()`, and the runtime reaches the owners.
//!
//! The JS globals themselves (`window.RongIMLib`, `RCRTC`, `RCCall`) are defined by
//! `npm/src/facade.js`, which exists before this module has loaded and forwards to the
//! functions exported here once it has.

mod client;
mod connection;
mod constraints;
mod devices;
mod im;
mod imlib_compat;
mod joined;
mod js;
mod media;
mod navi;
mod push;
mod reply;
mod runtime;
mod session;
mod sessions;
mod track;
mod validate;

use wasm_bindgen::prelude::*;

pub use client::RCCallClient;
pub use devices::{device_list, watch_devices, DeviceWatcher};
pub use session::RCCallSession;
pub use track::RCTrack;

use rtc_core::text::int;
use runtime::rt;
use sessions::CallOptions;

/// `RongIMLib.init({appkey, navi | navigators})`. `navi`: one server URL, a comma-separated
/// list or an array of them (`navigators`: an array, every entry used), tried in turn
/// ([`navi`]); a bad entry throws here, named, rather than failing the connect later. Unknown
/// options are accepted and ignored.
#[wasm_bindgen]
pub fn im_init(options: JsValue) -> Result<(), JsValue> {
    let rt = rt();
    // rcall's tokens name the app, so the key is only checked for presence, as IMLib does.
    if js::get_string(&options, "appkey").is_none_or(|k| k.is_empty()) {
        return Err(js::js_error("[RongIMLib init] appkey is required"));
    }
    let urls = navi_entries(&options)
        .and_then(|entries| navi::parse(&entries, im::secure_page()))
        .map_err(|m| js::js_error(&["[RongIMLib init] ", &m].concat()))?;
    rt.im().init(navi::NaviList::new(urls));
    Ok(())
}

/// The raw entries of `navi` (if given, as before it wins) or else `navigators`: a string or an
/// array of strings.
fn navi_entries(options: &JsValue) -> Result<Vec<String>, String> {
    let navi = js::get(options, "navi");
    let (key, value) = if js::is_present(&navi) { ("navi", navi) } else { ("navigators", js::get(options, "navigators")) };
    if !js::is_present(&value) {
        return Ok(Vec::new());
    }
    if let Some(s) = value.as_string() {
        return Ok(vec![s]);
    }
    if !js_sys::Array::is_array(&value) {
        return Err([key, " must be a server URL or an array of them"].concat());
    }
    let entries = js_sys::Array::from(&value).into_iter().enumerate();
    entries.map(|(i, e)| e.as_string().ok_or_else(|| [key, "[", &int(i as i64), "] must be a string (a server URL)"].concat())).collect()
}

/// `RongIMLib.connect(token)` → `{code, isOk, msg, data?: {userId}}` (never rejects).
///
/// Returns a promise through [`js::promise`] rather than being an `async fn` export: each
/// `async fn` export instantiates wasm-bindgen's `future_to_promise` for its own future type
/// (~1.4 KB raw each), the boxed helper is shared.
#[wasm_bindgen]
pub fn im_connect(token: JsValue) -> js_sys::Promise {
    js::promise(async move {
        Ok(match connect(token).await {
            Ok(user_id) => js::obj(&[
                ("code", im::code::SUCCESS.into()),
                ("isOk", true.into()),
                ("msg", "".into()),
                ("data", js::obj(&[("userId", user_id.into())])),
            ]),
            Err(code) => js::obj(&[("code", code.into()), ("isOk", false.into()), ("msg", im_message(code).into())]),
        })
    })
}

/// The connect flow of every IMLib version: the IM link logs in ([`im::login`]), then the
/// engine starts for the user.
pub(crate) async fn connect(token: JsValue) -> Result<String, i32> {
    let rt = rt();
    let (user_id, device_id) = im::login(&rt, token).await?;
    rt.watch_page();
    rt.start_engine(&user_id, &device_id);
    Ok(user_id)
}

pub(crate) fn im_message(code: i32) -> &'static str {
    match code {
        im::code::RC_CONN_TOKEN_INCORRECT => "RC_CONN_TOKEN_INCORRECT: the token is invalid for this app key",
        im::code::RC_CONN_TOKEN_EXPIRED => "RC_CONN_TOKEN_EXPIRED: get a new token from the Server API",
        im::code::RC_CONN_USER_BLOCKED => "RC_CONN_USER_BLOCKED",
        im::code::BIZ_ERROR_CLIENT_NOT_INIT => "BIZ_ERROR_CLIENT_NOT_INIT: call RongIMLib.init first",
        im::code::BIZ_ERROR_INVALID_PARAMETER => "BIZ_ERROR_INVALID_PARAMETER",
        im::code::RC_CONNECTION_EXIST => "RC_CONNECTION_EXIST: already connected",
        im::code::CONNECTION_TIMEOUT => "CONNECTION_TIMEOUT: the server did not answer",
        _ => "cannot reach the server (check navi)",
    }
}

/// `RongIMLib.disconnect()`: hangs up every live call like `session.hungup()` (the others see
/// 11/12/13, this page gets `onSessionClose`), then closes the connection (1000).
#[wasm_bindgen]
pub fn im_disconnect() {
    let rt = rt();
    rt.hang_up_all();
    rt.shut_down();
}

/// `RongIMLib.addEventListener(event, listener)`.
#[wasm_bindgen]
pub fn im_add_event_listener(event: String, listener: JsValue) {
    rt().im().status().add(event, listener);
}

/// `RongIMLib.removeEventListener(event, listener)` / `removeEventListeners(event)` (no listener).
#[wasm_bindgen]
pub fn im_remove_event_listener(event: String, listener: JsValue) {
    let listener = (!listener.is_undefined()).then_some(listener);
    rt().im().status().remove(&event, listener.as_ref());
}

/// `RongIMLib.getConnectionStatus()`: `RCConnectionStatus`.
#[wasm_bindgen]
pub fn im_connection_status() -> u8 {
    rt().im().status().get() as u8
}

/// `RongIMLib.getCurrentUserId()`.
#[wasm_bindgen]
pub fn im_current_user_id() -> Option<String> {
    rt().current_user()
}

/// `RCRTC.installer.setup(options)`: rcall reads `iceServers` (RTCIceServer[]) and
/// `iceTransportPolicy` ('all' | 'relay') for its peer connections; other RTCLib options are
/// accepted and ignored.
#[wasm_bindgen]
pub fn install_rtc(options: JsValue) -> RCRTCClient {
    let mut config = web_rtc::PeerConfig::default();
    let servers = js::get(&options, "iceServers");
    if js_sys::Array::is_array(&servers) {
        for s in js_sys::Array::from(&servers).iter() {
            let urls = js::get(&s, "urls");
            let urls: Vec<String> = if js_sys::Array::is_array(&urls) {
                js_sys::Array::from(&urls).iter().filter_map(|u| u.as_string()).collect()
            } else {
                urls.as_string().into_iter().collect()
            };
            config.ice_servers.push(web_rtc::IceServer {
                urls,
                username: js::get_string(&s, "username"),
                credential: js::get_string(&s, "credential"),
            });
        }
    }
    config.ice_transport_policy_relay = js::get_string(&options, "iceTransportPolicy").as_deref() == Some("relay");
    rt().set_peer_config(config);
    // Its worker must be up before the first call's links negotiate.
    web_rtc::warmup::start();
    RCRTCClient {}
}

/// What `installPlugin(RCRTC.installer, …)` returns. CallLib only needs it to exist; media
/// is driven by the call plugin.
#[wasm_bindgen]
pub struct RCRTCClient {}

#[wasm_bindgen]
impl RCRTCClient {
    #[wasm_bindgen(js_name = getCurrentId, unchecked_return_type = "string | undefined")]
    pub fn current_id(&self) -> JsValue {
        js::opt_str(rt().current_user().as_deref())
    }
}

/// `RCCall.installer.setup(options)`: validates (spec A.3) and returns the client.
#[wasm_bindgen]
pub fn install_call(options: JsValue) -> Result<RCCallClient, JsValue> {
    validate::init_options(&options).map_err(|m| js::js_error(&m))?;
    let on_session = js::get_function(&options, "onSession").ok_or_else(|| js::js_error("onSession"))?;
    let on_session_close = js::get_function(&options, "onSessionClose").ok_or_else(|| js::js_error("onSessionClose"))?;
    js::set_log_config(log_config(&options));
    let lang = js::get_string(&options, "lang").unwrap_or_else(|| "zh".into());
    let camera_off = js::get(&options, "isOffCameraWhenVideoDisable").as_bool().unwrap_or(true);
    let demotion = js::get(&options, "isAllowDemotionGetStream").as_bool().unwrap_or(false);
    // P2P links carry both directions, so either retry option allows re-negotiating a link
    // (CallLib: "retried up to 2 more times"). `joinType` is validated only: it picks how an
    // RTC room treats a user's second device, and rcall has no room (one device of a user is
    // in a call; its others end with 101/102 as in CallLib).
    let retry = |k: &str| js::get(&options, k).as_bool().unwrap_or(false);
    let setup_retries = if retry("isAllowPublishRetry") || retry("isAllowSubscribeRetry") { 2 } else { 0 };
    // Through the SFU (group calls in SFU mode) publishing and subscribing are separate, as in
    // CallLib: each option allows its own 2 retries.
    let sfu_retries = (u8::from(retry("isAllowPublishRetry")) * 2, u8::from(retry("isAllowSubscribeRetry")) * 2);
    rt().sessions().set_options(CallOptions {
        on_session,
        on_session_close,
        on_offline_record: js::get_function(&options, "onOfflineRecord"),
        lang,
        camera_off,
        demotion,
        setup_retries,
        sfu_retries,
    });
    web_rtc::warmup::start(); // idempotent; normally already started by RCRTC.installer
    Ok(RCCallClient::new())
}

/// The SDK's log output from the install options: `logOutputLevel` (5.2.2+, `LogL`: ERROR 1 …
/// DEBUG 4, lines at that level and more severe) wins over the deprecated `logLevel`
/// (`LogLevel`: lines at that level and above; NONE 1000 silences); `logStdout(level,
/// content)` takes the lines instead of the console. Default: warnings and errors.
fn log_config(options: &JsValue) -> js::LogConfig {
    let output = js::get(options, "logOutputLevel").as_f64().filter(|l| validate::LOG_OUTPUT_LEVELS.contains(l));
    let legacy = js::get(options, "logLevel").as_f64().filter(|l| validate::LOG_LEVELS.contains(l));
    let min_level = match (output, legacy) {
        // LogL → LogLevel: ERROR 1 → 3, WARN 2 → 2, INFO 3 → 1, DEBUG 4 → 0.
        (Some(l), _) => 4 - l as u16,
        (None, Some(l)) => l as u16,
        (None, None) => js::LOG_WARN,
    };
    js::LogConfig { min_level, sink: js::get_function(options, "logStdout") }
}

/// talc instead of Rust's default dlmalloc: made for wasm, a few KB smaller in the bundle.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };
