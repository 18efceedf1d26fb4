//! Carries out the engine's media actions with `web-rtc`, and reports back.
//!
//! Local media is kept per call; one `PeerLink` per (call, remote device). Track objects
//! (`RCTrack`) are kept per (call, track id) so the app gets the same object every time.

use std::cell::RefCell;
use std::rc::Rc;

use rtc_core::engine::{CaptureError, Input, LinkState, MediaAction, MediaEvent, Peer, TrackKind};
use rtc_core::proto::{media_signal, IceCandidate};
use rtc_core::small_map::SmallMap;
use wasm_bindgen::JsValue;
use web_rtc::{Candidate, CaptureRequest, Kind, LocalMedia, MediaError, PeerEvent, PeerLink, RtcIceConnectionState};

use crate::js;
use crate::sessions::Sessions;
use crate::track::RCTrack;

/// SFU mode: a group call's connections to the server's SFU, part of the call's media.
#[path = "sfu.rs"]
pub mod sfu;

/// What the media shell needs of the rest of the SDK (the runtime implements it): its own
/// state, the sessions (constraints, listeners), and the engine it reports to. Passed
/// explicitly, so this module names no runtime.
pub trait Host: 'static {
    fn media(&self) -> &RefCell<MediaShell>;
    fn sessions(&self) -> &Sessions;
    /// Hands an input to the engine now (and carries out what it outputs).
    fn feed(self: &Rc<Self>, input: Input);
    /// Hands an input to the engine from a fresh task (inside a JS event handler).
    fn feed_later(self: &Rc<Self>, input: Input);
    /// What a new peer connection uses (ICE servers, transport policy).
    fn peer_config(&self) -> web_rtc::PeerConfig;
    fn current_user(&self) -> Option<String>;
    /// The engine runs (not disconnected).
    fn running(&self) -> bool;
    /// Writes a frame to the server now, if connected (SFU signalling).
    fn write(&self, frame: &rtc_core::proto::ClientFrame);
}

#[derive(Default)]
pub struct MediaShell {
    local: SmallMap<String, LocalMedia>,
    peers: SmallMap<(String, Peer), PeerLink>,
    /// Track objects by (call, track id, sending device — empty for ours): one user's devices
    /// may all be pre-connected while ringing, each with its own tracks.
    tracks: SmallMap<(String, String, String), JsValue>,
    /// Calls merged into another (crossing calls): a capture started under the old id lands
    /// under the new one.
    renames: SmallMap<String, String>,
    /// One stats sampler per link (bitrates need the previous sample).
    samplers: SmallMap<(String, Peer), Rc<RefCell<web_rtc::StatsSampler>>>,
    /// SFU mode: each group call's publishing and receiving connection ([`sfu`]).
    pub sfu: SmallMap<String, sfu::SfuLinks>,
}

fn kind_of(k: Kind) -> TrackKind {
    match k {
        Kind::Audio => TrackKind::Audio,
        Kind::Video => TrackKind::Video,
    }
}

impl MediaShell {
    pub fn track_object(&self, call_id: &str, track_id: &str, device_id: &str) -> Option<JsValue> {
        self.tracks.get(&(call_id.to_string(), track_id.to_string(), device_id.to_string())).cloned()
    }

    pub fn local(&self, call_id: &str) -> Option<LocalMedia> {
        self.local.get(call_id).cloned()
    }

    /// A remote track of `device_id` (an SFU feed) for the engine's `onTrackReady`.
    pub fn register_remote(&mut self, call_id: &str, device_id: &str, track: RCTrack) {
        self.register_track(call_id, device_id, track);
    }

    /// Forgets the remote tracks of the SFU feeds in `tracks`.
    pub fn forget_remote(&mut self, call_id: &str, tracks: &[(rtc_core::engine::SfuTrack, bool)]) {
        self.tracks.retain(|(c, _, d), _| !(c == call_id && tracks.iter().any(|(t, _)| t.feed == *d)));
    }

