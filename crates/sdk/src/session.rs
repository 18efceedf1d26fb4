//! `RCCallSession`: one call as the app sees it. Commands go to the engine; getters read the
//! engine's view of the call.

use rtc_core::engine::{Command, SessionView, TrackKind, VideoLayer};
use rtc_core::types::{MediaType, SessionState};
use wasm_bindgen::prelude::*;

use crate::js;
use crate::runtime::rt;
pub use crate::sessions::RCCallSession;
use crate::track::RCTrack;
use crate::validate;

impl RCCallSession {
    fn call_id(&self) -> String {
        self.id.borrow().clone()
    }

    fn view(&self) -> Option<SessionView> {
        rt().session_view(&self.call_id())
    }

    /// A string field of the session's view for a getter (`undefined` without a view): one
    /// out-of-line fetch and drop of the view for every string getter.
    #[inline(never)]
    fn text(&self, pick: fn(SessionView) -> Option<String>) -> JsValue {
        js::opt_str(self.view().and_then(pick).as_deref())
    }

    fn mute(&self, kind: TrackKind, muted: bool) -> js_sys::Promise {
        self.run(Command::MuteTrack { call_id: self.call_id(), kind, muted })
    }

    /// Runs a session command and resolves `{code}`.
    fn run(&self, cmd: Command) -> js_sys::Promise {
        let rx = rt().command(cmd);
        js::promise(async move {
            let code = rx.await.map_or(rtc_core::types::error_code::SEND_MSG_ERROR, |(code, _)| code);
            Ok(js::obj(&[("code", code.into())]))
        })
    }
}

#[wasm_bindgen]
impl RCCallSession {
    /// Replaces the session's listener (validated like `call()`'s, spec A.5).
    #[wasm_bindgen(js_name = registerSessionListener)]
    pub fn register_session_listener(&self, listener: JsValue) -> Result<(), JsValue> {
        let problems = validate::listener_problems(&listener);
        if !problems.is_empty() {
            return Err(js::js_error(&["[RCCallSession registerSessionListener] ", &rtc_core::text::join(&problems, "\n")].concat()));
        }
        rt().sessions().set_listener(&self.call_id(), listener);
        Ok(())
    }

    /// Answers the call. Resolves `{code}`; invalid constraints throw (spec A.10).
    pub fn accept(&self, constraints: JsValue) -> Result<js_sys::Promise, JsValue> {
        validate::constraints(&constraints, "[RCCallSession accept]").map_err(|m| js::js_error(&m))?;
        if js::is_present(&constraints) {
            rt().sessions().set_constraints(&self.call_id(), constraints);
        }
        Ok(self.run(Command::Accept { call_id: self.call_id() }))
    }

    /// Cancels, rejects or hangs up (the reason follows the call's state, spec C.5).
    pub fn hungup(&self) -> js_sys::Promise {
        self.run(Command::Hangup { call_id: self.call_id() })
    }

    /// Invites more members into a group call (spec C.9). `{code}`: 53311 on a 1:1 call,
    /// PARAM_ERROR when everyone named is already in the call; bad `userIds` throw.
    pub fn invite(&self, user_ids: JsValue, options: JsValue) -> Result<js_sys::Promise, JsValue> {
        let ids = validate::user_ids(&user_ids)
            .ok_or_else(|| js::js_error("[RCCallSession invite] userIds must be a non-empty array of non-empty strings"))?;
        Ok(self.run(Command::Invite {
            call_id: self.call_id(),
            user_ids: ids,
            extra: js::get_string(&options, "extra").unwrap_or_default(),
            push_title: js::get_string(&options, "pushTitle"),
            push_content: js::get_string(&options, "pushContent"),
        }))
    }

    /// Mutes the microphone; the others get `onAudioMuteChange`. Resolves `{code}`.
    #[wasm_bindgen(js_name = disableAudioTrack)]
    pub fn disable_audio_track(&self) -> js_sys::Promise {
        self.mute(TrackKind::Audio, true)
    }

    #[wasm_bindgen(js_name = enableAudioTrack)]
    pub fn enable_audio_track(&self) -> js_sys::Promise {
        self.mute(TrackKind::Audio, false)
    }

    /// Stops sending video (and, with `isOffCameraWhenVideoDisable`, releases the camera);
    /// 53309 without a local video track.
    #[wasm_bindgen(js_name = disableVideoTrack)]
    pub fn disable_video_track(&self) -> js_sys::Promise {
        self.mute(TrackKind::Video, true)
    }

    /// Sends video again (capturing a new camera track if it was released: `onTrackReady`).
    #[wasm_bindgen(js_name = enableVideoTrack)]
    pub fn enable_video_track(&self) -> js_sys::Promise {
        self.mute(TrackKind::Video, false)
    }

    /// Switches to another microphone without renegotiating (`{micphoneId?, sampleRate?}`;
    /// none: the default device). `onTrackReady(newTrack)`; 53301 if it cannot be captured.
    #[wasm_bindgen(js_name = changeAudioDevice)]
    pub fn change_audio_device(&self, constraints: JsValue) -> Result<js_sys::Promise, JsValue> {
        let wrapped = js::obj(&[("audio", constraints.clone())]);
        validate::constraints(&wrapped, "[RCCallSession changeAudioDevice]").map_err(|m| js::js_error(&m))?;
        rt().sessions().set_mic_constraints(&self.call_id(), constraints);
        Ok(self.run(Command::ChangeMicrophone { call_id: self.call_id() }))
    }

