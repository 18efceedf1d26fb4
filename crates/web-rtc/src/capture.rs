//! Capturing the local camera and microphone (`getUserMedia`).
//!
//! CallLib captures once per call (audio, or audio + video with the defaults
//! W640_H480 / FPS_15) and hands the same tracks to every peer connection, so
//! capture is a free function returning a [`LocalMedia`] that the SDK keeps
//! for the whole call and passes to [`PeerLink::add_local_media`](crate::PeerLink::add_local_media).

use js_sys::{Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaDevices, MediaStream, MediaStreamConstraints, MediaStreamTrack};

use crate::error::MediaError;
use crate::track::{track_kind, Kind};

/// Default ideal capture width (CallLib `RCResolution.W640_H480`).
pub const DEFAULT_WIDTH: u32 = 640;
/// Default ideal capture height (CallLib `RCResolution.W640_H480`).
pub const DEFAULT_HEIGHT: u32 = 480;
/// Default ideal frame rate (CallLib `RCFrameRate.FPS_15`).
pub const DEFAULT_FRAME_RATE: u32 = 15;

/// The frame rate a camera opens with when a lower one was asked for, until
/// [`SETTLE_AFTER_MS`] later the track is brought to the requested rate.
///
/// Why: a camera's first frames reach a freshly started video sender later at
/// a low rate (the encoder drops the frame that triggers its initialisation
/// and waits for the next). Measured with `bench/pipeline` (fresh fake camera,
/// 640x480): first remote frame 178 ms at 15 fps, 130 ms at 30 fps. The callee
/// opens its camera in `accept()` and sends at once, so this is on its path.
pub const FAST_START_FRAME_RATE: u32 = 30;
/// How long after a fast-started camera track is first handed to a sender
/// ([`PeerLink::attach`](crate::PeerLink::attach)) `applyConstraints` brings it to the
/// requested rate (no device restart: the browser drops frames). Not counted from the
/// capture: a caller's camera waits, ringing, until the callee accepts, and the faster
/// rate also shortens the sender's start then (its first frame is dropped, the second
/// one is sent: one frame interval).
pub const SETTLE_AFTER_MS: i32 = 1000;