    /// Carries out one engine action. Async work reports back through `feed`.
    pub fn act<H: Host>(rt: &Rc<H>, action: MediaAction) {
        match action {
            MediaAction::Capture { call_id, video } => capture(rt, call_id, video),
            MediaAction::Release { call_id } => {
                // Our track objects go too (device id ""): nothing announces them any more.
                rt.media().borrow_mut().tracks.retain(|(c, _, d), _| !(*c == call_id && d.is_empty()));
                let media = rt.media().borrow_mut().local.remove(&call_id);
                if let Some(m) = media {
                    m.stop();
                }
            }
            MediaAction::Connect { call_id, peer, offerer, attach, video } => connect(rt, call_id, peer, offerer, attach, video),
            MediaAction::Attach { call_id, peer } => attach(rt, &call_id, peer.as_ref()),
            MediaAction::RequestKeyFrames { call_id, peer } => {
                for link in links_of(rt, &call_id, peer.as_ref()) {
                    link.request_key_frames();
                }
            }
            MediaAction::CaptureCamera { call_id } => recapture(rt, call_id, TrackKind::Video),
            MediaAction::CaptureMicrophone { call_id } => recapture(rt, call_id, TrackKind::Audio),
            MediaAction::SetEnabled { call_id, kind, enabled } => {
                let local = rt.media().borrow().local.get(&call_id).cloned();
                let track = local.and_then(|l| if kind == TrackKind::Audio { l.audio() } else { l.video() });
                if let Some(t) = track {
                    t.set_enabled(enabled);
                    // SFU mode: a muted track also comes off its sender, so nothing goes to the
                    // SFU (a disabled track still sends silence or black frames).
                    // The camera's encodings pause too (else the browser pads the stream for
                    // seconds), and resume with the layers subscribers take.
                    if let Some(p) = sfu::publisher(rt, &call_id) {
                        let rt = rt.clone();
                        js::spawn(async move {
                            let k = web_rtc::track_kind(&t);
                            let _ = if enabled { p.attach(k, &t).await } else { p.attach_none(k).await };
                            if k == Kind::Video {
                                let (max, on) = sfu::layers_now(&rt, &call_id);
                                sfu::set_layers(p, max, on).await;
                            }
                        });
                    }
                }
            }
            MediaAction::Apply { call_id, peer, signal } => apply(rt, call_id, peer, signal),
            MediaAction::RestartIce { call_id, peer } => restart_ice(rt, call_id, peer),
            MediaAction::Disconnect { call_id, peer } => {
                rt.media().borrow_mut().samplers.remove(&(call_id.clone(), peer.clone()));
                rt.media().borrow_mut().tracks.retain(|(c, _, d), _| !(*c == call_id && *d == peer.device_id));
                let link = rt.media().borrow_mut().peers.remove(&(call_id.clone(), peer));
                if let Some(l) = link {
                    l.close();
                }
                cap_video(rt, &call_id);
            }
            MediaAction::DropVideo { call_id } => drop_video(rt, &call_id),
            MediaAction::Rename { from, into } => {
                let mut m = rt.media().borrow_mut();
                m.renames.insert(from.clone(), into.clone());
                if let Some(local) = m.local.remove(&from) {
                    m.local.insert(into.clone(), local);
                }
                let tracks: Vec<((String, String, String), JsValue)> = std::mem::take(&mut m.tracks).into_iter().collect();
                for ((c, t, d), v) in tracks {
                    m.tracks.insert((if c == from { into.clone() } else { c }, t, d), v);
                }
            }
            MediaAction::Sfu(action) => sfu::act(rt, action),
            MediaAction::Leave { call_id } => {
                sfu::close(rt, &call_id);
                let links: Vec<PeerLink> = {
                    let mut m = rt.media().borrow_mut();
                    let keys: Vec<(String, Peer)> = m.peers.keys().filter(|(c, _)| *c == call_id).cloned().collect();
                    keys.into_iter().filter_map(|k| m.peers.remove(&k)).collect()
                };
                for l in links {
                    l.close();
                }
                rt.media().borrow_mut().tracks.retain(|(c, _, _), _| *c != call_id);
                rt.media().borrow_mut().samplers.retain(|(c, _), _| *c != call_id);
            }
        }
    }

    /// Closes everything (disconnect).
    pub fn stop_all<H: Host>(rt: &Rc<H>) {
        let shell = std::mem::take(&mut *rt.media().borrow_mut());
        for (_, l) in shell.peers {
            l.close();
        }
        for (_, l) in shell.sfu {
            l.close();
        }
        for (_, m) in shell.local {
            m.stop();
        }
    }

    fn register_track(&mut self, call_id: &str, device_id: &str, track: RCTrack) {
        let id = track.track_id();
        self.tracks.insert((call_id.to_string(), id, device_id.to_string()), track.into());
    }
}

