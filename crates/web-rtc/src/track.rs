//! Track helpers and playback (`RCTrack.play(element?)`).
//!
//! CallLib's rule: audio may play without an element (RTCLib then uses an
//! internal `Audio` element), video needs a `<video>` element (else 53021).
//! [`play`] implements exactly that and returns a [`Playback`] handle to stop
//! it again.

use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    HtmlAudioElement, HtmlMediaElement, MediaStream, MediaStreamTrack, MediaStreamTrackState,
};

use crate::error::MediaError;

/// Media kind of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An audio track (`kind == "audio"`).
    Audio,
    /// A video track (`kind == "video"`).
    Video,
}

impl Kind {
    /// `"audio"` or `"video"`, as used by `MediaStreamTrack.kind` and `addTransceiver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// The kind of a track. `MediaStreamTrack.kind` is only ever `"audio"` or
/// `"video"`; anything that is not `"audio"` is reported as video.
pub fn track_kind(track: &MediaStreamTrack) -> Kind {
    if track.kind() == "audio" {
        Kind::Audio
    } else {
        Kind::Video
    }
}

/// Whether the track is still live (`readyState == "live"`): a stopped local
/// track or a remote track whose transceiver was stopped is not.
pub fn is_live(track: &MediaStreamTrack) -> bool {
    track.ready_state() == MediaStreamTrackState::Live
}

/// Mutes (`false`) or unmutes (`true`) a track in place: a disabled
/// microphone sends silence, a disabled camera sends black frames, and the
/// capture device stays open, so unmuting is instant and needs no
/// renegotiation. The remote side is not told (its track stays unmuted):
/// CallLib signals mute state itself. To release the camera instead, stop
/// the track and later [`attach`](crate::PeerLink::attach) a new capture.
pub fn set_enabled(track: &MediaStreamTrack, enabled: bool) {
    track.set_enabled(enabled);
}

/// Something that can be played: one track, or a whole stream.
///
/// Playing a [`Playable::Track`] puts exactly that track in a new
/// `MediaStream` on the element, so a remote user's video element does not
/// also play their audio (audio is played separately, CallLib-style).
/// Playing a [`Playable::Stream`] uses the stream as is (e.g. the remote
/// `ev.streams[0]` of [`PeerEvent::RemoteTrack`](crate::PeerEvent::RemoteTrack)).
#[derive(Debug, Clone)]
pub enum Playable {
    /// A single track.
    Track(MediaStreamTrack),
    /// A whole stream, all its tracks.
    Stream(MediaStream),
}

// `Clone::clone`, never `.clone()`, on streams and tracks: web-sys' inherent
// `clone` is JS `MediaStream.clone()` / `MediaStreamTrack.clone()`, which
// creates new objects (new ids, independent tracks).
impl From<MediaStreamTrack> for Playable {
    fn from(t: MediaStreamTrack) -> Self {
        Playable::Track(t)
    }
}
impl From<&MediaStreamTrack> for Playable {
    fn from(t: &MediaStreamTrack) -> Self {
        Playable::Track(Clone::clone(t))
    }
}
impl From<MediaStream> for Playable {
    fn from(s: MediaStream) -> Self {
        Playable::Stream(s)
    }
}
impl From<&MediaStream> for Playable {
    fn from(s: &MediaStream) -> Self {
        Playable::Stream(Clone::clone(s))
    }
}

impl Playable {
    fn has_video(&self) -> bool {
        match self {
            Playable::Track(t) => track_kind(t) == Kind::Video,
            Playable::Stream(s) => s.get_video_tracks().length() > 0,
        }
    }

    fn has_live_track(&self) -> bool {
        match self {
            Playable::Track(t) => is_live(t),
            Playable::Stream(s) => s.get_tracks().iter().any(|t| is_live(t.unchecked_ref())),
        }
    }

    fn into_stream(self) -> Result<MediaStream, MediaError> {
        match self {
            Playable::Stream(s) => Ok(s),
            Playable::Track(t) => MediaStream::new_with_tracks(&Array::of1(&t))
                .map_err(|e| MediaError::js("new MediaStream", &e)),
        }
    }
}

/// Options of [`play_with`] (RCTrack.play's `{volume, audioDeviceId}`).
#[derive(Debug, Clone, Default)]
pub struct PlayOptions {
    /// Volume 0–100 (CallLib scale); `None` leaves the element's volume.
    /// Above 100 is [`MediaError::InvalidArgument`].
    pub volume: Option<u8>,
    /// Output device (`setSinkId`), a `deviceId` of an
    /// [`AudioOutput`](crate::DeviceKind::AudioOutput) device.
    pub audio_output_device_id: Option<String>,
}

/// A started playback: the element now shows/plays the media.
///
/// Dropping the handle does not stop playback (like the JS API, where play is
/// fire-and-forget, and the browser keeps a playing element alive); call
/// [`Playback::stop`]. Keep the handle of an internal audio element if the
/// audio must be stoppable before the track ends.
#[derive(Debug, Clone)]
pub struct Playback {
    element: HtmlMediaElement,
    stream: MediaStream,
    internal: bool,
}

impl Playback {
    /// The element playing the media (the caller's, or the internal `Audio`).
    pub fn element(&self) -> &HtmlMediaElement {
        &self.element
    }

