//! `RCCallClient`: what `installPlugin(RCCall.installer, options)` returns.

use rtc_core::engine::{CallRequest, Command};
use rtc_core::proto::{conversation_type, UserProfile};
use rtc_core::types::MediaType;
use wasm_bindgen::prelude::*;

use crate::js;
use crate::runtime::rt;
use crate::validate;
use rtc_core::text::int;

#[wasm_bindgen]
pub struct RCCallClient {}

impl RCCallClient {
    pub(crate) fn new() -> Self {
        Self {}
    }
}

#[wasm_bindgen]
impl RCCallClient {
    /// Starts a 1:1 call. Resolves `{code, session?}`; bad params reject (spec A.4).
    pub fn call(&self, params: JsValue) -> js_sys::Promise {
        start(params, false)
    }

    /// Starts a group call (`targetId` = group id, `userIds` = invitees).
    #[wasm_bindgen(js_name = callInGroup)]
    pub fn call_in_group(&self, params: JsValue) -> js_sys::Promise {
        start(params, true)
    }

    /// Push configs (`IPushConfig`: texts plus per OS / vendor channel) for invites and
    /// hangups; per-call `pushTitle`/`pushContent` still win. Wrong types throw (see
    /// [`crate::push`]).
    #[wasm_bindgen(js_name = setPushConfig)]
    pub fn set_push_config(&self, call_push: JsValue, hangup_push: JsValue) -> Result<(), JsValue> {
        let (call, hangup) = crate::push::parse_pair(&call_push, &hangup_push).map_err(|m| js::js_error(&m))?;
        rt().set_push(call, hangup);
        Ok(())
    }

    /// Which calls `userId`'s devices are in: `{code: 0, data: [{deviceId, roomId, joinTime}]}`
    /// (`roomId` is the call id), or `{code: 53308}` when the server cannot be asked. A
    /// non-string `userId` rejects.
    #[wasm_bindgen(js_name = getJoinedUserInfo)]
    pub fn get_joined_user_info(&self, user_id: JsValue) -> js_sys::Promise {
        match user_id.as_string() {
            Some(id) => crate::joined::query(rt().im().connection().map(|c| move |request| c.query_joined_user_info(request, id))),
            None => js_sys::Promise::reject(&js::js_error("[RCCallClient getJoinedUserInfo] userId must be a string")),
        }
    }

    /// Sets the profile sent with every call message (`content.user`).
    #[wasm_bindgen(js_name = registerUserInfo)]
    pub fn register_user_info(&self, info: JsValue) {
        let profile = UserProfile {
            name: js::get_string(&info, "name"),
            portrait_uri: js::get_string(&info, "portraitUri"),
            extra: js::get_string(&info, "extra"),
        };
        rt().set_profile(profile);
    }
}

fn start(params: JsValue, group: bool) -> js_sys::Promise {
    if let Err(message) = validate::call_params(&params, group) {
        return js_sys::Promise::reject(&js::js_error(&message));
    }
    let rt = rt();
    let media_type = match js::get(&params, "mediaType").as_f64() {
        Some(2.0) => MediaType::AudioVideo,
        _ => MediaType::Audio,
    };
    let user_ids =
        if group { js_sys::Array::from(&js::get(&params, "userIds")).iter().filter_map(|v| v.as_string()).collect() } else { Vec::new() };
    let call_id = new_call_id();
    let request = CallRequest {
        call_id: call_id.clone(),
        conversation_type: if group { conversation_type::GROUP } else { conversation_type::PRIVATE },
        target_id: js::get_string(&params, "targetId").unwrap_or_default(),
        user_ids,
        media_type,
        channel_id: js::get_string(&params, "channelId").unwrap_or_default(),
        extra: js::get_string(&params, "extra").unwrap_or_default(),
        push_title: js::get_string(&params, "pushTitle"),
        push_content: js::get_string(&params, "pushContent"),
    };
    rt.sessions().set_listener(&call_id, js::get(&params, "listener"));
    let constraints = js::get(&params, "constraints");
    if js::is_present(&constraints) {
        rt.sessions().set_constraints(&call_id, constraints);
    }
    rt.refresh_ice_servers();
    let rx = rt.command(Command::Call(request));
    js::promise(async move {
        let (code, session_id) = rx.await.unwrap_or((rtc_core::types::error_code::SEND_MSG_ERROR, None));
        let rt = crate::runtime::rt();
        match session_id {
            Some(id) => Ok(js::obj(&[("code", code.into()), ("session", rt.sessions().object(&id))])),
            None => {
                rt.sessions().forget(&call_id);
                Ok(js::obj(&[("code", code.into())]))
            }
        }
    })
}

/// CallLib's call id (spec C.1): `<22 random chars from [A-Za-z0-9+]>_<Date.now()>_<0–999>`.
fn new_call_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+0";
    let mut bytes = [0u8; 22];
    js::random_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| ALPHABET[(*b & 63) as usize] as char).collect();
    let n = (js_sys::Math::random() * 1000.0) as u32;
    [&token, "_", &int(js::now()), "_", &int(n.into())].concat()
}