/// The call's links: to `peer`, or all if `None`.
fn links_of<H: Host>(rt: &Rc<H>, call_id: &str, peer: Option<&Peer>) -> Vec<PeerLink> {
    rt.media()
        .borrow()
        .peers
        .iter()
        .filter(|((c, p), _)| c == call_id && peer.is_none_or(|want| want == p))
        .map(|(_, l)| l.clone())
        .collect()
}

/// Puts the call's local tracks on the link(s) (replaceTrack: no renegotiation).
fn attach<H: Host>(rt: &Rc<H>, call_id: &str, peer: Option<&Peer>) {
    let Some(local) = rt.media().borrow().local.get(call_id).cloned() else { return };
    let publisher = peer.is_none().then(|| sfu::publisher(rt, call_id)).flatten();
    for link in links_of(rt, call_id, peer).into_iter().chain(publisher.clone()) {
        attach_media(&link, &local);
    }
    // A camera back (captured again after release): its layers resume.
    if let Some(p) = publisher {
        let (max, on) = sfu::layers_now(rt, call_id);
        js::spawn(sfu::set_layers(p, max, on));
    }
}

fn attach_media(link: &PeerLink, media: &LocalMedia) {
    for track in media.tracks() {
        let link = link.clone();
        // replaceTrack now, not after the app's handlers of this turn: it starts the sender.
        js::spawn_now(async move {
            if let Err(e) = link.attach(web_rtc::track_kind(&track), &track).await {
                js::warn_err("cannot send a local track", &e);
            }
        });
    }
}

/// A new camera (`enableVideoTrack()` after release) or microphone (`changeAudioDevice()`)
/// replaces the call's old track of that kind in its local media; the engine then attaches it.
fn recapture<H: Host>(rt: &Rc<H>, call_id: String, kind: TrackKind) {
    let req = match kind {
        TrackKind::Video => CaptureRequest::video_only(),
        TrackKind::Audio => {
            let c = rt.sessions().take_mic_constraints(&call_id);
            CaptureRequest { audio: true, audio_constraints: crate::constraints::audio(&js::obj(&[("audio", c)])), ..Default::default() }
        }
    };
    let rt = rt.clone();
    js::spawn(async move {
        let result = match web_rtc::capture(&req).await {
            Ok(media) => {
                let me = rt.current_user().unwrap_or_default();
                let mut shell = rt.media().borrow_mut();
                let new = if kind == TrackKind::Video { media.video() } else { media.audio() };
                match (new, shell.local.get(&call_id).cloned()) {
                    (Some(track), Some(local)) => {
                        let stream = local.stream();
                        let old = if kind == TrackKind::Video { local.video() } else { local.audio() };
                        if let Some(old) = old {
                            old.stop();
                            stream.remove_track(&old);
                        }
                        stream.add_track(&track);
                        shell.register_track(&call_id, "", RCTrack::new(&call_id, &me, kind, true, track, stream));
                        Ok(vec![kind])
                    }
                    // The call's media is gone (it ended, or `disconnect()`): stop the new track.
                    _ => {
                        media.stop();
                        Err(CaptureError::Other)
                    }
                }
            }
            Err(e) => {
                js::warn_err("capture failed", &e);
                Err(CaptureError::Other)
            }
        };
        rt.feed(Input::Media(MediaEvent::Captured { call_id, result }));
    });
}

/// The call went audio-only: stop the camera, stop sending video to every peer.
fn drop_video<H: Host>(rt: &Rc<H>, call_id: &str) {
    let video = rt.media().borrow().local.get(call_id).and_then(|l| l.video());
    let links = links_of(rt, call_id, None).into_iter().chain(sfu::publisher(rt, call_id));
    if let Some(track) = video {
        track.stop();
    }
    for link in links {
        js::spawn(async move {
            if let Err(e) = link.attach_none(Kind::Video).await {
                js::warn_err("could not stop sending video", &e);
            }
        });
    }
    // The SFU publisher's encodings pause too, else the browser pads the stream for seconds.
    if let Some(p) = sfu::publisher(rt, call_id) {
        js::spawn(sfu::set_layers(p, None, false));
    }
}

