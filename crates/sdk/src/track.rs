//! `RCTrack`: one local or remote audio/video track, as RTCLib exposes it.

use std::cell::RefCell;
use std::rc::Rc;

use rtc_core::engine::{track_id, SessionView, TrackKind, TRACK_TAG};
use wasm_bindgen::prelude::*;
use web_rtc::{HtmlMediaElement, MediaStream, MediaStreamTrack, PlayOptions, Playback};

use crate::js;

/// RTCLib codes returned by `play()` (spec D.7).
mod code {
    pub const SUCCESS: i32 = 10000;
    pub const PARAMS_ERROR: i32 = 50001;
    pub const TRACK_NOT_READY: i32 = 53020;
    pub const VIDEO_TRACK_MISS_MEDIA_ELEMENT: i32 = 53021;
    pub const TRACK_PLAY_ERROR: i32 = 53022;
}

struct Inner {
    /// The call the track belongs to (for the publisher's mute state).
    call_id: String,
    user_id: String,
    kind: TrackKind,
    local: bool,
    track: MediaStreamTrack,
    /// The stream the track came in (remote) or was captured in (local).
    stream: MediaStream,
    playback: RefCell<Option<Playback>>,
}

#[wasm_bindgen]
#[derive(Clone)]
pub struct RCTrack {
    inner: Rc<Inner>,
}

impl RCTrack {
    /// Whether the publisher muted it; `view` gives the engine's view of a call (a remote
    /// track's state is the engine's, so `isOwnerMuted` itself is exported by
    /// `crate::session`, which reaches the engine).
    pub(crate) fn owner_muted(&self, view: impl FnOnce(&str) -> Option<SessionView>) -> bool {
        let inner = &self.inner;
        if inner.local {
            return !inner.track.enabled();
        }
        let user = view(&inner.call_id).and_then(|v| v.users.into_iter().find(|u| u.user_id == inner.user_id));
        user.is_some_and(|u| if inner.kind == TrackKind::Audio { u.audio_muted } else { u.video_muted })
    }

    pub(crate) fn new(call_id: &str, user_id: &str, kind: TrackKind, local: bool, track: MediaStreamTrack, stream: MediaStream) -> Self {
        Self {
            inner: Rc::new(Inner {
                call_id: call_id.to_string(),
                user_id: user_id.to_string(),
                kind,
                local,
                track,
                stream,
                playback: RefCell::new(None),
            }),
        }
    }
}

#[wasm_bindgen]
impl RCTrack {
    #[wasm_bindgen(js_name = isLocalTrack)]
    pub fn is_local_track(&self) -> bool {
        self.inner.local
    }

    #[wasm_bindgen(js_name = isAudioTrack)]
    pub fn is_audio_track(&self) -> bool {
        self.inner.kind == TrackKind::Audio
    }

    #[wasm_bindgen(js_name = isVideoTrack)]
    pub fn is_video_track(&self) -> bool {
        self.inner.kind == TrackKind::Video
    }

    /// The string getters return a `JsValue` (see [`js::opt_str`]).
    #[wasm_bindgen(js_name = getUserId, unchecked_return_type = "string")]
    pub fn user_id(&self) -> JsValue {
        JsValue::from_str(&self.inner.user_id)
    }

    /// `<userId>_RongCloudRTC_0` (audio) / `_1` (video), RTCLib's scheme.
    #[wasm_bindgen(js_name = getTrackId, unchecked_return_type = "string")]
    pub fn track_id_js(&self) -> JsValue {
        JsValue::from_str(&self.track_id())
    }

    #[wasm_bindgen(js_name = getStreamId, unchecked_return_type = "string")]
    pub fn stream_id(&self) -> JsValue {
        JsValue::from_str(&[&self.inner.user_id, "_", TRACK_TAG].concat())
    }

    #[wasm_bindgen(js_name = getTag, unchecked_return_type = "string")]
    pub fn tag(&self) -> JsValue {
        JsValue::from_str(TRACK_TAG)
    }

    /// Whether the underlying track is live.
    #[wasm_bindgen(js_name = isReady)]
    pub fn is_ready(&self) -> bool {
        web_rtc::is_live(&self.inner.track)
    }

