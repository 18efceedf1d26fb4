//! # web-rtc: rcall's browser media layer
//!
//! rcall re-implements RongCloud's Web CallLib 5.X in Rust compiled to
//! WebAssembly. The crates split the work like this:
//!
//! * `rtc-core` — the call engine, sans-IO: it decides *what* happens
//!   (capture now, connect to user X as offerer, apply this remote SDP or
//!   candidate, close).
//! * **`web-rtc` (this crate)** — *does* it in the browser, as a thin typed
//!   shell over `web-sys`: `getUserMedia`, one `RTCPeerConnection` per remote
//!   participant (media peer to peer) or, in a group call through the SFU, one
//!   publishing and one receiving connection to it, and playing tracks into
//!   media elements. It holds no call logic and no signalling.
//! * `rcall-sdk` — the wasm-bindgen surface (`RCCallClient`, `RCTrack`, ...)
//!   that glues the two together and maps [`MediaError`]s to CallLib codes.
//!
//! Modules, one concept each:
//!
//! * [`capture`](mod@capture) — [`capture()`] a [`LocalMedia`] (defaults 640x480 @ 15 fps).
//! * [`devices`] — [`enumerate_devices`], [`cameras`] / [`microphones`] /
//!   [`speakers`], [`watch_devices`] for `devicechange`.
//! * [`peer`] — [`PeerLink`]: offer/answer, trickle ICE with queueing of
//!   early candidates, remote tracks as [`PeerEvent`]s, `close()` without
//!   leaks; [`PeerLink::prepare`] / [`PeerLink::attach`] to connect before
//!   anything is captured; `replace_track` for device switches.
//! * [`sdp`] — edits to remote descriptions (the video start bitrate).
//! * [`simulcast`] — the video layers of a group call's publishing connection to the SFU
//!   ([`PeerLink::add_sender`]); its receiving connection maps tracks to `mid`s
//!   ([`PeerLink::receiver_track`]).
//! * [`caps`] — [`VideoCaps`]: per-peer video limits for larger group calls.
//! * [`track`] — [`track_kind`], [`set_enabled`], [`play`] / [`Playback`]
//!   (audio may use an internal `Audio` element, video needs a `<video>`).
//! * [`stats`] — [`StatsSampler`] → [`StateReport`] (CallLib's
//!   `IRCRTCStateReport`), selected candidate pair, inbound video counters.
//! * [`warmup`] — video encoders warmed while a call rings (gated senders, keyframe requests),
//!   so the first frame after `accept()` decodes at once.
//! * [`error`] — the single error type [`MediaError`].
//!
//! Everything here is `!Send` and single-threaded, like the browser APIs it
//! wraps. The crate compiles on native targets (so `cargo test --workspace`
//! on the host builds it), but its functions only work in a browser.
//!
//! ## Gotcha: never `.clone()` a `MediaStream` or `MediaStreamTrack`
//! web-sys binds JS `MediaStream.clone()` / `MediaStreamTrack.clone()` as
//! *inherent* methods named `clone`, and they win over `Clone::clone`. So
//! `track.clone()` creates a **new, independent track** (new id; `stop()` or
//! `enabled = false` on the original does not affect it, and a cloned camera
//! track keeps the camera on). Write `Clone::clone(&track)` (or derive
//! `Clone` on a struct holding it) to copy the JS reference.
//!
//! ## Call flow with a pre-connected link (what the SDK does)
//! 1. Ringing: `PeerLink::new`, [`PeerLink::prepare`]`(&[Audio, Video])` on
//!    both sides, offer/answer and candidates as usual. ICE/DTLS come up,
//!    nothing is captured or sent; each side already gets
//!    [`PeerEvent::RemoteTrack`] (muted tracks).
//! 2. Accept: [`capture()`], then [`PeerLink::attach`] per track on every link
//!    (a side that captured before negotiating may attach right after
//!    `prepare`: the track waits for its sender). [`PeerEvent::RemoteTrackUnmuted`]
//!    marks when the peer's media arrives.
//! 3. During the call: [`set_enabled`] for mute, [`PeerLink::replace_track`]
//!    for a new microphone or a re-captured camera (`None` for camera off),
//!    a [`StatsSampler`] per link sampled every second for `onRTCStateReport`,
//!    a [`DeviceWatch`] for device changes.
//!
//! ## Testing
//! `tests/web.rs` and `tests/call_media.rs` (helpers in `tests/common`) run
//! in headless Chromium via `wasm-bindgen-test-runner`
//! with fake devices (see `webdriver.json`). Two links in one page connect
//! over loopback, which Chromium only allows with
//! `--allow-loopback-in-peer-connection`; run under `unshare -n` so nothing
//! leaves 127.0.0.1.

#![warn(missing_docs)]

pub mod caps;
pub mod capture;
pub mod devices;
pub mod error;
pub mod peer;
pub mod sdp;
pub mod simulcast;
pub mod stats;
pub mod track;
pub mod warmup;

pub use caps::VideoCaps;
pub use capture::{capture, default_video_constraints, CaptureRequest, LocalMedia};
pub use devices::{
    cameras, enumerate_devices, microphones, speakers, watch_devices, DeviceInfo, DeviceKind,
    DeviceWatch,
};
pub use error::MediaError;
pub use peer::{Candidate, IceServer, PeerConfig, PeerEvent, PeerLink};
pub use stats::{
    CandidatePair, CandidatePairStat, InboundVideo, StateReport, StatsSampler, TrackStat,
};
pub use track::{
    detach, is_live, play, play_with, set_enabled, track_kind, Kind, PlayOptions, Playable,
    Playback,
};

/// Re-exported so users of this crate name the same web-sys types.
pub use web_sys::{
    HtmlMediaElement, MediaStream, MediaStreamTrack, RtcIceConnectionState, RtcPeerConnectionState,
};