fn capture<H: Host>(rt: &Rc<H>, call_id: String, video: bool) {
    let constraints = rt.sessions().constraints(&call_id);
    let req = CaptureRequest {
        audio: true,
        video,
        audio_constraints: crate::constraints::audio(&constraints),
        video_constraints: if video { crate::constraints::video(&constraints) } else { None },
    };
    let demote = video && rt.sessions().options().is_some_and(|o| o.demotion);
    let rt = rt.clone();
    js::spawn(async move {
        let mut result = web_rtc::capture(&req).await;
        if demote && result.is_err() {
            // isAllowDemotionGetStream: no camera, carry on with the microphone only.
            let audio_only = CaptureRequest { video: false, video_constraints: None, ..req };
            result = web_rtc::capture(&audio_only).await;
        }
        let call_id = rt.media().borrow().renames.get(&call_id).cloned().unwrap_or(call_id);
        if !rt.running() {
            // `disconnect()` while the camera opened: nobody is left to release it, and the
            // camera light must not stay on.
            if let Ok(media) = result {
                media.stop();
            }
            return;
        }
        let result = match result {
            Ok(media) => {
                let me = rt.current_user().unwrap_or_default();
                let mut kinds = Vec::new();
                {
                    let mut shell = rt.media().borrow_mut();
                    for t in media.tracks() {
                        let kind = kind_of(web_rtc::track_kind(&t));
                        kinds.push(kind);
                        shell.register_track(&call_id, "", RCTrack::new(&call_id, &me, kind, true, t, media.stream()));
                    }
                    shell.local.insert(call_id.clone(), media);
                }
                Ok(kinds)
            }
            Err(e) => {
                js::warn_err("capture failed", &e);
                Err(match e {
                    MediaError::Permission { .. } => CaptureError::PermissionDenied,
                    MediaError::NotFound { .. } => CaptureError::NotFound,
                    _ => CaptureError::Other,
                })
            }
        };
        rt.feed(Input::Media(MediaEvent::Captured { call_id, result }));
    });
}

fn connect<H: Host>(rt: &Rc<H>, call_id: String, peer: Peer, offerer: bool, attach: bool, video: bool) {
    let config = rt.peer_config();
    let (c, p) = (call_id.clone(), peer.clone());
    let host = rt.clone();
    let link = PeerLink::new(&config, move |ev| on_peer_event(&host, &c, &p, ev));
    let link = match link {
        Ok(l) => l,
        Err(e) => return js::warn_err("cannot create a peer connection", &e),
    };
    let kinds: &[Kind] = if video { &[Kind::Audio, Kind::Video] } else { &[Kind::Audio] };
    // Either way the link has one send-capable transceiver per kind, so attaching tracks later
    // never renegotiates.
    if let Err(e) = link.prepare(kinds) {
        js::warn_err("cannot prepare the peer connection", &e);
    }
    if attach {
        let local = rt.media().borrow().local.get(&call_id).cloned();
        if let Some(media) = local {
            attach_media(&link, &media);
        }
    }
    rt.media().borrow_mut().peers.insert((call_id.clone(), peer.clone()), link.clone());
    cap_video(rt, &call_id);
    if offerer {
        let rt = rt.clone();
        js::spawn(async move {
            match link.create_offer().await {
                Ok(sdp) => rt.feed(Input::Media(MediaEvent::LocalSignal { call_id, peer, signal: media_signal::Kind::Offer(sdp) })),
                Err(e) => js::warn_err("createOffer failed", &e),
            }
        });
    }
}

/// Per-peer video limits for the call's size (`web_rtc::caps`), on every link of the call.
fn cap_video<H: Host>(rt: &Rc<H>, call_id: &str) {
    let links = links_of(rt, call_id, None);
    let caps = web_rtc::VideoCaps::for_peers(links.len());
    for link in links {
        if link.video_caps() != caps {
            js::spawn(async move {
                if let Err(e) = link.set_video_caps(caps).await {
                    js::warn_err("cannot limit the video sent", &e);
                }
            });
        }
    }
}

/// A new offer with fresh ICE credentials on a link that lost its transport.
fn restart_ice<H: Host>(rt: &Rc<H>, call_id: String, peer: Peer) {
    let Some(link) = rt.media().borrow().peers.get(&(call_id.clone(), peer.clone())).cloned() else { return };
    let rt = rt.clone();
    js::spawn(async move {
        match link.restart_ice().await {
            Ok(sdp) => rt.feed(Input::Media(MediaEvent::LocalSignal { call_id, peer, signal: media_signal::Kind::Offer(sdp) })),
            Err(e) => js::warn_err("ICE restart failed", &e),
        }
    });
}

