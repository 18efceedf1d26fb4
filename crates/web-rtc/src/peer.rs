//! One `RTCPeerConnection` to one remote participant.
//!
//! The call engine (rtc-core) decides the negotiation: who offers, when an
//! SDP or candidate from the signalling channel is applied, when to close.
//! [`PeerLink`] only performs those steps and reports what the browser does
//! ([`PeerEvent`]). It adds the one piece of state the engine should not need
//! to know about: remote ICE candidates that arrive before the remote
//! description are queued and applied right after it is set.

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

use crate::capture::LocalMedia;
use crate::error::MediaError;
use crate::track::{track_kind, Kind};

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
    fn add_transceiver(
        this: &PcChecked,
        kind: &str,
        init: &RtcRtpTransceiverInit,
    ) -> Result<RtcRtpTransceiver, JsValue>;
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
    RemoteTrack {
        /// The remote track.
        track: MediaStreamTrack,
        /// The remote stream the track belongs to.
        stream: MediaStream,
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
}

impl Shared {
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
        // Drop the callback too: it may hold a clone of this link (a cycle).
        if let Ok(mut sink) = self.shared.sink.try_borrow_mut() {
            sink.take();
        }
        self.pending.borrow_mut().clear();
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
            sink: RefCell::new(Some(Box::new(on_event))),
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

    /// Replaces what the sender of `kind` sends (e.g. a new microphone after
    /// a device change, or `None` to send nothing), without renegotiation.
    /// Returns `false` when there is no transceiver of that kind.
    pub async fn replace_track(
        &self,
        kind: Kind,
        track: Option<&MediaStreamTrack>,
    ) -> Result<bool, MediaError> {
        self.check_open()?;
        let sender = self.inner.pc.get_transceivers().iter().find_map(|t| {
            let t: RtcRtpTransceiver = t.unchecked_into();
            (!t.stopped() && track_kind(&t.receiver().track()) == kind).then(|| t.sender())
        });
        let Some(sender) = sender else {
            return Ok(false);
        };
        JsFuture::from(sender.replace_track(track))
            .await
            .map_err(|e| self.fail("RTCRtpSender.replaceTrack", &e))?;
        Ok(true)
    }

    /// `createOffer` + `setLocalDescription`; returns the offer SDP to signal.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        self.check_open()?;
        let pc = &self.inner.pc;
        let offer = JsFuture::from(pc.create_offer())
            .await
            .map_err(|e| self.fail("createOffer", &e))?;
        let sdp = sdp_of(&offer)
            .ok_or_else(|| self.fail("createOffer", &JsValue::from_str("no sdp in the offer")))?;
        self.set_local(RtcSdpType::Offer, &sdp).await?;
        Ok(sdp)
    }

    /// Applies a remote offer, then `createAnswer` + `setLocalDescription`;
    /// returns the answer SDP to signal. Queued remote candidates are applied
    /// as soon as the offer is set.
    pub async fn accept_offer(&self, sdp: &str) -> Result<String, MediaError> {
        self.check_open()?;
        self.set_remote(RtcSdpType::Offer, sdp, "setRemoteDescription(offer)")
            .await?;
        let pc = &self.inner.pc;
        let answer = JsFuture::from(pc.create_answer())
            .await
            .map_err(|e| self.fail("createAnswer", &e))?;
        let answer_sdp = sdp_of(&answer)
            .ok_or_else(|| self.fail("createAnswer", &JsValue::from_str("no sdp in the answer")))?;
        self.set_local(RtcSdpType::Answer, &answer_sdp).await?;
        Ok(answer_sdp)
    }

    /// Applies the remote answer to our offer. Queued remote candidates are
    /// applied right after.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), MediaError> {
        self.check_open()?;
        self.set_remote(RtcSdpType::Answer, sdp, "setRemoteDescription(answer)")
            .await
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
        init.set_sdp(sdp);
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

fn sdp_of(desc: &JsValue) -> Option<String> {
    Reflect::get(desc, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|v| v.as_string())
}