thread_local! {
    /// Fast-started camera tracks not yet sent, with the constraints to settle them to.
    static UNSETTLED: std::cell::RefCell<Vec<(MediaStreamTrack, JsValue)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// What to capture.
///
/// `audio_constraints` / `video_constraints` are `MediaTrackConstraints`
/// objects built by the caller (e.g. `{deviceId: {exact: id}}`, `{sampleRate: 48000}`).
/// Video constraints are merged over [`default_video_constraints`], key by
/// key, so passing only a `deviceId` keeps 640x480 @ 15 fps; audio
/// constraints are used as given (`true` when `None`).
#[derive(Debug, Clone, Default)]
pub struct CaptureRequest {
    /// Capture a microphone track.
    pub audio: bool,
    /// Capture a camera track.
    pub video: bool,
    /// `MediaTrackConstraints` for the microphone; `None` means `true`.
    pub audio_constraints: Option<JsValue>,
    /// `MediaTrackConstraints` for the camera, merged over the defaults.
    pub video_constraints: Option<JsValue>,
}

impl CaptureRequest {
    /// Microphone only (CallLib `RCCallMediaType.AUDIO`).
    pub fn audio_only() -> Self {
        CaptureRequest {
            audio: true,
            ..Default::default()
        }
    }

    /// Microphone and camera with the default camera profile
    /// (CallLib `RCCallMediaType.AUDIO_VIDEO`).
    pub fn audio_video() -> Self {
        CaptureRequest {
            audio: true,
            video: true,
            ..Default::default()
        }
    }

    /// Camera only, e.g. to re-capture the camera after it was switched off
    /// (CallLib `enableVideoTrack` uses the default profile again).
    pub fn video_only() -> Self {
        CaptureRequest {
            video: true,
            ..Default::default()
        }
    }
}

/// `{width: {ideal: 640}, height: {ideal: 480}, frameRate: {ideal: 15}}`.
///
/// `ideal`, not `exact`: a camera that cannot do 640x480 must still open
/// (the browser picks the closest mode) instead of failing the call.
pub fn default_video_constraints() -> JsValue {
    let obj = Object::new();
    set(&obj, "width", &ideal(DEFAULT_WIDTH));
    set(&obj, "height", &ideal(DEFAULT_HEIGHT));
    set(&obj, "frameRate", &ideal(DEFAULT_FRAME_RATE));
    obj.into()
}

fn ideal(v: u32) -> JsValue {
    let obj = Object::new();
    set(&obj, "ideal", &JsValue::from(v));
    obj.into()
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    // Reflect.set on a plain fresh object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// The `navigator.mediaDevices` object, or [`MediaError::Unsupported`] when
/// it is missing (no window, or an insecure context such as `about:blank` or
/// plain http on a non-localhost host).
pub(crate) fn media_devices() -> Result<MediaDevices, MediaError> {
    let window = web_sys::window()
        .ok_or_else(|| MediaError::Unsupported("there is no `window` object".into()))?;
    let navigator = window.navigator();
    let devices = Reflect::get(&navigator, &JsValue::from_str("mediaDevices"))
        .map_err(|e| MediaError::js("navigator.mediaDevices", &e))?;
    if devices.is_undefined() || devices.is_null() {
        return Err(MediaError::Unsupported(
            "navigator.mediaDevices is unavailable".into(),
        ));
    }
    Ok(devices.unchecked_into())
}

/// Captures the requested devices with `getUserMedia`.
///
/// Errors are classified ([`MediaError::Permission`], [`MediaError::NotFound`],
/// [`MediaError::NotReadable`], [`MediaError::Overconstrained`], ...); a request
/// for neither audio nor video is [`MediaError::InvalidArgument`].
/// Falling back to audio only when audio+video fails (CallLib's
/// `isAllowDemotionGetStream`) is the caller's decision: retry with
/// [`CaptureRequest::audio_only`].
pub async fn capture(req: &CaptureRequest) -> Result<LocalMedia, MediaError> {
    if !req.audio && !req.video {
        return Err(MediaError::InvalidArgument(
            "capture needs audio, video or both".into(),
        ));
    }
    let constraints = MediaStreamConstraints::new();
    let audio = match (req.audio, &req.audio_constraints) {
        (false, _) => JsValue::FALSE,
        (true, Some(c)) => c.clone(),
        (true, None) => JsValue::TRUE,
    };
    constraints.set_audio(&audio);
    let video = if req.video {
        let merged = Object::new();
        Object::assign(&merged, default_video_constraints().unchecked_ref());
        if let Some(c) = &req.video_constraints {
            if !c.is_object() {
                return Err(MediaError::InvalidArgument(
                    "video_constraints must be a MediaTrackConstraints object".into(),
                ));
            }
            Object::assign(&merged, c.unchecked_ref());
        }
        merged.into()
    } else {
        JsValue::FALSE
    };
    // Open fast, settle later (see FAST_START_FRAME_RATE).
    let settle_to = if req.video { fast_start(&video) } else { None };
    constraints.set_video(settle_to.as_ref().map_or(&video, |(fast, _)| fast));

    let promise = media_devices()?
        .get_user_media_with_constraints(&constraints)
        .map_err(|e| MediaError::from_capture(&e))?;
    let stream = JsFuture::from(promise)
        .await
        .map_err(|e| MediaError::from_capture(&e))?;
    let media = LocalMedia::from_stream(stream.unchecked_into());
    if let (Some((_, requested)), Some(track)) = (settle_to, media.video()) {
        UNSETTLED.with(|u| {
            let mut u = u.borrow_mut();
            // Tracks stopped before ever being sent (a call cancelled while ringing).
            u.retain(|(t, _)| t.ready_state() == web_sys::MediaStreamTrackState::Live);
            u.push((track, requested));
        });
    }
    Ok(media)
}

/// For video constraints whose frame rate is only an `ideal` below
/// [`FAST_START_FRAME_RATE`]: `(constraints to open with, constraints to settle to)`.
/// Constraints with `exact`/`max`/`min` frame rates are the app's own and used as given.
fn fast_start(video: &JsValue) -> Option<(JsValue, JsValue)> {
    let rate = Reflect::get(video, &JsValue::from_str("frameRate")).ok()?;
    let keys = Object::keys(rate.dyn_ref::<Object>()?);
    if keys.length() != 1 || keys.get(0).as_string().as_deref() != Some("ideal") {
        return None;
    }
    let ideal_rate = Reflect::get(&rate, &JsValue::from_str("ideal"))
        .ok()?
        .as_f64()?;
    if ideal_rate >= f64::from(FAST_START_FRAME_RATE) {
        return None;
    }
    let fast = Object::new();
    Object::assign(&fast, video.unchecked_ref());
    set(&fast, "frameRate", &ideal(FAST_START_FRAME_RATE));
    Some((fast.into(), Clone::clone(video)))
}

/// A track is being sent: if it was fast-started, settle it [`SETTLE_AFTER_MS`] from now.
pub(crate) fn settle_when_sending(track: &MediaStreamTrack) {
    let requested = UNSETTLED.with(|u| {
        let mut u = u.borrow_mut();
        let i = u.iter().position(|(t, _)| t == track)?;
        Some(u.swap_remove(i).1)
    });
    if let Some(requested) = requested {
        wasm_bindgen_futures::spawn_local(settle(Clone::clone(track), requested));
    }
}

/// After [`SETTLE_AFTER_MS`], brings a fast-started camera track to the requested
/// constraints; a track stopped meanwhile is left alone, and a refusal keeps the
/// fast rate (the call goes on either way).
async fn settle(track: MediaStreamTrack, requested: JsValue) {
    let sleep = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ =
                w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, SETTLE_AFTER_MS);
        }
    });
    let _ = JsFuture::from(sleep).await;
    if track.ready_state() != web_sys::MediaStreamTrackState::Live {
        return;
    }
    if let Ok(p) = track.apply_constraints_with_constraints(requested.unchecked_ref()) {
        let _ = JsFuture::from(p).await;
    }
}

