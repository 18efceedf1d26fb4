//! The media side of the engine: what it asks the browser layer to do, and what it hears back.
//!
//! Media is peer-to-peer: one connection per remote participant device. Who offers is fixed by
//! the call flow, so offers never cross: a participant already in the call offers to each
//! device that rings (a pre-connected link: ICE and DTLS come up while it rings, nothing is
//! captured or sent) and to each device that accepts without such a link; the other side
//! answers. Accepting then only captures and attaches tracks.

use crate::proto::media_signal;

/// One remote participant device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub user_id: String,
    pub device_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Audio,
    Video,
}

/// Track id in RTCLib's scheme (spec D.2): `<userId>_RongCloudRTC_0` (audio) / `_1` (video).
pub fn track_id(user_id: &str, kind: TrackKind) -> String {
    let n = match kind {
        TrackKind::Audio => "0",
        TrackKind::Video => "1",
    };
    [user_id, "_", TRACK_TAG, "_", n].concat()
}

/// RTCLib's default tag, used for every call track.
pub const TRACK_TAG: &str = "RongCloudRTC";

/// How a peer connection's transport is doing (from the browser's `iceConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// `connected` / `completed`.
    Connected,
    /// `disconnected`: no answers to connectivity checks for a few seconds; may come back.
    Disconnected,
    /// `failed`: gone for good without an ICE restart (e.g. the network changed).
    Failed,
}

/// Why capturing local media failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    PermissionDenied,
    NotFound,
    Other,
}

/// What the engine asks the media layer to do.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaAction {
    /// Capture the microphone (and the camera for AUDIO_VIDEO); answer with [`MediaEvent::Captured`].
    Capture { call_id: String, video: bool },
    /// Stop and forget this call's local tracks.
    Release { call_id: String },
    /// Open a peer connection; the offerer sends the first offer. `video`: negotiate video too.
    /// With `attach` the call's local tracks go on it at once; without, it is pre-connected —
    /// transports up, nothing sent — until [`MediaAction::Attach`].
    Connect { call_id: String, peer: Peer, offerer: bool, attach: bool, video: bool },
    /// Put the call's local tracks on the pre-connected link to `peer` (all links if `None`),
    /// without renegotiating.
    Attach { call_id: String, peer: Option<Peer> },
    /// `peer` (every peer of the call if `None`) is about to start sending on its pre-connected
    /// link — we accepted, or it did: ask it for a video keyframe now (RTCP PLI), so its first
    /// frame decodes at once instead of after a request round trip and another frame.
    RequestKeyFrames { call_id: String, peer: Option<Peer> },
    /// The link to `peer` lost its transport: make a new offer with fresh ICE credentials
    /// (`restartIce`) and answer with [`MediaEvent::LocalSignal`]; the peer answers it as usual.
    /// Only the link's offerer is asked, so restart offers never cross.
    RestartIce { call_id: String, peer: Peer },
    /// Apply an SDP or candidate received from `peer`.
    Apply { call_id: String, peer: Peer, signal: media_signal::Kind },
    /// Close the connection to one peer.
    Disconnect { call_id: String, peer: Peer },
    /// Close every connection of the call (leave the "room").
    Leave { call_id: String },
    /// The call became audio-only, or the camera was switched off: stop and release the local
    /// camera and stop sending video.
    DropVideo { call_id: String },
    /// Capture a new camera track for the call (answer: [`MediaEvent::Captured`] with `[Video]`)
    /// and send it on every link once captured.
    CaptureCamera { call_id: String },
    /// Capture a new microphone track for the call (answer: [`MediaEvent::Captured`] with
    /// `[Audio]`), replacing the old one, which is stopped.
    CaptureMicrophone { call_id: String },
    /// Enable or disable (mute) a local track without releasing it.
    SetEnabled { call_id: String, kind: TrackKind, enabled: bool },
    /// The call `from` is now known as `into` (crossing calls merged): re-key local media.
    Rename { from: String, into: String },
    /// SFU mode (GROUP calls through the server's SFU): see [`super::SfuAction`].
    Sfu(super::SfuAction),
}

/// What the media layer reports.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// Answer to [`MediaAction::Capture`]: the kinds captured, or why it failed.
    Captured { call_id: String, result: Result<Vec<TrackKind>, CaptureError> },
    /// An SDP or ICE candidate produced locally for `peer`, to be signalled.
    LocalSignal { call_id: String, peer: Peer, signal: media_signal::Kind },
    /// `peer` started sending a track; the shell registered it under [`track_id`].
    RemoteTrack { call_id: String, peer: Peer, kind: TrackKind },
    /// The link to `peer` changed state (see [`MediaAction::RestartIce`]).
    LinkState { call_id: String, peer: Peer, state: LinkState },
    /// SFU mode: see [`super::SfuEvent`].
    Sfu(super::SfuEvent),
}
