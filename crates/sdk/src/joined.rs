//! `RCCallClient.getJoinedUserInfo(userId)`: asks the server which calls the user's devices are
//! in. CallLib asked its RTC media server; rcall's server follows the invites, accepts and
//! hangups it routes (see rtc-core `JoinedUserInfo`).

use std::cell::{Cell, RefCell};

use rtc_core::proto::JoinedDevice;
use rtc_core::types::error_code;
use wasm_bindgen::prelude::*;

use crate::js;

/// Past this the query resolves with 53308 rather than stay pending.
const TIMEOUT_MS: i32 = 10_000;

type Answer = Option<Vec<JoinedDevice>>;

thread_local! {
    static PENDING: RefCell<Vec<(u32, crate::reply::Sender<Answer>)>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
}

/// Resolves `{code: 0, data: [{deviceId, roomId, joinTime}]}`, or `{code: 53308}` when the
/// server cannot be asked (not connected, connection lost, no answer in 10 s, refused).
/// `send` puts the question on the connection under a request id (`None`: not connected).
pub fn query(send: Option<impl FnOnce(u32) -> bool>) -> js_sys::Promise {
    let rx = send.map(ask);
    js::promise(async move {
        let answer = match rx {
            Some(rx) => rx.await.flatten(),
            None => None,
        };
        Ok(match answer {
            Some(devices) => {
                let data: js_sys::Array = devices
                    .into_iter()
                    .map(|d| {
                        js::obj(&[
                            ("deviceId", d.device_id.into()),
                            ("roomId", d.call_id.into()),
                            ("joinTime", (d.join_time as f64).into()),
                        ])
                    })
                    .collect();
                js::obj(&[("code", error_code::SUCCESS.into()), ("data", data.into())])
            }
            None => js::obj(&[("code", error_code::QUERY_JOINED_USER_INFO_ERROR.into())]),
        })
    })
}

fn ask(send: impl FnOnce(u32) -> bool) -> crate::reply::Receiver<Answer> {
    let id = NEXT_ID.with(|n| {
        n.set(n.get().wrapping_add(1));
        n.get()
    });
    let (tx, rx) = crate::reply::channel();
    PENDING.with(|p| p.borrow_mut().push((id, tx)));
    if !send(id) {
        settle(id, None);
    }
    let timeout = Closure::once_into_js(move || settle(id, None));
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(timeout.unchecked_ref(), TIMEOUT_MS);
    }
    rx
}

/// The server's answer to request `id` (`None`: failed).
pub fn settle(id: u32, answer: Answer) {
    let tx = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let at = p.iter().position(|(i, _)| *i == id)?;
        Some(p.swap_remove(at).1)
    });
    if let Some(tx) = tx {
        tx.send(answer);
    }
}

/// The connection dropped: every open query fails.
pub fn fail_all() {
    for (_, tx) in PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        tx.send(None);
    }
}