/// Captured local media: one `MediaStream` holding at most one audio and one
/// video track.
///
/// Cheap to clone (it only holds a JS reference). The tracks are read from
/// the stream on each call, so a track added to or removed from the stream
/// (e.g. a re-captured camera) is seen by all clones.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    stream: MediaStream,
}

impl LocalMedia {
    /// Wraps an existing stream (e.g. one built by the SDK from re-captured tracks).
    pub fn from_stream(stream: MediaStream) -> Self {
        LocalMedia { stream }
    }

    /// The microphone track, if one was captured.
    pub fn audio(&self) -> Option<MediaStreamTrack> {
        self.tracks()
            .into_iter()
            .find(|t| track_kind(t) == Kind::Audio)
    }

    /// The camera track, if one was captured.
    pub fn video(&self) -> Option<MediaStreamTrack> {
        self.tracks()
            .into_iter()
            .find(|t| track_kind(t) == Kind::Video)
    }

    /// All tracks, audio first (CallLib's order for `[audioTrack, videoTrack]`).
    pub fn tracks(&self) -> Vec<MediaStreamTrack> {
        // A stable partition, not `sort_by_key`: the same order without 3.8 KB of sort code.
        let (mut tracks, rest): (Vec<MediaStreamTrack>, Vec<MediaStreamTrack>) = self
            .stream
            .get_tracks()
            .iter()
            .map(|t| t.unchecked_into::<MediaStreamTrack>())
            .partition(|t| track_kind(t) == Kind::Audio);
        tracks.extend(rest);
        tracks
    }

    /// The underlying stream. Peer connections send the tracks with this
    /// stream so the remote side receives them grouped (its `ev.streams[0]`).
    pub fn stream(&self) -> MediaStream {
        // Not `self.stream.clone()`: web-sys binds JS `MediaStream.clone()`
        // as an inherent `clone` method, which would copy the tracks.
        Clone::clone(&self.stream)
    }

    /// Stops every track: the camera light goes off and the tracks' `readyState`
    /// becomes `"ended"`. Senders keep sending nothing until replaced.
    pub fn stop(&self) {
        for t in self.tracks() {
            t.stop();
        }
    }
}
