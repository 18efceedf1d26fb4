//! IMLib 5's connection status and events: `RongIMLib.getConnectionStatus()` and
//! `RongIMLib.addEventListener(RongIMLib.Events.X, listener)` for `CONNECTING`, `CONNECTED`,
//! `DISCONNECT(code)` and `SUSPEND(code)` (spec E). Apps show "reconnecting…" from these.
//!
//! Decisions: a first `connect()` that fails only rejects (its result carries the code) and
//! fires no `DISCONNECT`, so an app that reconnects on `DISCONNECT` cannot loop on a bad token;
//! a dropped link is `SUSPEND(30002)` while the SDK reconnects by itself, each attempt
//! `CONNECTING`, success `CONNECTED`; `disconnect()` is `DISCONNECT(2)` (ACTIVE_DISCONNECT), a
//! refused reconnect or a block `DISCONNECT(<IMLib code>)`. Listeners run from a fresh task,
//! never inside the SDK's own call stack, and a throwing listener does not stop the others.

use wasm_bindgen::{JsCast as _, JsValue};

use crate::js;
use crate::runtime::Runtime;

/// `RCConnectionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    Connected = 0,
    Connecting = 1,
    #[default]
    Disconnected = 2,
    Suspended = 3,
}

/// `ErrorCode.ACTIVE_DISCONNECT`: the app called `disconnect()`.
pub const ACTIVE_DISCONNECT: i32 = 2;

impl Status {
    /// The `RongIMLib.Events` value announcing this status.
    fn event(self) -> &'static str {
        match self {
            Status::Connected => "CONNECTED",
            Status::Connecting => "CONNECTING",
            Status::Disconnected => "DISCONNECT",
            Status::Suspended => "SUSPEND",
        }
    }
}

/// Moves to `status` and tells the listeners of its event (`code` for DISCONNECT/SUSPEND).
/// Staying in the same status fires nothing.
pub fn set(rt: &Runtime, status: Status, code: Option<i32>) {
    if rt.status.replace(status) == status {
        return;
    }
    let listeners: Vec<JsValue> =
        rt.im_listeners.borrow().iter().filter(|(e, _)| e == status.event()).map(|(_, f)| f.clone()).collect();
    if listeners.is_empty() {
        return;
    }
    let arg = code.map_or(JsValue::UNDEFINED, JsValue::from);
    js::spawn(async move {
        for f in listeners {
            if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                if let Err(e) = f.call1(&JsValue::NULL, &arg) {
                    js::error("[rcall] a RongIMLib event listener threw", &e);
                }
            }
        }
    });
}

/// Moves to `status` without an event (a first `connect()` that failed).
pub fn set_quietly(rt: &Runtime, status: Status) {
    rt.status.set(status);
}

/// `addEventListener(event, listener)`: the same listener twice for one event is kept once.
pub fn add(rt: &Runtime, event: String, listener: JsValue) {
    if !listener.is_function() {
        return js::warn("[rcall] RongIMLib.addEventListener: the listener is not a function");
    }
    let mut l = rt.im_listeners.borrow_mut();
    if !l.iter().any(|(e, f)| *e == event && *f == listener) {
        l.push((event, listener));
    }
}

/// `removeEventListener(event, listener)`; without a listener, `removeEventListeners(event)`.
pub fn remove(rt: &Runtime, event: &str, listener: Option<&JsValue>) {
    rt.im_listeners.borrow_mut().retain(|(e, f)| !(e == event && listener.is_none_or(|l| l == f)));
}
