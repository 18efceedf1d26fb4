//! Small helpers for building and reading plain JS objects.

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// `{k1: v1, k2: v2, …}`.
pub fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

pub fn get(o: &JsValue, key: &str) -> JsValue {
    if !o.is_object() && !o.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `o[key]` if it is a string.
pub fn get_string(o: &JsValue, key: &str) -> Option<String> {
    get(o, key).as_string()
}

pub fn get_function(o: &JsValue, key: &str) -> Option<Function> {
    get(o, key).dyn_into::<Function>().ok()
}

pub fn is_present(v: &JsValue) -> bool {
    !v.is_undefined() && !v.is_null()
}

/// A shallow copy (`Object.assign({}, o)`), as CallLib stores listeners.
pub fn shallow_copy(o: &JsValue) -> JsValue {
    match o.dyn_ref::<Object>() {
        Some(obj) => Object::assign(&Object::new(), obj).into(),
        None => o.clone(),
    }
}

/// Calls `target[method](...args)` if it is a function. An exception thrown by app code is
/// logged and swallowed (spec A.6), so one faulty listener cannot break the SDK.
pub fn call_method(target: &JsValue, method: &str, args: &[JsValue]) {
    let Some(f) = get_function(target, method) else { return };
    let array: Array = args.iter().collect();
    if let Err(e) = f.apply(target, &array) {
        error(&["[rcall] listener ", method, " threw"].concat(), &e);
    }
}

/// Calls a plain function with `this = undefined`, swallowing (and logging) exceptions.
pub fn call_function(f: &Function, name: &str, args: &[JsValue]) {
    let array: Array = args.iter().collect();
    if let Err(e) = f.apply(&JsValue::UNDEFINED, &array) {
        error(&["[rcall] ", name, " threw"].concat(), &e);
    }
}

/// Where the SDK's own log lines go, set from the CallLib install options (`logOutputLevel`,
/// or the deprecated `logLevel` / `logStdout`).
pub struct LogConfig {
    /// Lowest engine `LogLevel` printed (DEBUG 0, INFO 1, WARN 2, ERROR 3, FATAL 4, NONE 1000).
    /// The SDK logs only warnings (2) and errors (3).
    pub min_level: u16,
    /// `logStdout(level, content)`: receives the lines instead of the console.
    pub sink: Option<Function>,
}

/// `LogLevel` of a warning / an error line.
pub const LOG_WARN: u16 = 2;
pub const LOG_ERROR: u16 = 3;

thread_local! {
    static LOG: std::cell::RefCell<LogConfig> = const { std::cell::RefCell::new(LogConfig { min_level: LOG_WARN, sink: None }) };
}

pub fn set_log_config(config: LogConfig) {
    LOG.with(|l| *l.borrow_mut() = config);
}

/// Whether a line of `level` is wanted, and the app's sink for it if it gave one.
fn log_target(level: u16) -> Option<Option<Function>> {
    LOG.with(|l| {
        let l = l.borrow();
        (level >= l.min_level).then(|| l.sink.clone())
    })
}

fn to_sink(sink: &Function, level: u16, message: &str, detail: Option<&JsValue>) {
    let detail = detail.map(|d| match d.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.message()),
        None => d.as_string().or_else(|| js_sys::JSON::stringify(d).ok().and_then(|j| j.as_string())).unwrap_or_default(),
    });
    let content = match detail {
        Some(d) => [message, " ", &d].concat(),
        None => message.to_string(),
    };
    // A throwing sink must not recurse into logging.
    let _ = sink.call2(&JsValue::UNDEFINED, &JsValue::from(level), &JsValue::from_str(&content));
}

pub fn error(message: &str, detail: &JsValue) {
    match log_target(LOG_ERROR) {
        Some(Some(sink)) => to_sink(&sink, LOG_ERROR, message, Some(detail)),
        Some(None) => web_sys::console::error_2(&JsValue::from_str(message), detail),
        None => {}
    }
}

/// An error's text for a log line, without `core::fmt` (the wasm ships no formatting code:
/// BENCHMARKS.md "SDK size").
pub trait Detail {
    fn detail(&self) -> String;
}

impl Detail for web_rtc::MediaError {
    fn detail(&self) -> String {
        self.message()
    }
}

impl Detail for prost::DecodeError {
    /// prost's own text needs `core::fmt`; which field failed is only in it.
    fn detail(&self) -> String {
        "failed to decode Protobuf message".into()
    }
}

/// `[rcall] {what}: {e}` as a warning. Not generic and never inlined: the one site building
/// every failure message.
#[inline(never)]
pub fn warn_err(what: &str, e: &dyn Detail) {
    warn(&["[rcall] ", what, ": ", &e.detail()].concat());
}

pub fn warn(message: &str) {
    match log_target(LOG_WARN) {
        Some(Some(sink)) => to_sink(&sink, LOG_WARN, message, None),
        Some(None) => web_sys::console::warn_1(&JsValue::from_str(message)),
        None => {}
    }
}

/// A JS string, or `undefined` for `None`: what the string getters return. A getter returning
/// `String` gets a multivalue export shim of its own and a decode-and-free in the glue; a
/// `JsValue` return is one externref (BENCHMARKS.md "Session 12: size").
#[inline(never)]
pub fn opt_str(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::UNDEFINED, JsValue::from_str)
}

/// An `Error` with this message, to throw or reject with.
pub fn js_error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

pub fn now() -> i64 {
    js_sys::Date::now() as i64
}

/// Fills `bytes` from `crypto.getRandomValues` (`Math.random` where there is no crypto).
pub fn random_bytes(bytes: &mut [u8]) {
    let crypto = web_sys::window().and_then(|w| w.crypto().ok());
    let filled = crypto.is_some_and(|c| c.get_random_values_with_u8_array(bytes).is_ok());
    if !filled {
        for b in bytes.iter_mut() {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
}

/// Runs a future on the page's event loop. Every call goes through one boxed instantiation of
/// `spawn_local`, which keeps the wasm small (each future type would otherwise get its own
/// copy of the task machinery).
pub fn spawn(f: impl std::future::Future<Output = ()> + 'static) {
    spawn_boxed(Box::pin(f));
}

/// Like [`spawn`], but runs the future up to its first await right now, so the JS calls it
/// makes first happen before the caller returns (e.g. `replaceTrack` before the app's event
/// handlers run in the same turn); the rest continues on the event loop.
pub fn spawn_now(f: impl std::future::Future<Output = ()> + 'static) {
    let mut f: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = Box::pin(f);
    let waker = std::task::Waker::noop();
    // JsFuture keeps the latest waker it was polled with, so the executor's later poll replaces
    // this no-op one.
    if f.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_pending() {
        spawn_boxed(f);
    }
}

#[inline(never)]
fn spawn_boxed(f: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>) {
    wasm_bindgen_futures::spawn_local(f);
}

/// A JS promise for a future, through one boxed instantiation (see [`spawn`]).
pub fn promise(f: impl std::future::Future<Output = Result<JsValue, JsValue>> + 'static) -> js_sys::Promise {
    promise_boxed(Box::pin(f))
}

#[inline(never)]
fn promise_boxed(f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>>) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(f)
}
