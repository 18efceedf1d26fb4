//! The one error type of this crate.
//!
//! Browser media APIs fail with `DOMException`s (and, for constraints, an
//! `OverconstrainedError`) whose `name` says what went wrong. [`MediaError`]
//! keeps that name and message, but sorts the cases the SDK must tell apart
//! (permission refused vs. no device vs. device busy vs. impossible
//! constraints vs. autoplay blocked) into their own variants, so the SDK can
//! map them to CallLib / RCRTC codes without string matching:
//!
//! | variant | typical RCRTC code |
//! |---|---|
//! | [`MediaError::Permission`] (from capture) | 53012 `PERMISSION_DENIED` |
//! | other capture failures | 53010 `GET_USER_MEDIA_FAILED` |
//! | [`MediaError::MissingElement`] | 53021 `VIDEO_TRACK_MISS_MEDIA_ELEMENT` |
//! | [`MediaError::InvalidArgument`] | 50001 `PARAMS_ERROR` |
//! | [`MediaError::PlaybackBlocked`] / other `play` failures | 53022 `TRACK_PLAY_ERROR` |
//!
//! (The mapping itself belongs to the SDK; the table only explains why the
//! variants are split this way.)

use wasm_bindgen::JsValue;

/// Everything that can go wrong in capture, peer connection handling and
/// playback. Every variant carries enough text to be logged as is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaError {
    /// The user or the browser refused camera/microphone access
    /// (`NotAllowedError`, `SecurityError`).
    Permission {
        /// The DOMException name (`NotAllowedError` or `SecurityError`).
        name: String,
        /// The browser's message.
        message: String,
    },

    /// No capture device of the requested kind exists (`NotFoundError`).
    NotFound {
        /// The browser's message.
        message: String,
    },

    /// A device exists but could not be started (`NotReadableError`,
    /// `AbortError`), usually because another application holds it.
    NotReadable {
        /// The DOMException name.
        name: String,
        /// The browser's message.
        message: String,
    },

    /// No device can satisfy a required (`exact`/`min`/`max`) constraint
    /// (`OverconstrainedError`).
    Overconstrained {
        /// The constraint the browser names (e.g. `deviceId`, `width`); may be empty.
        constraint: String,
        /// The browser's message.
        message: String,
    },

    /// The environment lacks the API (no `window`, no `navigator.mediaDevices`
    /// because the page is not a secure context, no `RTCPeerConnection`).
    Unsupported(String),

    /// The caller passed something unusable (e.g. a volume above 100, a
    /// capture request with neither audio nor video).
    InvalidArgument(String),

    /// The [`PeerLink`](crate::PeerLink) was closed (or closed while the
    /// operation was in flight).
    Closed,

    /// A video track (or a stream with video) was asked to play without a
    /// media element. Audio can play through an internal element, video cannot.
    MissingElement,

    /// `HTMLMediaElement.play()` was refused by the autoplay policy
    /// (`NotAllowedError`).
    PlaybackBlocked {
        /// The browser's message.
        message: String,
    },

    /// Any other JavaScript failure, with the operation that failed.
    Js {
        /// The API call that failed, e.g. `setRemoteDescription(offer)`.
        op: &'static str,
        /// The exception name (`InvalidStateError`, `TypeError`, ...).
        name: String,
        /// The exception message.
        message: String,
    },
}