    /// rcall extension (docs/sfu.md, "Choosing a user's layer"): which simulcast layer of
    /// `userId`'s video to receive in a group call through the SFU — `'high'` (shown large),
    /// `'low'`, or `'auto'` (by the number of tiles, the default) — kept for the call.
    /// `{code}`: 53312 for a user not in the call; a mesh call has one layer per link, so it
    /// succeeds there without change. A `userId` that is not a non-empty string, or another
    /// layer, throws.
    #[wasm_bindgen(js_name = setRemoteVideoLayer)]
    pub fn set_remote_video_layer(&self, user_id: JsValue, layer: JsValue) -> Result<js_sys::Promise, JsValue> {
        let layer = match layer.as_string().as_deref() {
            Some("high") => Some(VideoLayer::High),
            Some("low") => Some(VideoLayer::Low),
            Some("auto") => Some(VideoLayer::Auto),
            _ => None,
        };
        let (Some(user_id), Some(layer)) = (user_id.as_string().filter(|u| !u.is_empty()), layer) else {
            return Err(js::js_error(
                "[RCCallSession setRemoteVideoLayer] userId must be a non-empty string, layer 'high', 'low' or 'auto'",
            ));
        };
        Ok(self.run(Command::RemoteVideoLayer { call_id: self.call_id(), user_id, layer }))
    }

    /// Downgrades the call to audio only, for everyone.
    #[wasm_bindgen(js_name = descendAbility)]
    pub fn descend_ability(&self) -> js_sys::Promise {
        self.run(Command::DescendAbility { call_id: self.call_id() })
    }

    #[wasm_bindgen(js_name = getSessionId, unchecked_return_type = "string")]
    pub fn session_id(&self) -> JsValue {
        JsValue::from_str(&self.id.borrow())
    }

    /// The media "room" id of the call, for correlating recordings and logs: the session id,
    /// the same for every participant (rcall's P2P rooms are never recycled). Only once this
    /// user is in the call (a caller from its call(), a callee after accept()); before that, and
    /// after the end, `undefined` (spec G: legacy dereferenced a missing room and threw).
    #[wasm_bindgen(js_name = getRTCSessionId, unchecked_return_type = "string | undefined")]
    pub fn rtc_session_id(&self) -> JsValue {
        self.text(|view| {
            // CallLib's caller joins the room right after inviting; a callee once it accepted.
            let me = view.users.iter().find(|u| !u.is_remote);
            let joined =
                view.state != SessionState::End && me.is_some_and(|u| u.is_caller || u.state == rtc_core::types::UserState::Keeping);
            joined.then_some(view.call_id)
        })
    }

    #[wasm_bindgen(js_name = getTargetId, unchecked_return_type = "string | undefined")]
    pub fn target_id(&self) -> JsValue {
        self.text(|v| Some(v.target_id))
    }

    #[wasm_bindgen(js_name = getConversationType)]
    pub fn conversation_type(&self) -> Option<i32> {
        self.view().map(|v| v.conversation_type)
    }

    /// `""` without a view.
    #[wasm_bindgen(js_name = getChannelId, unchecked_return_type = "string")]
    pub fn channel_id(&self) -> JsValue {
        let id = self.text(|v| Some(v.channel_id));
        if id.is_undefined() {
            JsValue::from_str("")
        } else {
            id
        }
    }

    #[wasm_bindgen(js_name = getMediaType)]
    pub fn media_type(&self) -> i32 {
        self.view().map_or(MediaType::Audio, |v| v.media_type) as i32
    }

    #[wasm_bindgen(js_name = getCallerId, unchecked_return_type = "string | undefined")]
    pub fn caller_id(&self) -> JsValue {
        self.text(|v| Some(v.caller_id))
    }

    /// `RCCallSessionState`; END once the call is over or unknown.
    #[wasm_bindgen(js_name = getState)]
    pub fn state(&self) -> i32 {
        self.view().map_or(SessionState::End, |v| v.state) as i32
    }

    /// `RCCallUserState` of a user; 0 (NONE) for users not in the call (spec G.10).
    #[wasm_bindgen(js_name = getUserState)]
    pub fn user_state(&self, user_id: JsValue) -> Result<i32, JsValue> {
        let Some(user_id) = user_id.as_string().filter(|u| !u.is_empty()) else {
            return Err(js::js_error("[RCCallSession getUserState] userId must be a non-empty string"));
        };
        let state = self.view().and_then(|v| v.users.into_iter().find(|u| u.user_id == user_id)).map_or(0, |u| u.state as i32);
        Ok(state)
    }

    /// `IUserData[]` of everyone in the call but this user.
    #[wasm_bindgen(js_name = getRemoteUsers)]
    pub fn remote_users(&self) -> js_sys::Array {
        let Some(view) = self.view() else { return js_sys::Array::new() };
        view.users
            .into_iter()
            .filter(|u| u.is_remote)
            .map(|u| {
                let mut pairs = vec![
                    ("userId", JsValue::from_str(&u.user_id)),
                    ("state", (u.state as i32).into()),
                    ("isCaller", u.is_caller.into()),
                    ("isRemote", u.is_remote.into()),
                ];
                if let Some(n) = u.profile.name {
                    pairs.push(("name", n.into()));
                }
                if let Some(p) = u.profile.portrait_uri {
                    pairs.push(("portraitUri", p.into()));
                }
                if let Some(e) = u.profile.extra {
                    pairs.push(("extra", e.into()));
                }
                js::obj(&pairs)
            })
            .collect()
    }
}

/// `RCTrack.isOwnerMuted()` is here, beside the session getters, because a remote track's mute
/// state is the engine's (`crate::track` does not reach the runtime).
#[wasm_bindgen]
impl RCTrack {
    /// Whether the publisher muted it (`session.disableAudioTrack()` and friends on its side).
    #[wasm_bindgen(js_name = isOwnerMuted)]
    pub fn is_owner_muted(&self) -> bool {
        self.owner_muted(|call_id| rt().session_view(call_id))
    }
}
