//! One `RTCPeerConnection` to one remote participant.
//!
//! The call engine (rtc-core) decides the negotiation: who offers, when an
//! SDP or candidate from the signalling channel is applied, when to close.
//! [`PeerLink`] only performs those steps and reports what the browser does
//! ([`PeerEvent`]). It adds the one piece of state the engine should not need
//! to know about: remote ICE candidates that arrive before the remote
//! description are queued and applied right after it is set.
//!
//! ## Pre-connected links
//! CallLib connects only after the callee accepts; rcall connects while the
//! callee is still ringing so that accepting only has to capture. For that,
//! [`PeerLink::prepare`] declares the kinds the call will send before
//! negotiating: the offer/answer then carries `sendrecv` audio/video
//! sections without any track, ICE and DTLS come up, and nothing is sent.
//! [`PeerLink::attach`] later puts a captured track on the negotiated sender
//! (`replaceTrack`, no renegotiation). The remote side gets
//! [`PeerEvent::RemoteTrack`] at negotiation time, long before media flows;
//! [`PeerEvent::RemoteTrackUnmuted`] tells when packets actually arrive. Meanwhile the video
//! encoder is warmed up behind a closed gate ([`crate::warmup`]), and
//! [`PeerLink::request_key_frames`] asks the peer for a keyframe when it is about to start.
//! [`PeerLink::restart_ice`] renews a link whose transport was lost; [`PeerLink::set_video_caps`]
//! limits what the video sender sends in larger groups.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MediaStream, MediaStreamTrack, RtcConfiguration, RtcIceCandidateInit,
    RtcIceConnectionState, RtcIceServer, RtcIceTransportPolicy, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcRtpSender, RtcRtpTransceiver,
    RtcRtpTransceiverDirection, RtcRtpTransceiverInit, RtcSdpType, RtcSessionDescriptionInit,
    RtcSignalingState, RtcTrackEvent,
};

use crate::caps::VideoCaps;
use crate::capture::LocalMedia;
use crate::error::MediaError;
use crate::track::{track_kind, Kind};
use crate::warmup::{Primer, ReceiverTap, SenderGate};

// Throwing variants of methods web-sys binds without `catch`: on a closed
// connection they throw `InvalidStateError`, which must become an `Err`, not
// an exception unwinding through wasm.
#[wasm_bindgen]
extern "C" {
    /// The same JS `RTCPeerConnection`, seen through a local type so the
    /// throwing methods can be bound with `catch`.
    #[wasm_bindgen(js_name = RTCPeerConnection)]
    type PcChecked;

    #[wasm_bindgen(method, catch, js_name = addTrack)]
    fn add_track(
        this: &PcChecked,
        track: &MediaStreamTrack,
        stream: &MediaStream,
    ) -> Result<RtcRtpSender, JsValue>;

    #[wasm_bindgen(method, catch, js_name = addTransceiver)]
    fn add_track_transceiver(
        this: &PcChecked,
        track: &MediaStreamTrack,
        init: &RtcRtpTransceiverInit,
    ) -> Result<RtcRtpTransceiver, JsValue>;

    #[wasm_bindgen(method, catch, js_name = addTransceiver)]
    fn add_transceiver(
        this: &PcChecked,
        kind: &str,
        init: &RtcRtpTransceiverInit,
    ) -> Result<RtcRtpTransceiver, JsValue>;

    /// `RTCRtpSender` with `setStreams`, which web-sys does not bind.
    #[wasm_bindgen(js_name = RTCRtpSender)]
    type SenderExt;

    #[wasm_bindgen(method, catch, js_name = setStreams)]
    fn set_streams(this: &SenderExt, stream: &MediaStream) -> Result<(), JsValue>;
}

/// One STUN/TURN server (`RTCIceServer`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: Vec<String>,
    /// TURN username (REST scheme: `expiry:name`).
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

/// Configuration of a [`PeerLink`]. `Default` is no ICE servers (host
/// candidates only: enough on a LAN or loopback) and all candidate types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerConfig {
    /// STUN/TURN servers, decided by the SDK / server.
    pub ice_servers: Vec<IceServer>,
    /// `iceTransportPolicy: "relay"`: only TURN-relayed candidates are used
    /// (hides the client's addresses from the peer).
    pub ice_transport_policy_relay: bool,
}

/// An ICE candidate as carried by signalling (`RTCIceCandidateInit`).
///
/// An empty `candidate` string is the end-of-candidates marker; it may be
/// passed to [`PeerLink::add_remote_candidate`] as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The `candidate:...` attribute line (without `a=`).
    pub candidate: String,
    /// The media section id (`a=mid`) the candidate belongs to.
    pub sdp_mid: Option<String>,
    /// The media section index the candidate belongs to.
    pub sdp_m_line_index: Option<u16>,
}

impl Candidate {
    fn to_init(&self) -> RtcIceCandidateInit {
        let init = RtcIceCandidateInit::new(&self.candidate);
        init.set_sdp_mid(self.sdp_mid.as_deref());
        init.set_sdp_m_line_index(self.sdp_m_line_index);
        init
    }
}