fn apply<H: Host>(rt: &Rc<H>, call_id: String, peer: Peer, signal: media_signal::Kind) {
    let Some(link) = rt.media().borrow().peers.get(&(call_id.clone(), peer.clone())).cloned() else { return };
    let rt = rt.clone();
    js::spawn(async move {
        let result = match signal {
            media_signal::Kind::Offer(sdp) => match link.accept_offer(&sdp).await {
                Ok(answer) => {
                    let signal = media_signal::Kind::Answer(answer);
                    rt.feed(Input::Media(MediaEvent::LocalSignal { call_id, peer, signal }));
                    Ok(())
                }
                Err(e) => Err(e),
            },
            media_signal::Kind::Answer(sdp) => link.accept_answer(&sdp).await,
            media_signal::Kind::Candidate(c) => {
                link.add_remote_candidate(Candidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_m_line_index: c.sdp_m_line_index.and_then(|i| u16::try_from(i).ok()),
                })
                .await
            }
        };
        if let Err(e) = result {
            js::warn_err("media negotiation step failed", &e);
        }
    });
}

/// Browser events of one peer connection. Fed from a fresh task: the handler may be dropped
/// by what the engine decides.
fn on_peer_event<H: Host>(rt: &Rc<H>, call_id: &str, peer: &Peer, ev: PeerEvent) {
    let rt = rt.clone();
    match ev {
        PeerEvent::LocalCandidate(c) => {
            let signal = media_signal::Kind::Candidate(IceCandidate {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_m_line_index: c.sdp_m_line_index.map(u32::from),
            });
            rt.feed_later(Input::Media(MediaEvent::LocalSignal { call_id: call_id.to_string(), peer: peer.clone(), signal }));
        }
        PeerEvent::RemoteTrack { track, stream } => {
            let kind = kind_of(web_rtc::track_kind(&track));
            let remote = RCTrack::new(call_id, &peer.user_id, kind, false, track, stream);
            rt.media().borrow_mut().register_track(call_id, &peer.device_id, remote);
            rt.feed_later(Input::Media(MediaEvent::RemoteTrack { call_id: call_id.to_string(), peer: peer.clone(), kind }));
        }
        PeerEvent::IceConnectionState(state) => {
            if let Some(state) = link_state(state) {
                let (call_id, peer) = (call_id.to_string(), peer.clone());
                rt.feed_later(Input::Media(MediaEvent::LinkState { call_id, peer, state }));
            }
            let (call_id, state) = (call_id.to_string(), JsValue::from(state));
            js::spawn(async move { rt.sessions().notify(&call_id, "onICEConnectionStateChange", vec![state]) });
        }
        _ => {}
    }
}

/// `onRTCStateReport`: about once a second, one report per peer connection (`pcName` = the
/// remote user id), for sessions whose listener has the callback.
pub fn report_stats<H: Host>(rt: &Rc<H>) {
    let mut links: Vec<((String, Peer), PeerLink)> = rt.media().borrow().peers.iter().map(|(k, l)| (k.clone(), l.clone())).collect();
    // SFU connections report under their own names (`pcName`), with the same report shape.
    for (call_id, s) in rt.media().borrow().sfu.iter() {
        for (name, l) in s.named() {
            if let Some(l) = l {
                links.push(((call_id.clone(), Peer { user_id: name.into(), device_id: String::new() }), l.clone()));
            }
        }
    }
    for ((call_id, peer), link) in links {
        if !rt.sessions().listens(&call_id, "onRTCStateReport") {
            continue;
        }
        let sampler = rt.media().borrow_mut().samplers.get_or_insert_with((call_id.clone(), peer.clone()), Default::default).clone();
        let rt = rt.clone();
        js::spawn(async move {
            let Ok(raw) = link.stats().await else { return };
            let report = sampler.borrow_mut().build(&link, &raw).to_js();
            let _ = js_sys::Reflect::set(&report, &"pcName".into(), &peer.user_id.as_str().into());
            rt.sessions().notify(&call_id, "onRTCStateReport", vec![report]);
        });
    }
}

/// What the engine's recovery needs of an `iceConnectionState` (mesh links and SFU connections).
pub fn link_state(state: RtcIceConnectionState) -> Option<LinkState> {
    match state {
        RtcIceConnectionState::Connected | RtcIceConnectionState::Completed => Some(LinkState::Connected),
        RtcIceConnectionState::Disconnected => Some(LinkState::Disconnected),
        RtcIceConnectionState::Failed => Some(LinkState::Failed),
        _ => None,
    }
}