    /// Whether this track is muted here (a local track: not sending; a remote one: not played).
    #[wasm_bindgen(js_name = isLocalMuted)]
    pub fn is_local_muted(&self) -> bool {
        !self.inner.track.enabled()
    }

    /// Mutes this track here only (peers are not told; use the session's `disable…Track()`
    /// for that). Resolves `{code}`.
    pub fn mute(&self) -> js_sys::Promise {
        self.inner.track.set_enabled(false);
        js_sys::Promise::resolve(&js::obj(&[("code", code::SUCCESS.into())]))
    }

    pub fn unmute(&self) -> js_sys::Promise {
        self.inner.track.set_enabled(true);
        js_sys::Promise::resolve(&js::obj(&[("code", code::SUCCESS.into())]))
    }

    /// Stops a local track (camera light off). No effect on remote tracks.
    pub fn destroy(&self) {
        if self.inner.local {
            self.inner.track.stop();
        }
    }

    /// The browser's `MediaStreamTrack` (an rcall extension, handy for custom rendering).
    #[wasm_bindgen(js_name = getMediaStreamTrack)]
    pub fn media_stream_track(&self) -> MediaStreamTrack {
        Clone::clone(&self.inner.track)
    }

    /// Plays the track: video into the given `<video>`, audio into the given element or an
    /// internal one. Resolves `{code}`: 10000, 53020 (not ready), 53021 (video without an
    /// element), 50001 (bad options), 53022 (the browser refused to play).
    /// The local audio track is never played (it would echo); that call succeeds silently.
    pub fn play(&self, element: JsValue, options: JsValue) -> js_sys::Promise {
        let this = self.clone();
        js::promise(async move {
            let code = this.play_inner(element, options).await;
            Ok(js::obj(&[("code", code.into())]))
        })
    }
}

impl RCTrack {
    /// `getTrackId()`'s value.
    pub(crate) fn track_id(&self) -> String {
        track_id(&self.inner.user_id, self.inner.kind)
    }

    async fn play_inner(&self, element: JsValue, options: JsValue) -> i32 {
        let inner = &self.inner;
        let element: Option<HtmlMediaElement> = element.dyn_into().ok();
        if inner.kind == TrackKind::Video && element.is_none() {
            return code::VIDEO_TRACK_MISS_MEDIA_ELEMENT;
        }
        if !web_rtc::is_live(&inner.track) {
            return code::TRACK_NOT_READY;
        }
        if inner.local && inner.kind == TrackKind::Audio {
            return code::SUCCESS;
        }
        let mut opts = PlayOptions::default();
        if let Some(v) = js::get(&options, "volume").as_f64() {
            if !(0.0..=100.0).contains(&v) {
                return code::PARAMS_ERROR;
            }
            opts.volume = Some(v as u8);
        }
        opts.audio_output_device_id = js::get_string(&options, "audioDeviceId");
        if let Some(old) = inner.playback.borrow_mut().take() {
            if element.is_none() && old.is_internal() {
                old.stop();
            }
        }
        // Video plays its own track only, so a remote user's <video> does not also play their
        // audio (which the app plays through the audio track, as with RTCLib).
        let result = web_rtc::play_with(Clone::clone(&inner.track), element.as_ref(), &opts).await;
        match result {
            Ok(playback) => {
                if let Some(el) = element.as_ref() {
                    if inner.kind == TrackKind::Video {
                        el.set_muted(true);
                    }
                }
                *inner.playback.borrow_mut() = Some(playback);
                code::SUCCESS
            }
            Err(e) => {
                js::warn_err("play failed", &e);
                match e {
                    web_rtc::MediaError::MissingElement => code::VIDEO_TRACK_MISS_MEDIA_ELEMENT,
                    web_rtc::MediaError::InvalidArgument(_) => code::PARAMS_ERROR,
                    _ => code::TRACK_PLAY_ERROR,
                }
            }
        }
    }

    #[allow(dead_code)]
    pub(crate) fn stream(&self) -> MediaStream {
        Clone::clone(&self.inner.stream)
    }
}