/// What the browser reports about a connection. Delivered to the callback
/// given to [`PeerLink::new`], never after [`PeerLink::close`].
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// A local candidate to send to the remote side (trickle ICE).
    LocalCandidate(Candidate),
    /// Local gathering finished (`onicecandidate` with a null candidate).
    /// Forwarding it is optional.
    LocalCandidatesComplete,
    /// A remote track arrived. `stream` is the remote sender's stream
    /// (`ev.streams[0]`), which groups the remote user's audio and video; use
    /// it (or the track alone, see [`play`](crate::play)) as `srcObject`.
    /// If the remote side sent the track without a stream, `stream` is a new
    /// stream holding just this track.
    ///
    /// This fires when the remote description is applied, i.e. when the
    /// remote side *may* send, not when media flows: the track starts
    /// `muted`. Media has started once [`PeerEvent::RemoteTrackUnmuted`]
    /// arrives for it (or if `track.muted()` is already `false`). That matters
    /// for [prepared](PeerLink::prepare) links, where the remote side attaches
    /// its tracks much later.
    ///
    /// Reported once per track: when a renegotiation makes the browser fire
    /// `track` again for a track it already reported (the remote side
    /// resumed sending), only [`PeerEvent::RemoteTrackUnmuted`] follows.
    RemoteTrack {
        /// The remote track.
        track: MediaStreamTrack,
        /// The remote stream the track belongs to.
        stream: MediaStream,
    },
    /// A remote track (one announced by [`PeerEvent::RemoteTrack`]) started
    /// receiving media: its `unmute` event, fired by the browser on the first
    /// RTP packet. This is the moment a remote track becomes playable
    /// (CallLib's `onTrackReady` for remote tracks).
    RemoteTrackUnmuted {
        /// The remote track, the same object as in `RemoteTrack`.
        track: MediaStreamTrack,
    },
    /// A remote track stopped receiving media (its `mute` event). Chromium
    /// fires it when a renegotiation stops the remote sender (direction
    /// `recvonly`/`inactive`), but not when the remote side merely replaces
    /// its track with none, nor within seconds of the remote side closing:
    /// it is no "camera off" or "peer gone" signal (CallLib signals those).
    RemoteTrackMuted {
        /// The remote track.
        track: MediaStreamTrack,
    },
    /// `iceConnectionState` changed.
    IceConnectionState(RtcIceConnectionState),
    /// `connectionState` changed (`connected` = media can flow; `failed` =
    /// give up or restart; `disconnected` may recover by itself).
    ConnectionState(RtcPeerConnectionState),
    /// A queued remote candidate (one that arrived before the remote
    /// description) was rejected when it was finally applied. Candidates
    /// applied directly report their error from
    /// [`PeerLink::add_remote_candidate`] instead.
    RemoteCandidateRejected {
        /// The rejected candidate.
        candidate: Candidate,
        /// Why the browser rejected it.
        error: MediaError,
    },
}

type Sink = Box<dyn FnMut(PeerEvent)>;

/// State shared between the link and its JS event closures. The closures
/// must not own the link (that would be a cycle), so they only see this.
struct Shared {
    closed: Cell<bool>,
    sink: RefCell<Option<Sink>>,
    /// `mute`/`unmute` listeners on remote tracks, removed on close.
    track_listeners: RefCell<Vec<TrackListener>>,
    /// Keyframe-request taps on the video receivers (see [`crate::warmup`]).
    taps: RefCell<Vec<ReceiverTap>>,
    /// Whether the video sender gets a warm-up gate when the first negotiation makes it:
    /// prepared for video, nothing attached before.
    want_gate: Cell<bool>,
    /// The video sender's warm-up gate (see [`crate::warmup`]); opened by the first
    /// [`PeerLink::attach`] of video.
    video_gate: RefCell<Option<SenderGate>>,
}

/// The `mute` and `unmute` listeners installed on one remote track.
struct TrackListener {
    track: MediaStreamTrack,
    on_mute: Closure<dyn FnMut(Event)>,
    on_unmute: Closure<dyn FnMut(Event)>,
}

impl TrackListener {
    /// Listens to `track`'s mute/unmute and reports them through `shared`.
    /// The closures hold only a `Weak`: `Shared` owns them, and a strong
    /// reference back would be a cycle.
    fn install(shared: &Rc<Shared>, track: &MediaStreamTrack) -> TrackListener {
        let make = |unmuted: bool| {
            let weak = Rc::downgrade(shared);
            let t = Clone::clone(track);
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                if let Some(s) = weak.upgrade() {
                    let track = Clone::clone(&t);
                    s.emit(if unmuted {
                        PeerEvent::RemoteTrackUnmuted { track }
                    } else {
                        PeerEvent::RemoteTrackMuted { track }
                    });
                }
            })
        };
        let on_mute = make(false);
        let on_unmute = make(true);
        let _ = track.add_event_listener_with_callback("mute", on_mute.as_ref().unchecked_ref());
        let _ =
            track.add_event_listener_with_callback("unmute", on_unmute.as_ref().unchecked_ref());
        TrackListener {
            track: Clone::clone(track),
            on_mute,
            on_unmute,
        }
    }

    fn remove(&self) {
        let t = &self.track;
        let _ =
            t.remove_event_listener_with_callback("mute", self.on_mute.as_ref().unchecked_ref());
        let _ = t
            .remove_event_listener_with_callback("unmute", self.on_unmute.as_ref().unchecked_ref());
    }
}

impl Shared {
    /// Gates `sender` for the warm-up, once, if wanted. Must run before the description that
    /// creates the sender is applied: Chromium settles a sender's transform when
    /// setRemoteDescription / setLocalDescription completes (none then: never), and an ignored
    /// gate would let the blank frames through.
    fn gate_video_sender(&self, sender: &RtcRtpSender) {
        if self.want_gate.replace(false) {
            if let Some(gate) = SenderGate::install(sender) {
                *self.video_gate.borrow_mut() = Some(gate);
            }
        }
    }

    /// Calls the user callback unless closed. The callback is taken out of
    /// its cell while it runs, so it may call any `PeerLink` method
    /// (including `close`, which then drops it) without a `RefCell` panic.
    fn emit(&self, ev: PeerEvent) {
        if self.closed.get() {
            return;
        }
        let taken = self.sink.borrow_mut().take();
        if let Some(mut f) = taken {
            f(ev);
            if !self.closed.get() {
                let mut slot = self.sink.borrow_mut();
                if slot.is_none() {
                    *slot = Some(f);
                }
            }
        }
    }
}

/// The JS event handlers installed on the connection. Owned by the link and
/// dropped on close: no `Closure::forget`.
struct Handlers {
    _ice: Closure<dyn FnMut(RtcPeerConnectionIceEvent)>,
    _track: Closure<dyn FnMut(RtcTrackEvent)>,
    _ice_state: Closure<dyn FnMut(Event)>,
    _conn_state: Closure<dyn FnMut(Event)>,
}

