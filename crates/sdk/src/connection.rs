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

use std::cell::{Cell, RefCell};

use crate::js;

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

/// The pseudo-event under which IMLib 4.X `imClient.watch({status})` watchers are kept (the
/// watcher objects, called as `status({status})`).
pub const V4_STATUS: &str = "rcall:v4-status";
/// The pseudo-event of IMLib 2.X `RongIMClient.setConnectionStatusListener({onChanged})` (the
/// listener object, called as `onChanged(status)`; one at a time).
pub const V2_STATUS: &str = "rcall:v2-status";

/// IMLib 2.X / 4.X `ConnectionStatus` values (the same numbers in both; `RongIMLib.ConnectionStatus`
/// and `RongIMLib.CONNECTION_STATUS` in npm/src/facade.js).
pub mod legacy {
    pub const CONNECTED: i32 = 0;
    pub const CONNECTING: i32 = 1;
    pub const DISCONNECTED: i32 = 2;
    pub const NETWORK_UNAVAILABLE: i32 = 3;
    pub const KICKED_OFFLINE_BY_OTHER_CLIENT: i32 = 6;
    pub const BLOCKED: i32 = 9;
}

/// The legacy status an IMLib 2.X/4.X app sees for a 5.X status change. Those versions have no
/// SUSPENDED: a link the SDK is re-establishing by itself is NETWORK_UNAVAILABLE, as their own
/// SDKs reported it; a disconnect is DISCONNECTED unless a block (31009) or a kick by another
/// login (31010) has its own status.
pub fn legacy_status(status: Status, code: Option<i32>) -> i32 {
    match (status, code) {
        (Status::Connected, _) => legacy::CONNECTED,
        (Status::Connecting, _) => legacy::CONNECTING,
        (Status::Suspended, _) => legacy::NETWORK_UNAVAILABLE,
        (Status::Disconnected, Some(rtc_core::proto::error_code::USER_BLOCKED)) => legacy::BLOCKED,
        (Status::Disconnected, Some(31010)) => legacy::KICKED_OFFLINE_BY_OTHER_CLIENT,
        (Status::Disconnected, _) => legacy::DISCONNECTED,
    }
}

/// The connection status and who listens to it: owned by the IM link ([`crate::im::ImLink`]).
#[derive(Default)]
pub struct ConnStatus {
    status: Cell<Status>,
    /// `RongIMLib.addEventListener` listeners and the legacy watchers: (event name, function).
    listeners: RefCell<Vec<(String, JsValue)>>,
}

impl ConnStatus {
    /// `RongIMLib.getConnectionStatus()`.
    pub fn get(&self) -> Status {
        self.status.get()
    }

    /// Moves to `status` and tells the listeners of its event (`code` for DISCONNECT/SUSPEND), and
    /// the IMLib 4.X/2.X status watchers their [`legacy_status`]. Staying in the same status fires
    /// nothing.
    pub fn set(&self, status: Status, code: Option<i32>) {
        if self.status.replace(status) == status {
            return;
        }
        let listeners: Vec<(String, JsValue)> =
            self.listeners.borrow().iter().filter(|(e, _)| e == status.event() || e == V4_STATUS || e == V2_STATUS).cloned().collect();
        if listeners.is_empty() {
            return;
        }
        let arg = code.map_or(JsValue::UNDEFINED, JsValue::from);
        let old = JsValue::from(legacy_status(status, code));
        js::spawn(async move {
            for (event, f) in listeners {
                match event.as_str() {
                    V4_STATUS => js::call_method(&f, "status", &[js::obj(&[("status", old.clone())])]),
                    V2_STATUS => js::call_method(&f, "onChanged", std::slice::from_ref(&old)),
                    _ => {
                        if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                            if let Err(e) = f.call1(&JsValue::NULL, &arg) {
                                js::error("[rcall] a RongIMLib event listener threw", &e);
                            }
                        }
                    }
                }
            }
        });
    }

    /// IMLib 4.X `imClient.watch(watcher)` (`replace = false`: watchers add up; `unwatch()` is
    /// [`remove`] of [`V4_STATUS`]) and 2.X `setConnectionStatusListener(listener)` (`replace =
    /// true`: the last one set is the one called). Only the status part is kept: the call plugin
    /// consumes the call messages, and rcall carries no others.
    pub fn watch(&self, event: &str, watcher: JsValue, replace: bool) {
        let method = if event == V4_STATUS { "status" } else { "onChanged" };
        if replace {
            self.remove(event, None);
        }
        if js::get_function(&watcher, method).is_none() {
            return; // e.g. watch({message}) only: nothing rcall reports
        }
        let mut l = self.listeners.borrow_mut();
        if !l.iter().any(|(e, f)| e == event && *f == watcher) {
            l.push((event.to_string(), watcher));
        }
    }

    /// Moves to `status` without an event (a first `connect()` that failed).
    pub fn set_quietly(&self, status: Status) {
        self.status.set(status);
    }

    /// `addEventListener(event, listener)`: the same listener twice for one event is kept once.
    pub fn add(&self, event: String, listener: JsValue) {
        if !listener.is_function() {
            return js::warn("[rcall] RongIMLib.addEventListener: the listener is not a function");
        }
        let mut l = self.listeners.borrow_mut();
        if !l.iter().any(|(e, f)| *e == event && *f == listener) {
            l.push((event, listener));
        }
    }

    /// `removeEventListener(event, listener)`; without a listener, `removeEventListeners(event)`.
    pub fn remove(&self, event: &str, listener: Option<&JsValue>) {
        self.listeners.borrow_mut().retain(|(e, f)| !(e == event && listener.is_none_or(|l| l == f)));
    }
}

#[cfg(test)]
mod tests {
    use super::{legacy, legacy_status, Status, ACTIVE_DISCONNECT};

    #[test]
    fn legacy_status_has_no_suspended_and_names_blocks_and_kicks() {
        assert_eq!(legacy_status(Status::Connected, None), legacy::CONNECTED);
        assert_eq!(legacy_status(Status::Connecting, None), legacy::CONNECTING);
        assert_eq!(legacy_status(Status::Suspended, Some(30002)), legacy::NETWORK_UNAVAILABLE);
        assert_eq!(legacy_status(Status::Disconnected, Some(ACTIVE_DISCONNECT)), legacy::DISCONNECTED);
        assert_eq!(legacy_status(Status::Disconnected, Some(31004)), legacy::DISCONNECTED);
        assert_eq!(legacy_status(Status::Disconnected, Some(31009)), legacy::BLOCKED);
        assert_eq!(legacy_status(Status::Disconnected, Some(31010)), legacy::KICKED_OFFLINE_BY_OTHER_CLIENT);
    }
}