    /// The `MediaStream` set as the element's `srcObject`.
    pub fn stream(&self) -> &MediaStream {
        &self.stream
    }

    /// Whether the element is an internal `Audio` element created by [`play`].
    pub fn is_internal(&self) -> bool {
        self.internal
    }

    /// Sets the volume, 0–100.
    pub fn set_volume(&self, volume: u8) -> Result<(), MediaError> {
        set_volume(&self.element, volume)
    }

    /// Pauses and detaches the media from the element. If the element has
    /// meanwhile been given another `srcObject` (a later `play` on the same
    /// element), that newer playback is left alone.
    pub fn stop(&self) {
        let ours = self
            .element
            .src_object()
            .map(|s| s == self.stream)
            .unwrap_or(false);
        if ours {
            let _ = self.element.pause();
            self.element.set_src_object(None);
        }
    }
}

/// Plays a track or stream with default options; see [`play_with`].
pub async fn play(
    what: impl Into<Playable>,
    element: Option<&HtmlMediaElement>,
) -> Result<Playback, MediaError> {
    play_with(what, element, &PlayOptions::default()).await
}

/// Plays a track or a stream, into `element` or (audio only) into an internal
/// `Audio` element.
///
/// * Video without an element → [`MediaError::MissingElement`] (RCRTC 53021).
/// * No live track → [`MediaError::InvalidArgument`] (the SDK's "not ready", 53020).
/// * Autoplay refusal → [`MediaError::PlaybackBlocked`]; other `play()` failures
///   → [`MediaError::Js`] (53022).
///
/// Resolves when `HTMLMediaElement.play()` resolves, i.e. once media flows:
/// for a remote track whose connection is not up yet, this waits for it.
/// Do not play the local audio track (echo); mute a `<video>` showing local
/// media if you pass a whole local stream.
pub async fn play_with(
    what: impl Into<Playable>,
    element: Option<&HtmlMediaElement>,
    options: &PlayOptions,
) -> Result<Playback, MediaError> {
    let what = what.into();
    if let Some(v) = options.volume {
        if v > 100 {
            return Err(bad_volume(v));
        }
    }
    if !what.has_live_track() {
        return Err(MediaError::InvalidArgument(
            "nothing to play: the track/stream has no live track".into(),
        ));
    }
    let (element, internal) = match element {
        Some(el) => (el.clone(), false),
        None if what.has_video() => return Err(MediaError::MissingElement),
        None => {
            let audio = HtmlAudioElement::new().map_err(|e| MediaError::js("new Audio", &e))?;
            (audio.unchecked_into::<HtmlMediaElement>(), true)
        }
    };
    let stream = what.into_stream()?;
    element.set_autoplay(true);
    // iOS Safari plays inline only with this attribute; harmless elsewhere.
    let _ = element.set_attribute("playsinline", "");
    if let Some(v) = options.volume {
        set_volume(&element, v)?;
    }
    if let Some(sink) = &options.audio_output_device_id {
        set_sink_id(&element, sink).await?;
    }
    element.set_src_object(Some(&stream));
    let playback = Playback {
        element,
        stream,
        internal,
    };
    let started = match playback.element.play() {
        Ok(p) => JsFuture::from(p).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        playback.stop();
        return Err(MediaError::from_play(&e));
    }
    Ok(playback)
}

/// The error for a volume above 100.
fn bad_volume(volume: u8) -> MediaError {
    MediaError::InvalidArgument(
        [
            "volume must be 0..=100, got ",
            &crate::sdp::decimal(volume.into()),
        ]
        .concat(),
    )
}

fn set_volume(element: &HtmlMediaElement, volume: u8) -> Result<(), MediaError> {
    if volume > 100 {
        return Err(bad_volume(volume));
    }
    element.set_volume(f64::from(volume) / 100.0);
    Ok(())
}

/// `element.setSinkId(id)` through Reflect: the API is not in every browser
/// (and not in web-sys' stable set).
async fn set_sink_id(element: &HtmlMediaElement, id: &str) -> Result<(), MediaError> {
    let f = Reflect::get(element, &JsValue::from_str("setSinkId"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or_else(|| {
            MediaError::Unsupported(
                "HTMLMediaElement.setSinkId (audio output selection) is unavailable".into(),
            )
        })?;
    let p = f
        .call1(element, &JsValue::from_str(id))
        .map_err(|e| MediaError::js("setSinkId", &e))?;
    let p: Promise = p.unchecked_into();
    JsFuture::from(p)
        .await
        .map_err(|e| match crate::error::name_and_message(&e) {
            (n, m) if n == "NotFoundError" => MediaError::InvalidArgument(
                ["unknown audio output device \"", id, "\": ", &m].concat(),
            ),
            _ => MediaError::js("setSinkId", &e),
        })?;
    Ok(())
}

/// Detaches whatever plays in `element` (pause + `srcObject = null`), e.g.
/// when the SDK tears down a remote user's view without a [`Playback`] handle.
pub fn detach(element: &HtmlMediaElement) {
    let _ = element.pause();
    element.set_src_object(None);
}