struct Inner {
    pc: RtcPeerConnection,
    shared: Rc<Shared>,
    handlers: RefCell<Option<Handlers>>,
    /// Remote candidates waiting for the remote description.
    pending: RefCell<Vec<Candidate>>,
    /// Set once a remote description has been applied successfully.
    remote_described: Cell<bool>,
    /// Kinds declared by [`PeerLink::prepare`], audio first.
    prepared: RefCell<Vec<Kind>>,
    /// The stream prepared senders are associated with, so the remote side
    /// gets audio and video grouped in one `ev.streams[0]`.
    prepared_stream: RefCell<Option<MediaStream>>,
    /// Tracks given to [`PeerLink::attach`] before the first negotiation
    /// created their senders; put on the senders by that negotiation.
    pending_attach: RefCell<Vec<(Kind, MediaStreamTrack)>>,
    /// Set once the first negotiation created/opened the prepared senders.
    prepared_applied: Cell<bool>,
    /// The blank track the gated video sender warms up on, until warm or attached.
    primer: RefCell<Option<Primer>>,
    /// Limits for the video sender, applied again after each negotiation.
    video_caps: Cell<VideoCaps>,
}

impl Inner {
    fn close(&self) {
        if self.shared.closed.replace(true) {
            return;
        }
        let pc = &self.pc;
        pc.set_onicecandidate(None);
        pc.set_ontrack(None);
        pc.set_oniceconnectionstatechange(None);
        pc.set_onconnectionstatechange(None);
        pc.close();
        // Handlers are detached above, so JS can no longer call the closures;
        // if one is running right now (close called from the callback),
        // wasm-bindgen defers freeing it until it returns.
        drop(self.handlers.borrow_mut().take());
        let listeners = match self.shared.track_listeners.try_borrow_mut() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => Vec::new(),
        };
        for l in &listeners {
            l.remove();
        }
        drop(listeners);
        // Drop the callback too: it may hold a clone of this link (a cycle).
        if let Ok(mut sink) = self.shared.sink.try_borrow_mut() {
            sink.take();
        }
        self.pending.borrow_mut().clear();
        self.pending_attach.borrow_mut().clear();
        drop(self.primer.borrow_mut().take());
        if let Ok(mut gate) = self.shared.video_gate.try_borrow_mut() {
            gate.take();
        }
        if let Ok(mut taps) = self.shared.taps.try_borrow_mut() {
            taps.clear();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// A handle to one peer connection.
///
/// Cloning is cheap and every clone refers to the same connection (an `Rc`
/// inside), so the SDK can keep one in its per-user map and move clones into
/// async tasks. The connection is closed by [`PeerLink::close`] or when the
/// last handle is dropped. Single-threaded, like everything in the browser.
#[derive(Clone)]
pub struct PeerLink {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("closed", &self.inner.shared.closed.get())
            .field("remote_described", &self.inner.remote_described.get())
            .field("pending_candidates", &self.inner.pending.borrow().len())
            .finish()
    }
}

impl PeerLink {
    /// Creates the `RTCPeerConnection` and installs its event handlers.
    ///
    /// `on_event` receives every [`PeerEvent`] until [`close`](Self::close).
    /// It may call methods of this link (it is not called re-entrantly).
    /// Fails with [`MediaError::Js`] for an unusable configuration (e.g. a
    /// malformed URL `SyntaxError`, or a TURN server without credentials
    /// `InvalidAccessError`).
    ///
    /// Candidate filtering is not done here: every gathered candidate is
    /// reported. Note for tests on one machine: Chromium only gathers
    /// 127.0.0.1 candidates with `--allow-loopback-in-peer-connection`.
    pub fn new(
        config: &PeerConfig,
        on_event: impl FnMut(PeerEvent) + 'static,
    ) -> Result<PeerLink, MediaError> {
        Self::new_boxed(config, Box::new(on_event))
    }