impl MediaError {
    /// The text to log. Built by concatenation, not `core::fmt`: the SDK's wasm ships no
    /// formatting code (BENCHMARKS.md "SDK size"); `Display` writes the same text.
    pub fn message(&self) -> String {
        match self {
            MediaError::Permission { name, message } => [
                "camera/microphone access was denied (",
                name,
                ": ",
                message,
                "); let the user allow it in the browser prompt or the site settings, and serve \
                 the page over https or from localhost",
            ]
            .concat(),
            MediaError::NotFound { message } => [
                "no camera/microphone matches the request (",
                message,
                "); check that a device is connected and enabled, or capture audio only",
            ]
            .concat(),
            MediaError::NotReadable { name, message } => [
                "the camera/microphone could not be started (",
                name,
                ": ",
                message,
                "); another application or tab may be using it: close it and retry",
            ]
            .concat(),
            MediaError::Overconstrained {
                constraint,
                message,
            } => [
                "no device satisfies the `",
                constraint,
                "` constraint (",
                message,
                "); relax it (use `ideal` instead of `exact`) or pick a deviceId returned by \
                 enumerate_devices()",
            ]
            .concat(),
            MediaError::Unsupported(what) => [
                what,
                "; WebRTC needs a browser window and a secure context (https or http://localhost)",
            ]
            .concat(),
            MediaError::InvalidArgument(what) => ["invalid argument: ", what].concat(),
            MediaError::Closed => {
                "the peer connection is closed; create a new PeerLink for a new connection".into()
            }
            MediaError::MissingElement => {
                "a video track needs a <video> element to play into; pass one to play()".into()
            }
            MediaError::PlaybackBlocked { message } => [
                "the browser refused to start playback (",
                message,
                "); playing sound needs a prior user gesture (e.g. a click) on the page, an \
                 active capture, or a muted element",
            ]
            .concat(),
            MediaError::Js { op, name, message } => {
                [op, " failed with ", name, ": ", message].concat()
            }
        }
    }

    /// Wraps any JS exception / promise rejection from `op`.
    pub fn js(op: &'static str, err: &JsValue) -> Self {
        let (name, message) = name_and_message(err);
        MediaError::Js { op, name, message }
    }

    /// Classifies a `getUserMedia` rejection.
    pub fn from_capture(err: &JsValue) -> Self {
        let (name, message) = name_and_message(err);
        match name.as_str() {
            "NotAllowedError" | "SecurityError" | "PermissionDeniedError" => {
                MediaError::Permission { name, message }
            }
            "NotFoundError" | "DevicesNotFoundError" => MediaError::NotFound { message },
            "NotReadableError" | "TrackStartError" | "AbortError" => {
                MediaError::NotReadable { name, message }
            }
            "OverconstrainedError" | "ConstraintNotSatisfiedError" => {
                let constraint = js_sys::Reflect::get(err, &JsValue::from_str("constraint"))
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default();
                MediaError::Overconstrained {
                    constraint,
                    message,
                }
            }
            "TypeError" => MediaError::InvalidArgument(message),
            _ => MediaError::Js {
                op: "getUserMedia",
                name,
                message,
            },
        }
    }

    /// Classifies an `HTMLMediaElement.play()` rejection.
    pub fn from_play(err: &JsValue) -> Self {
        let (name, message) = name_and_message(err);
        match name.as_str() {
            "NotAllowedError" => MediaError::PlaybackBlocked { message },
            _ => MediaError::Js {
                op: "HTMLMediaElement.play",
                name,
                message,
            },
        }
    }

    /// The JS exception name behind this error, when there is one
    /// (e.g. `"NotAllowedError"`); handy for logs and for the SDK's code mapping.
    pub fn js_name(&self) -> Option<&str> {
        match self {
            MediaError::Permission { name, .. }
            | MediaError::NotReadable { name, .. }
            | MediaError::Js { name, .. } => Some(name),
            MediaError::NotFound { .. } => Some("NotFoundError"),
            MediaError::Overconstrained { .. } => Some("OverconstrainedError"),
            MediaError::PlaybackBlocked { .. } => Some("NotAllowedError"),
            _ => None,
        }
    }
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for MediaError {}

/// Reads `name` and `message` off an Error / DOMException / OverconstrainedError,
/// falling back to the value's string form for thrown non-errors.
pub(crate) fn name_and_message(err: &JsValue) -> (String, String) {
    if let Some(s) = err.as_string() {
        return ("Error".to_owned(), s);
    }
    let get = |key: &str| {
        js_sys::Reflect::get(err, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_string())
    };
    let name = get("name").unwrap_or_else(|| "Error".to_owned());
    // JSON, not `{:?}`: the wasm build has no Debug formatting (-Zfmt-debug=none, npm/build.sh).
    let message = get("message")
        .or_else(|| {
            js_sys::JSON::stringify(err)
                .ok()
                .and_then(|s| s.as_string())
        })
        .unwrap_or_else(|| "a thrown value that is not an Error".to_owned());
    (name, message)
}
