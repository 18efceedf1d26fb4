//! The IMLib 4.X and 2.X entry points (seed: "CallLib 配合 IMLib 4.X / 2.X"), mapped onto the
//! 5.X connect flow and connection status ([`crate::connection`]). The JS objects themselves
//! (`RongIMLib.init()`'s IM client, `RongIMLib.RongIMClient`) are in npm/src/facade.js and only
//! forward here.
//!
//! - 4.X `imClient.connect({token})` resolves the user `{id}` and rejects `{code, msg}` (a plain
//!   object, as IMLib 4 does, not an `Error`), with the same IMLib codes 5.X returns.
//! - 2.X `RongIMClient.connect(token, {onSuccess, onTokenIncorrect, onError})`: `onSuccess(userId)`;
//!   `onTokenIncorrect()` for an invalid or an expired token (31004 / 31020: IMLib 2 had one
//!   "token incorrect" outcome for both); `onError(code)` with the IMLib 5 code otherwise.
//! - Status: 4.X `watch({status(evt)})` gets `evt.status`, 2.X `setConnectionStatusListener`'s
//!   `onChanged(status)`, both the legacy `ConnectionStatus` ([`crate::connection::legacy_status`]).

use wasm_bindgen::prelude::*;

use crate::connection;
use crate::js;
use crate::runtime::rt;
use rtc_core::text::int;

/// The token from 4.X's `{token}` (a bare string is taken too).
fn token_of(options: &JsValue) -> JsValue {
    if options.is_string() {
        return options.clone();
    }
    js::get(options, "token")
}

/// IMLib 4.X `imClient.connect({token})` → the user `{id}`; rejects `{code, msg}`.
/// A plain function returning a promise, not an `async fn` export: see [`crate::im_connect`].
#[wasm_bindgen]
pub fn im4_connect(options: JsValue) -> js_sys::Promise {
    js::promise(async move {
        match crate::connect(token_of(&options)).await {
            Ok(id) => Ok(js::obj(&[("id", id.into())])),
            Err(code) => Err(js::obj(&[("code", code.into()), ("msg", crate::im_message(code).into())])),
        }
    })
}

/// Which 2.X connect callback an outcome goes to.
fn v2_callback(result: &Result<String, i32>) -> &'static str {
    match result {
        Ok(_) => "onSuccess",
        Err(crate::im::code::RC_CONN_TOKEN_INCORRECT | crate::im::code::RC_CONN_TOKEN_EXPIRED) => "onTokenIncorrect",
        Err(_) => "onError",
    }
}

/// IMLib 2.X `RongIMClient.connect(token, callbacks)`: one of the callbacks, once. A callback
/// that throws is logged; one that is missing is skipped (with a warning, so a failure is not
/// silent).
/// Spawned, not an `async fn` export (the 2.X API returns nothing): see [`crate::im_connect`].
#[wasm_bindgen]
pub fn im2_connect(token: JsValue, callbacks: JsValue) {
    js::spawn(async move {
        let result = crate::connect(token).await;
        let method = v2_callback(&result);
        if js::get_function(&callbacks, method).is_none() {
            if let Err(code) = result {
                js::warn(&["[rcall] RongIMClient.connect failed (", &int(code.into()), ") and the callbacks have no ", method].concat());
            }
            return;
        }
        let args: Vec<JsValue> = match result {
            Ok(id) => vec![id.into()],
            Err(crate::im::code::RC_CONN_TOKEN_INCORRECT | crate::im::code::RC_CONN_TOKEN_EXPIRED) => vec![],
            Err(code) => vec![code.into()],
        };
        js::call_method(&callbacks, method, &args);
    });
}

/// 4.X `imClient.watch(watcher)`: adds a status watcher (`watcher.status`).
#[wasm_bindgen]
pub fn im4_watch(watcher: JsValue) {
    rt().im().status().watch(connection::V4_STATUS, watcher, false);
}

/// 4.X `imClient.unwatch()`: removes every watcher.
#[wasm_bindgen]
pub fn im4_unwatch() {
    rt().im().status().remove(connection::V4_STATUS, None);
}

/// 2.X `RongIMClient.setConnectionStatusListener({onChanged})`: replaces the listener.
#[wasm_bindgen]
pub fn im2_set_connection_status_listener(listener: JsValue) {
    rt().im().status().watch(connection::V2_STATUS, listener, true);
}

/// The legacy `ConnectionStatus` of now (2.X `getCurrentConnectionStatus()`).
#[wasm_bindgen]
pub fn im_legacy_connection_status() -> i32 {
    connection::legacy_status(rt().im().status().get(), None)
}

#[cfg(test)]
mod tests {
    use super::v2_callback;

    #[test]
    fn v2_callbacks_follow_the_imlib2_outcomes() {
        assert_eq!(v2_callback(&Ok("u1".into())), "onSuccess");
        assert_eq!(v2_callback(&Err(31004)), "onTokenIncorrect");
        assert_eq!(v2_callback(&Err(31020)), "onTokenIncorrect", "IMLib 2 reported an expired token as incorrect");
        assert_eq!(v2_callback(&Err(30002)), "onError");
        assert_eq!(v2_callback(&Err(34001)), "onError");
    }
}