    /// The body of [`new`](Self::new), not generic: one copy in the wasm for every caller
    /// (mesh links and SFU connections), not one per callback type.
    fn new_boxed(
        config: &PeerConfig,
        on_event: Box<dyn FnMut(PeerEvent)>,
    ) -> Result<PeerLink, MediaError> {
        let rtc_config = RtcConfiguration::new();
        let servers = Array::new();
        for s in &config.ice_servers {
            let server = RtcIceServer::new();
            let urls: Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
            server.set_urls(&urls);
            if let Some(u) = &s.username {
                server.set_username(u);
            }
            if let Some(c) = &s.credential {
                server.set_credential(c);
            }
            servers.push(&server);
        }
        rtc_config.set_ice_servers(&servers);
        if config.ice_transport_policy_relay {
            rtc_config.set_ice_transport_policy(RtcIceTransportPolicy::Relay);
        }
        let pc = RtcPeerConnection::new_with_configuration(&rtc_config)
            .map_err(|e| MediaError::js("new RTCPeerConnection", &e))?;

        let shared = Rc::new(Shared {
            closed: Cell::new(false),
            sink: RefCell::new(Some(on_event)),
            track_listeners: RefCell::new(Vec::new()),
            taps: RefCell::new(Vec::new()),
            want_gate: Cell::new(false),
            video_gate: RefCell::new(None),
        });

        let s = shared.clone();
        let ice = Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(
            move |ev: RtcPeerConnectionIceEvent| match ev.candidate() {
                Some(c) if !c.candidate().is_empty() => {
                    s.emit(PeerEvent::LocalCandidate(Candidate {
                        candidate: c.candidate(),
                        sdp_mid: c.sdp_mid(),
                        sdp_m_line_index: c.sdp_m_line_index(),
                    }))
                }
                Some(_) => {} // legacy empty-string end marker; the null one follows
                None => s.emit(PeerEvent::LocalCandidatesComplete),
            },
        );
        let s = shared.clone();
        let track = Closure::<dyn FnMut(RtcTrackEvent)>::new(move |ev: RtcTrackEvent| {
            let track = ev.track();
            let stream = match ev.streams().get(0).dyn_into::<MediaStream>() {
                Ok(stream) => stream,
                Err(_) => match MediaStream::new_with_tracks(&Array::of1(&track)) {
                    Ok(stream) => stream,
                    Err(_) => return,
                },
            };
            // A renegotiation that resumes a remote sender fires `track`
            // again for the same track: report each track once (its
            // `unmute` tells that media resumed).
            if s.track_listeners.borrow().iter().any(|l| l.track == track) {
                return;
            }
            let listener = TrackListener::install(&s, &track);
            s.track_listeners.borrow_mut().push(listener);
            if track_kind(&track) == Kind::Video {
                if let Some(tap) = ReceiverTap::install(&ev.receiver()) {
                    s.taps.borrow_mut().push(tap);
                }
                // Answerer: the offer just made the transceiver we will send video on, and
                // this is the last moment to give its sender a transform.
                s.gate_video_sender(&ev.transceiver().sender());
            }
            s.emit(PeerEvent::RemoteTrack { track, stream });
        });
        let s = shared.clone();
        let pc2 = pc.clone();
        let ice_state = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            s.emit(PeerEvent::IceConnectionState(pc2.ice_connection_state()));
        });
        let s = shared.clone();
        let pc2 = pc.clone();
        let conn_state = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            s.emit(PeerEvent::ConnectionState(pc2.connection_state()));
        });
        pc.set_onicecandidate(Some(ice.as_ref().unchecked_ref()));
        pc.set_ontrack(Some(track.as_ref().unchecked_ref()));
        pc.set_oniceconnectionstatechange(Some(ice_state.as_ref().unchecked_ref()));
        pc.set_onconnectionstatechange(Some(conn_state.as_ref().unchecked_ref()));

        Ok(PeerLink {
            inner: Rc::new(Inner {
                pc,
                shared,
                handlers: RefCell::new(Some(Handlers {
                    _ice: ice,
                    _track: track,
                    _ice_state: ice_state,
                    _conn_state: conn_state,
                })),
                pending: RefCell::new(Vec::new()),
                remote_described: Cell::new(false),
                prepared: RefCell::new(Vec::new()),
                prepared_stream: RefCell::new(None),
                pending_attach: RefCell::new(Vec::new()),
                prepared_applied: Cell::new(false),
                primer: RefCell::new(None),
                video_caps: Cell::new(VideoCaps::FULL),
            }),
        })
    }

    fn checked(&self) -> &PcChecked {
        self.inner.pc.unchecked_ref()
    }

    fn check_open(&self) -> Result<(), MediaError> {
        if self.is_closed() {
            Err(MediaError::Closed)
        } else {
            Ok(())
        }
    }

    /// Maps a failure of `op` to [`MediaError::Closed`] when the link was
    /// closed meanwhile (the browser then reports `InvalidStateError`).
    fn fail(&self, op: &'static str, e: &JsValue) -> MediaError {
        if self.is_closed() {
            MediaError::Closed
        } else {
            MediaError::js(op, e)
        }
    }

    /// Adds every track of `media` (audio first) with `addTrack(track, stream)`,
    /// so the remote side gets them grouped in one stream.
    ///
    /// Call it before [`create_offer`](Self::create_offer) /
    /// [`accept_offer`](Self::accept_offer): on the answering side, tracks
    /// added before the offer is applied are attached to the offered
    /// audio/video sections and are sent back without renegotiation.
    /// Adding the same track twice is an error (`InvalidAccessError`).
    pub fn add_local_media(&self, media: &LocalMedia) -> Result<Vec<RtcRtpSender>, MediaError> {
        self.check_open()?;
        let stream = media.stream();
        media
            .tracks()
            .iter()
            .map(|t| {
                self.checked()
                    .add_track(t, &stream)
                    .map_err(|e| self.fail("addTrack", &e))
            })
            .collect()
    }

    /// Makes sure the next offer asks to receive `kind` even if this side
    /// sends no such track (adds a `recvonly` transceiver when there is no
    /// transceiver of that kind yet). Use it on an offerer without a camera
    /// in a video call, or an audio-only caller that must still see video.
    pub fn ensure_receive(&self, kind: Kind) -> Result<(), MediaError> {
        self.check_open()?;
        let exists = self.inner.pc.get_transceivers().iter().any(|t| {
            let t: RtcRtpTransceiver = t.unchecked_into();
            !t.stopped() && track_kind(&t.receiver().track()) == kind
        });
        if !exists {
            let init = RtcRtpTransceiverInit::new();
            init.set_direction(RtcRtpTransceiverDirection::Recvonly);
            self.checked()
                .add_transceiver(kind.as_str(), &init)
                .map_err(|e| self.fail("addTransceiver", &e))?;
        }
        Ok(())
    }

    /// The transceiver that carries what this side sends of `kind`: the
    /// first live one of that kind whose direction includes sending, else the
    /// first live one of that kind (e.g. a `recvonly` one from
    /// [`ensure_receive`](Self::ensure_receive)).
    fn transceiver(&self, kind: Kind) -> Option<RtcRtpTransceiver> {
        let of_kind: Vec<RtcRtpTransceiver> = self
            .inner
            .pc
            .get_transceivers()
            .iter()
            .map(|t| t.unchecked_into::<RtcRtpTransceiver>())
            .filter(|t| !t.stopped() && track_kind(&t.receiver().track()) == kind)
            .collect();
        of_kind
            .iter()
            .find(|t| sends(t))
            .or(of_kind.first())
            .cloned()
    }

    /// Replaces what the sender of `kind` sends (e.g. a new microphone after
    /// a device change, a re-captured camera after the old track was stopped,
    /// or `None` to send nothing), without renegotiation.
    /// Returns `false` when there is no transceiver of that kind.
    pub async fn replace_track(
        &self,
        kind: Kind,
        track: Option<&MediaStreamTrack>,
    ) -> Result<bool, MediaError> {
        self.check_open()?;
        if let Some(t) = track {
            if track_kind(t) != kind {
                return Err(MediaError::InvalidArgument(
                    [
                        "replace_track(",
                        kind.as_str(),
                        ") was given a ",
                        &t.kind(),
                        " track",
                    ]
                    .concat(),
                ));
            }
        }
        let Some(transceiver) = self.transceiver(kind) else {
            return Ok(false);
        };
        JsFuture::from(transceiver.sender().replace_track(track))
            .await
            .map_err(|e| self.fail("RTCRtpSender.replaceTrack", &e))?;
        Ok(true)
    }

    /// The track the sender of `kind` currently sends, `None` when it sends
    /// nothing (not attached yet, replaced by `None`) or there is no such
    /// sender. Possibly an ended track: a stopped local track stays on its
    /// sender until replaced.
    pub fn sender_track(&self, kind: Kind) -> Option<MediaStreamTrack> {
        if self.is_closed() {
            return None;
        }
        if let Some(t) = self.pending_track(kind) {
            return Some(t);
        }
        if kind == Kind::Video && self.inner.primer.borrow().is_some() {
            return None; // only warming up
        }
        self.transceiver(kind).and_then(|t| t.sender().track())
    }

    fn pending_track(&self, kind: Kind) -> Option<MediaStreamTrack> {
        let pending = self.inner.pending_attach.borrow();
        pending
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| Clone::clone(t))
    }

    /// Sets (or with `None` clears) the track waiting for the sender of `kind`.
    fn set_pending_track(&self, kind: Kind, track: Option<&MediaStreamTrack>) {
        let mut pending = self.inner.pending_attach.borrow_mut();
        pending.retain(|(k, _)| *k != kind);
        if let Some(t) = track {
            pending.push((kind, Clone::clone(t)));
        }
    }

    /// Declares, before negotiating, that this link will send `kinds`
    /// without giving it any track yet, so the connection can be set up
    /// while the call still rings and [`attach`](Self::attach) later starts
    /// sending without renegotiation.
    ///
    /// Takes effect in the first negotiation: [`create_offer`](Self::create_offer)
    /// adds one `sendrecv` transceiver per kind (audio before video; kinds
    /// already covered by [`add_local_media`](Self::add_local_media) are
    /// skipped); [`accept_offer`](Self::accept_offer) turns the offered
    /// section of each kind into `sendrecv`. (Eager `addTransceiver` would
    /// break the answering side: an offer never reuses transceivers made by
    /// `addTransceiver`, so they would stay unnegotiated.) A kind the offer
    /// lacks is ignored; [`attach`](Self::attach) then fails for it.
    ///
    /// Both sides should prepare the same kinds; a side that does not prepare
    /// (and adds no media) still receives. Fails with
    /// [`MediaError::InvalidArgument`] once a description has been set:
    /// adding senders then would need a renegotiation this crate does not do.
    pub fn prepare(&self, kinds: &[Kind]) -> Result<(), MediaError> {
        self.check_open()?;
        if self.inner.remote_described.get() || self.inner.pc.local_description().is_some() {
            return Err(MediaError::InvalidArgument(
                "prepare() must be called before create_offer() / accept_offer()".into(),
            ));
        }
        let mut prepared = self.inner.prepared.borrow_mut();
        for kind in [Kind::Audio, Kind::Video] {
            if kinds.contains(&kind) && !prepared.contains(&kind) {
                prepared.push(kind);
            }
        }
        if prepared.contains(&Kind::Video) && self.pending_track(Kind::Video).is_none() {
            self.inner.shared.want_gate.set(true);
        }
        if !prepared.is_empty() && self.inner.prepared_stream.borrow().is_none() {
            let stream = MediaStream::new().map_err(|e| MediaError::js("new MediaStream", &e))?;
            *self.inner.prepared_stream.borrow_mut() = Some(stream);
        }
        Ok(())
    }

    /// The kinds declared by [`prepare`](Self::prepare), audio first.
    pub fn prepared_kinds(&self) -> Vec<Kind> {
        self.inner.prepared.borrow().clone()
    }

    /// Starts sending `track` on the sender of its kind (`replaceTrack`, no
    /// renegotiation): the accept step of a [prepared](Self::prepare) link.
    /// Replaces whatever was attached.
    ///
    /// On a prepared link that has not negotiated yet, the track is kept and
    /// the first negotiation puts it on the sender it creates
    /// ([`sender_track`](Self::sender_track) already returns it); so a caller
    /// that captured first can `prepare` + `attach` + `create_offer` in any
    /// order of tasks. If that negotiation has no section of this kind (the
    /// remote offer lacked it) the kept track is dropped.
    ///
    /// Errors: [`MediaError::InvalidArgument`] when `track` is not of `kind`,
    /// or when there is no sending transceiver of that kind and the kind was
    /// not prepared (or was, but the negotiation gave it no section);
    /// [`MediaError::Closed`] after close.
    pub async fn attach(&self, kind: Kind, track: &MediaStreamTrack) -> Result<(), MediaError> {
        self.check_open()?;
        if track_kind(track) != kind {
            return Err(MediaError::InvalidArgument(
                [
                    "attach(",
                    kind.as_str(),
                    ") was given a ",
                    &track.kind(),
                    " track",
                ]
                .concat(),
            ));
        }
        crate::capture::settle_when_sending(track);
        // The warm-up ends here: the primer comes off (it is replaced right below) and the gate
        // opens before the camera's first frame can reach it.
        let primer = (kind == Kind::Video).then(|| self.inner.primer.borrow_mut().take());
        if kind == Kind::Video {
            self.inner.shared.want_gate.set(false);
            if let Some(gate) = self.inner.shared.video_gate.borrow().as_ref() {
                gate.open();
            }
        }
        if let Some(transceiver) = self.transceiver(kind).filter(sends) {
            let replaced = JsFuture::from(transceiver.sender().replace_track(Some(track))).await;
            drop(primer);
            replaced.map_err(|e| self.fail("RTCRtpSender.replaceTrack", &e))?;
            return Ok(());
        }
        if !self.inner.prepared_applied.get() && self.inner.prepared.borrow().contains(&kind) {
            self.set_pending_track(kind, Some(track));
            return Ok(());
        }
        Err(MediaError::InvalidArgument(
            [
                "no ",
                kind.as_str(),
                " sender to attach to: prepare() the link for it before negotiating",
            ]
            .concat(),
        ))
    }

    /// Stops sending `kind` (the sender's track becomes none; no
    /// renegotiation), e.g. when the call goes audio-only or the camera is
    /// switched off; also forgets a track kept by an early
    /// [`attach`](Self::attach). The negotiated sender stays, so `attach`
    /// can resume later. Nothing to do (and `Ok`) when there is no sender of
    /// that kind.
    pub async fn attach_none(&self, kind: Kind) -> Result<(), MediaError> {
        self.check_open()?;
        self.set_pending_track(kind, None);
        if kind == Kind::Video {
            drop(self.inner.primer.borrow_mut().take());
        }
        self.replace_track(kind, None).await.map(|_| ())
    }

    /// Puts the tracks kept by early [`attach`](Self::attach) calls on their
    /// now existing senders. The JS calls are made right away (before any
    /// await), so a later `attach` cannot be overtaken: `replaceTrack` runs
    /// in call order. Their results are ignored: `replaceTrack` of a track
    /// of the right kind only fails on a closed connection.
    fn start_pending_attach(&self) -> Vec<JsFuture> {
        self.inner.prepared_applied.set(true);
        let pending = std::mem::take(&mut *self.inner.pending_attach.borrow_mut());
        pending
            .into_iter()
            .filter_map(|(kind, track)| {
                let t = self.transceiver(kind).filter(sends)?;
                Some(JsFuture::from(t.sender().replace_track(Some(&track))))
            })
            .collect()
    }

    /// Offerer side of [`prepare`](Self::prepare): one trackless `sendrecv`
    /// transceiver per prepared kind that has no sending transceiver yet.
    fn add_prepared_transceivers(&self) -> Result<Vec<JsFuture>, MediaError> {
        let stream = self.inner.prepared_stream.borrow();
        for &kind in self.inner.prepared.borrow().iter() {
            if self.transceiver(kind).is_some_and(|t| sends(&t)) {
                continue;
            }
            let init = RtcRtpTransceiverInit::new();
            init.set_direction(RtcRtpTransceiverDirection::Sendrecv);
            if let Some(s) = stream.as_ref() {
                init.set_streams(&Array::of1(s));
            }
            self.checked()
                .add_transceiver(kind.as_str(), &init)
                .map_err(|e| self.fail("addTransceiver", &e))?;
        }
        if let Some(t) = self.transceiver(Kind::Video).filter(sends) {
            self.inner.shared.gate_video_sender(&t.sender());
        }
        let attached = self.start_pending_attach();
        self.warm_up_video();
        Ok(attached)
    }

    /// Answerer side of [`prepare`](Self::prepare), after the offer is set:
    /// the offered section of each prepared kind (a `recvonly` transceiver
    /// created by the offer) becomes `sendrecv`, grouped in the prepared stream.
    fn open_prepared_senders(&self) -> Vec<JsFuture> {
        let stream = self.inner.prepared_stream.borrow();
        for &kind in self.inner.prepared.borrow().iter() {
            let Some(t) = self.transceiver(kind) else {
                continue; // the offer has no section of this kind
            };
            if !sends(&t) {
                // The answer intersects this with the offer's direction.
                t.set_direction(RtcRtpTransceiverDirection::Sendrecv);
            }
            if let (Some(s), None) = (stream.as_ref(), t.sender().track()) {
                // Only for the msid in the answer; a browser without
                // setStreams still works, with ungrouped remote tracks.
                let _ = t.sender().unchecked_ref::<SenderExt>().set_streams(s);
            }
        }
        let attached = self.start_pending_attach();
        self.warm_up_video();
        attached
    }

    /// Right after the first negotiation made the prepared senders: a video sender that is still
    /// gated (an attach, early or not, opens or skips the gate) and has no track warms its
    /// encoder on a blank track behind the closed gate (see [`crate::warmup`]); the blank track
    /// comes off once the encoder is warm.
    fn warm_up_video(&self) {
        if !self.video_gated() {
            return;
        }
        let Some(sender) = self
            .transceiver(Kind::Video)
            .filter(sends)
            .map(|t| t.sender())
        else {
            return;
        };
        if sender.track().is_some() || self.inner.primer.borrow().is_some() {
            return;
        }
        let Some(primer) = Primer::new() else { return };
        let _ = sender.replace_track(Some(primer.track()));
        *self.inner.primer.borrow_mut() = Some(primer);
        let inner = Rc::downgrade(&self.inner);
        let when_warm = move || {
            let Some(inner) = inner.upgrade() else { return };
            // Still the primer's (not attached meanwhile, not closed): send nothing again.
            let primer = inner.primer.borrow_mut().take();
            if let Some(primer) = primer {
                let _ = sender.replace_track(None);
                drop(primer);
            }
        };
        if let Some(gate) = self.inner.shared.video_gate.borrow().as_ref() {
            gate.when_warm(when_warm);
        }
    }

    /// Asks the peer for a video keyframe on every video receiver (RTCP PLI), for when it is
    /// about to start sending (see [`crate::warmup`]). Does nothing where warm-up is unavailable.
    pub fn request_key_frames(&self) {
        if self.is_closed() {
            return;
        }
        for tap in self.inner.shared.taps.borrow().iter() {
            tap.request_key_frame();
        }
    }

    /// Whether the video sender is gated and still warming up or warm, i.e. not attached yet
    /// (see [`crate::warmup`]). For tests and diagnostics.
    pub fn video_gated(&self) -> bool {
        self.inner
            .shared
            .video_gate
            .borrow()
            .as_ref()
            .is_some_and(|g| !g.is_open())
    }

    /// Whether the blank warm-up track is still on the video sender (the encoder is not warm
    /// yet). For tests and diagnostics.
    pub fn warming_up(&self) -> bool {
        self.inner.primer.borrow().is_some()
    }

    /// `createOffer` + `setLocalDescription`; returns the offer SDP to signal.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        self.check_open()?;
        if self.inner.pc.local_description().is_none() {
            for attached in self.add_prepared_transceivers()? {
                let _ = attached.await;
            }
        }
        let offer = JsFuture::from(self.inner.pc.create_offer()).await;
        let sdp = self.created_sdp(offer, "createOffer", "no sdp in the offer")?;
        self.set_local(RtcSdpType::Offer, &sdp).await?;
        Ok(sdp)
    }

    /// Limits what the video sender sends (see [`crate::caps`]), now if the link has negotiated
    /// its video sender, else right after it does. No renegotiation. Nothing to do (and `Ok`)
    /// without a video sender.
    pub async fn set_video_caps(&self, caps: VideoCaps) -> Result<(), MediaError> {
        self.check_open()?;
        if self.inner.video_caps.replace(caps) == caps {
            return Ok(());
        }
        self.apply_video_caps().await
    }

    /// The limits last given to [`set_video_caps`](Self::set_video_caps).
    pub fn video_caps(&self) -> VideoCaps {
        self.inner.video_caps.get()
    }

    /// The sending video sender, its parameters and their encodings; `None` before the
    /// negotiation gave it any (what is set meanwhile is applied after it).
    fn video_encodings(&self) -> Option<(web_sys::RtcRtpSender, web_sys::RtcRtpParameters, Array)> {
        let sender = self.transceiver(Kind::Video).filter(sends)?.sender();
        let params = sender.get_parameters();
        let encodings = Reflect::get(&params, &"encodings".into()).ok()?;
        if !Array::is_array(&encodings) {
            return None;
        }
        let encodings = Array::from(&encodings);
        (encodings.length() > 0).then_some((sender, params, encodings))
    }

    async fn apply_video_caps(&self) -> Result<(), MediaError> {
        let Some((sender, params, encodings)) = self.video_encodings() else {
            return Ok(()); // not negotiated yet: the negotiation applies them
        };
        let caps = self.inner.video_caps.get();
        for e in encodings.iter() {
            let _ = Reflect::set(
                &e,
                &"scaleResolutionDownBy".into(),
                &caps.scale_down_by.into(),
            );
            match caps.max_bitrate_bps {
                Some(bps) => {
                    let _ = Reflect::set(&e, &"maxBitrate".into(), &bps.into());
                }
                None => {
                    let _ = Reflect::delete_property(
                        e.unchecked_ref::<js_sys::Object>(),
                        &"maxBitrate".into(),
                    );
                }
            }
        }
        JsFuture::from(sender.set_parameters_with_parameters(&params))
            .await
            .map_err(|e| self.fail("RTCRtpSender.setParameters", &e))?;
        Ok(())
    }

    /// SFU publishing connection: keeps the video sender's simulcast encodings up to
    /// `max_substream` sending and pauses the others ([`crate::simulcast::active`];
    /// `RTCRtpEncodingParameters.active`: the browser stops encoding them); `None` pauses them
    /// all (camera off: with no track but an active encoding the browser keeps sending padding
    /// for seconds). A sender not negotiated yet keeps its encodings as they are, and applying
    /// the answer may set them back to active: the caller applies its wish again once the
    /// answer is applied.
    pub async fn set_active_layers(&self, max_substream: Option<u32>) -> Result<(), MediaError> {
        self.check_open()?;
        let Some((sender, params, encodings)) = self.video_encodings() else {
            return Ok(());
        };
        let count = encodings.length() as usize;
        let mut changed = false;
        for e in encodings.iter() {
            let Some(rid) = Reflect::get(&e, &"rid".into())
                .ok()
                .and_then(|r| r.as_string())
            else {
                continue;
            };
            let on = max_substream.is_some_and(|m| crate::simulcast::active(&rid, count, m));
            if Reflect::get(&e, &"active".into())
                .ok()
                .and_then(|a| a.as_bool())
                != Some(on)
            {
                let _ = Reflect::set(&e, &"active".into(), &on.into());
                changed = true;
            }
        }
        if changed {
            JsFuture::from(sender.set_parameters_with_parameters(&params))
                .await
                .map_err(|e| self.fail("RTCRtpSender.setParameters", &e))?;
        }
        Ok(())
    }

    /// After a negotiation: limits set before it now have an encoding to apply to.
    async fn reapply_video_caps(&self) {
        if self.inner.video_caps.get() != VideoCaps::FULL {
            let _ = self.apply_video_caps().await;
        }
    }

    /// ICE restart, offerer side: a new offer with fresh ICE credentials (`iceRestart`), set as
    /// the local description; returns its SDP to signal. The remote side applies it with
    /// [`accept_offer`](Self::accept_offer) like any offer, and tracks stay as they are. An
    /// earlier offer still waiting for its answer (lost while the network was down) is rolled
    /// back first.
    pub async fn restart_ice(&self) -> Result<String, MediaError> {
        self.check_open()?;
        let pc = &self.inner.pc;
        if pc.signaling_state() == RtcSignalingState::HaveLocalOffer {
            let rollback = RtcSessionDescriptionInit::new(RtcSdpType::Rollback);
            JsFuture::from(pc.set_local_description(&rollback))
                .await
                .map_err(|e| self.fail("setLocalDescription(rollback)", &e))?;
        }
        let options = web_sys::RtcOfferOptions::new();
        options.set_ice_restart(true);
        let offer = JsFuture::from(pc.create_offer_with_rtc_offer_options(&options)).await;
        let sdp = self.created_sdp(offer, "createOffer(iceRestart)", "no sdp in the offer")?;
        self.set_local(RtcSdpType::Offer, &sdp).await?;
        Ok(sdp)
    }

    /// Applies a remote offer, then `createAnswer` + `setLocalDescription`;
    /// returns the answer SDP to signal. Queued remote candidates are applied
    /// as soon as the offer is set.
    pub async fn accept_offer(&self, sdp: &str) -> Result<String, MediaError> {
        self.check_open()?;
        // Only the first negotiation opens prepared senders: a later offer
        // must not undo a direction the SDK changed since.
        let first =
            !self.inner.remote_described.get() && self.inner.pc.local_description().is_none();
        self.set_remote(RtcSdpType::Offer, sdp, "setRemoteDescription(offer)")
            .await?;
        if first {
            for attached in self.open_prepared_senders() {
                let _ = attached.await;
            }
        }
        let answer = JsFuture::from(self.inner.pc.create_answer()).await;
        let answer_sdp = self.created_sdp(answer, "createAnswer", "no sdp in the answer")?;
        self.set_local(RtcSdpType::Answer, &answer_sdp).await?;
        self.reapply_video_caps().await;
        Ok(answer_sdp)
    }

    /// Applies the remote answer to our offer. Queued remote candidates are
    /// applied right after.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), MediaError> {
        self.check_open()?;
        self.set_remote(RtcSdpType::Answer, sdp, "setRemoteDescription(answer)")
            .await?;
        self.reapply_video_caps().await;
        Ok(())
    }

    /// Applies a remote candidate, or queues it when no remote description
    /// has been set yet (signalling may deliver candidates before the SDP).
    /// Queued candidates are applied when the remote description is set;
    /// failures among those are reported as
    /// [`PeerEvent::RemoteCandidateRejected`].
    pub async fn add_remote_candidate(&self, candidate: Candidate) -> Result<(), MediaError> {
        self.check_open()?;
        if !self.inner.remote_described.get() {
            self.inner.pending.borrow_mut().push(candidate);
            return Ok(());
        }
        self.apply_candidate(&candidate).await
    }

    /// SFU publishing connection: sends `track` on a new `sendonly` transceiver in `stream`,
    /// with `layers` as its simulcast encodings (video; empty = one encoding). Call it before
    /// [`create_offer`](Self::create_offer); [`attach`](Self::attach) /
    /// [`attach_none`](Self::attach_none) later change the track without renegotiation.
    pub fn add_sender(
        &self,
        track: &MediaStreamTrack,
        stream: &MediaStream,
        layers: &[crate::simulcast::Layer],
    ) -> Result<(), MediaError> {
        self.check_open()?;
        let init = RtcRtpTransceiverInit::new();
        init.set_direction(RtcRtpTransceiverDirection::Sendonly);
        init.set_streams(&Array::of1(stream));
        if !layers.is_empty() {
            let encodings = Array::new();
            for l in layers {
                let e = js_sys::Object::new();
                let _ = Reflect::set(&e, &"rid".into(), &l.rid.into());
                let _ = Reflect::set(&e, &"scaleResolutionDownBy".into(), &l.scale_down_by.into());
                let _ = Reflect::set(&e, &"maxBitrate".into(), &l.max_bitrate_bps.into());
                encodings.push(&e);
            }
            let _ = Reflect::set(&init, &"sendEncodings".into(), &encodings);
        }
        self.checked()
            .add_track_transceiver(track, &init)
            .map_err(|e| self.fail("addTransceiver", &e))?;
        // As in `attach`: a camera opened fast for a quick start goes back to the requested rate
        // once it is sent (without this, SFU publishers kept encoding at the fast-start rate).
        crate::capture::settle_when_sending(track);
        Ok(())
    }

    /// Whether the link has a sender of `kind` (SFU publisher: one added by
    /// [`add_sender`](Self::add_sender)).
    pub fn has_sender(&self, kind: Kind) -> bool {
        self.transceiver(kind).is_some_and(|t| sends(&t))
    }

    /// The track received on `mid` (SFU receiving connection: the SFU says whose stream each
    /// `mid` carries; a `mid` it recycles for another stream keeps its track object). `None`
    /// when no live transceiver has that `mid`.
    pub fn receiver_track(&self, mid: &str) -> Option<MediaStreamTrack> {
        self.inner.pc.get_transceivers().iter().find_map(|t| {
            let t: RtcRtpTransceiver = t.unchecked_into();
            (!t.stopped() && t.mid().as_deref() == Some(mid)).then(|| t.receiver().track())
        })
    }

    /// Number of remote candidates waiting for the remote description.
    pub fn pending_candidates(&self) -> usize {
        self.inner.pending.borrow().len()
    }

    /// Closes the connection: `connectionState` becomes `closed`, the event
    /// handlers and the callback are dropped, queued candidates are
    /// discarded, and no [`PeerEvent`] is delivered afterwards. Idempotent.
    /// Local tracks are not stopped (they may be shared with other links);
    /// stop them with [`LocalMedia::stop`].
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.get()
    }

    /// `connectionState` (`closed` after [`close`](Self::close)).
    pub fn connection_state(&self) -> RtcPeerConnectionState {
        self.inner.pc.connection_state()
    }

    /// `iceConnectionState`.
    pub fn ice_connection_state(&self) -> RtcIceConnectionState {
        self.inner.pc.ice_connection_state()
    }

    /// `signalingState` (`stable`, `have-local-offer`, ...), useful to detect glare.
    pub fn signaling_state(&self) -> RtcSignalingState {
        self.inner.pc.signaling_state()
    }

    /// The underlying connection, for what this crate does not wrap
    /// (e.g. `getStats` for `onRTCStateReport`, sender parameters).
    /// Do not replace its `on*` handlers: the link owns them.
    pub fn raw(&self) -> &RtcPeerConnection {
        &self.inner.pc
    }

    /// The SDP of what `createOffer` / `createAnswer` (`op`) resolved to; `missing` is the
    /// error when it has none.
    fn created_sdp(
        &self,
        created: Result<JsValue, JsValue>,
        op: &'static str,
        missing: &'static str,
    ) -> Result<String, MediaError> {
        let desc = created.map_err(|e| self.fail(op, &e))?;
        sdp_of(&desc).ok_or_else(|| self.fail(op, &JsValue::from_str(missing)))
    }

    async fn set_local(&self, kind: RtcSdpType, sdp: &str) -> Result<(), MediaError> {
        let init = RtcSessionDescriptionInit::new(kind);
        init.set_sdp(sdp);
        JsFuture::from(self.inner.pc.set_local_description(&init))
            .await
            .map_err(|e| self.fail("setLocalDescription", &e))?;
        Ok(())
    }

    async fn set_remote(
        &self,
        kind: RtcSdpType,
        sdp: &str,
        op: &'static str,
    ) -> Result<(), MediaError> {
        let init = RtcSessionDescriptionInit::new(kind);
        init.set_sdp(&crate::sdp::with_start_bitrate(
            sdp,
            crate::sdp::START_BITRATE_KBPS,
        ));
        JsFuture::from(self.inner.pc.set_remote_description(&init))
            .await
            .map_err(|e| self.fail(op, &e))?;
        self.inner.remote_described.set(true);
        self.flush_pending().await;
        Ok(())
    }

    async fn flush_pending(&self) {
        let queued = std::mem::take(&mut *self.inner.pending.borrow_mut());
        for c in queued {
            if self.is_closed() {
                return;
            }
            if let Err(error) = self.apply_candidate(&c).await {
                self.inner.shared.emit(PeerEvent::RemoteCandidateRejected {
                    candidate: c,
                    error,
                });
            }
        }
    }

    async fn apply_candidate(&self, c: &Candidate) -> Result<(), MediaError> {
        let init = c.to_init();
        JsFuture::from(
            self.inner
                .pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init)),
        )
        .await
        .map_err(|e| self.fail("addIceCandidate", &e))?;
        Ok(())
    }
}

/// Whether the transceiver's (local) direction includes sending.
fn sends(t: &RtcRtpTransceiver) -> bool {
    matches!(
        t.direction(),
        RtcRtpTransceiverDirection::Sendrecv | RtcRtpTransceiverDirection::Sendonly
    )
}

fn sdp_of(desc: &JsValue) -> Option<String> {
    Reflect::get(desc, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|v| v.as_string())
}
