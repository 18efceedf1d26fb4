//! SFU mode (docs/sfu.md): a group call's two connections to the server's SFU — one publishing
//! the local tracks (video with simulcast), one receiving every other member's streams — as
//! the engine's `SfuAction`s ask. Signalling goes on the WebSocket as `Sfu*` frames; the SFU's
//! own candidates come inside its SDP, ours are trickled.

use std::rc::Rc;

use rtc_core::engine::{Input, MediaEvent, SfuAction, SfuEvent, SfuTrack};
use rtc_core::proto::{sfu_pc, ClientFrame};
use wasm_bindgen::{JsCast, JsValue};
use web_rtc::{Kind, LocalMedia, PeerEvent, PeerLink, RtcIceConnectionState};

use crate::js;
use crate::media::Host;
use crate::track::RCTrack;

/// One call's SFU connections.
#[derive(Default)]
pub struct SfuLinks {
    pub publisher: Option<PeerLink>,
    pub subscriber: Option<PeerLink>,
    /// Whose stream each `mid` of the receiving connection carries (latest SFU offer), and
    /// whether its track was reported to the engine.
    pub tracks: Vec<(SfuTrack, bool)>,
    /// The highest simulcast layer anyone receives of our camera (`SfuAction::Layers`), set
    /// again on every new publishing connection; `None`: all.
    pub layers: Option<u32>,
}

impl SfuLinks {
    pub fn close(&self) {
        for (_, l) in self.named() {
            if let Some(l) = l {
                l.close();
            }
        }
    }

    /// Both connections with their `onRTCStateReport` names.
    pub fn named(&self) -> [(&'static str, &Option<PeerLink>); 2] {
        [("sfu-publisher", &self.publisher), ("sfu-subscriber", &self.subscriber)]
    }
}

pub fn act<H: Host>(rt: &Rc<H>, action: SfuAction) {
    match action {
        SfuAction::Send(body) => {
            // Lost while disconnected: after a reconnect the server restarts the device's SFU
            // connections (`SfuRestart`).
            rt.write(&ClientFrame::new(body));
        }
        SfuAction::Publish { call_id, video } => publish(rt, call_id, video, None),
        SfuAction::PublishAnswer { call_id, sdp } => {
            let Some(link) = link(rt, &call_id, true) else { return };
            let rt = rt.clone();
            js::spawn(async move {
                if let Err(e) = link.accept_answer(&sdp).await {
                    js::warn_err("the SFU's answer was refused", &e);
                }
                // A muted track sends nothing (see `MediaAction::SetEnabled`), also on senders
                // negotiated just now.
                let local = rt.media().borrow().local(&call_id);
                for t in local.iter().flat_map(|m| m.tracks()).filter(|t| !t.enabled()) {
                    let _ = link.attach_none(web_rtc::track_kind(&t)).await;
                }
                // Layers nobody receives stay paused on a new connection too.
                let (max, on) = layers_now(&rt, &call_id);
                set_layers(link, max, on).await;
            });
        }
        SfuAction::Republish { call_id, video, ice_restart } => publish(rt, call_id, video, Some(ice_restart)),
        SfuAction::Subscribe { call_id, sdp, tracks } => subscribe(rt, call_id, sdp, tracks),
        SfuAction::Reset { call_id } => close(rt, &call_id),
        SfuAction::Layers { call_id, max_substream } => {
            rt.media().borrow_mut().sfu.get_or_insert_with(call_id.clone(), Default::default).layers = Some(max_substream);
            if let Some(link) = link(rt, &call_id, true) {
                let (max, on) = layers_now(rt, &call_id);
                js::spawn(set_layers(link, max, on));
            }
        }
    }
}

/// The highest layer subscribers take of the call's camera (`None`: all) and whether the
/// camera sends, as they are now: read where they are applied, after anything awaited first
/// (an answer being applied, a track being swapped). Read before, they undid a
/// `SfuPublisherLayers` that came meanwhile: a last joiner whose one pause arrived while its
/// publish answer was being applied kept sending its high layer for the whole call.
pub fn layers_now<H: Host>(rt: &Rc<H>, call_id: &str) -> (Option<u32>, bool) {
    let media = rt.media().borrow();
    (media.sfu.get(call_id).and_then(|s| s.layers), camera_on(media.local(call_id).as_ref()))
}

/// Pauses the camera's simulcast layers above `max` (none: sends them all), or every layer
/// while the camera is off (`camera_on` false: nothing goes out, not even padding).
pub async fn set_layers(link: PeerLink, max: Option<u32>, camera_on: bool) {
    let active = camera_on.then_some(max.unwrap_or(u32::MAX));
    if let Err(e) = link.set_active_layers(active).await {
        js::warn_err("pausing simulcast layers failed", &e);
    }
}

/// Whether the call's camera sends (captured, not released, not muted).
fn camera_on(local: Option<&LocalMedia>) -> bool {
    let live = |v: &web_rtc::MediaStreamTrack| js::get_string(v, "readyState").as_deref() == Some("live");
    local.and_then(|m| m.video()).is_some_and(|v| v.enabled() && live(&v))
}

/// Closes the call's SFU connections and forgets the remote tracks they brought.
pub fn close<H: Host>(rt: &Rc<H>, call_id: &str) {
    let links = rt.media().borrow_mut().sfu.remove(call_id);
    if let Some(l) = links {
        l.close();
        rt.media().borrow_mut().forget_remote(call_id, &l.tracks);
    }
}

/// The call's publishing (`true`) or receiving connection.
fn link<H: Host>(rt: &Rc<H>, call_id: &str, publishing: bool) -> Option<PeerLink> {
    let media = rt.media().borrow();
    let s = media.sfu.get(call_id)?;
    if publishing {
        s.publisher.clone()
    } else {
        s.subscriber.clone()
    }
}

/// The publishing connection's current local media (audio first; video with its layers).
pub fn publisher<H: Host>(rt: &Rc<H>, call_id: &str) -> Option<PeerLink> {
    link(rt, call_id, true)
}

fn new_link<H: Host>(rt: &Rc<H>, call_id: &str, pc: u32) -> Option<PeerLink> {
    let config = rt.peer_config();
    let c = call_id.to_string();
    let host = rt.clone();
    match PeerLink::new(&config, move |ev| on_event(&host, &c, pc, ev)) {
        Ok(l) => Some(l),
        Err(e) => {
            js::warn_err("cannot create a peer connection", &e);
            None
        }
    }
}

/// Publishes the call's local tracks: on a new connection (an older one is closed), or with
/// `again` (`SfuAction::Republish`: `Some(ice_restart)`) by renegotiating the existing one, adding
/// a camera it has no sender for when `video`.
fn publish<H: Host>(rt: &Rc<H>, call_id: String, video: bool, again: Option<bool>) {
    let old = rt.media().borrow_mut().sfu.get_mut(&call_id).and_then(|s| s.publisher.take());
    let local: Option<LocalMedia> = rt.media().borrow().local(&call_id);
    let (link, ice_restart, fresh) = match (old, again) {
        (Some(l), Some(restart)) if !l.is_closed() => (l, restart, false),
        (old, _) => {
            if let Some(l) = old {
                l.close();
            }
            let Some(l) = new_link(rt, &call_id, sfu_pc::PUBLISHER) else { return };
            (l, false, true)
        }
    };
    // Nothing to renegotiate: an empty offer tells the engine so.
    let mut changed = fresh || ice_restart;
    if let Some(media) = &local {
        let stream = media.stream();
        let mut added = Ok(());
        if let Some(a) = media.audio().filter(|_| !link.has_sender(Kind::Audio)) {
            added = added.and(link.add_sender(&a, &stream, &[]));
        }
        if let Some(v) = media.video().filter(|_| video && !link.has_sender(Kind::Video)) {
            let (w, h) = size(&v);
            added = added.and(link.add_sender(&v, &stream, &web_rtc::simulcast::layers(w, h)));
            changed = true;
        }
        if let Err(e) = added {
            js::warn_err("cannot publish to the SFU", &e);
        }
    }
    rt.media().borrow_mut().sfu.get_or_insert_with(call_id.clone(), Default::default).publisher = Some(link.clone());
    let rt = rt.clone();
    js::spawn(async move {
        let offer = match (changed, ice_restart) {
            (false, _) => Ok(String::new()),
            (true, true) => link.restart_ice().await,
            (true, false) => link.create_offer().await,
        };
        match offer {
            Ok(sdp) => rt.feed(Input::Media(MediaEvent::Sfu(SfuEvent::PublishOffer { call_id, sdp }))),
            Err(e) => js::warn_err("createOffer for the SFU failed", &e),
        }
    });
}

/// The capture size of a camera track (0 x 0 when the browser does not say).
fn size(track: &web_rtc::MediaStreamTrack) -> (u32, u32) {
    // `getSettings()` through Reflect: web-sys gates it behind a feature this crate does not need.
    let get = js_sys::Reflect::get(track, &"getSettings".into()).ok();
    let settings = get.and_then(|f| f.dyn_into::<js_sys::Function>().ok()).and_then(|f| f.call0(track).ok()).unwrap_or_default();
    let dim = |k: &str| js_sys::Reflect::get(&settings, &k.into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) as u32;
    (dim("width"), dim("height"))
}

fn subscribe<H: Host>(rt: &Rc<H>, call_id: String, sdp: String, tracks: Vec<SfuTrack>) {
    let existing = link(rt, &call_id, false);
    let link = match existing {
        Some(l) => l,
        // Nothing subscribed yet and nothing to negotiate.
        None if sdp.is_empty() => return,
        None => {
            let Some(l) = new_link(rt, &call_id, sfu_pc::SUBSCRIBER) else { return };
            rt.media().borrow_mut().sfu.get_or_insert_with(call_id.clone(), Default::default).subscriber = Some(l.clone());
            l
        }
    };
    let rt = rt.clone();
    js::spawn(async move {
        // An empty SDP: the subscription did not change the connection (only the layers or
        // the mid map), so there is nothing to answer.
        if !sdp.is_empty() {
            let answer = match link.accept_offer(&sdp).await {
                Ok(a) => a,
                Err(e) => {
                    js::warn_err("the SFU's offer was refused", &e);
                    // Empty: the engine goes on with the next offer.
                    let ev = SfuEvent::SubscribeAnswer { call_id: call_id.clone(), sdp: String::new() };
                    return rt.feed(Input::Media(MediaEvent::Sfu(ev)));
                }
            };
            rt.feed(Input::Media(MediaEvent::Sfu(SfuEvent::SubscribeAnswer { call_id: call_id.clone(), sdp: answer })));
        }
        // Each (mid, feed) new in this offer: its track (muted until media flows, as a mesh
        // link's at negotiation) registered and reported once. A recycled mid keeps its track
        // object, so the browser's `track` event alone would miss the new stream on it.
        let mut fresh = Vec::new();
        {
            let mut shell = rt.media().borrow_mut();
            let Some(s) = shell.sfu.get_mut(&call_id) else { return };
            let before = std::mem::take(&mut s.tracks);
            for t in tracks {
                let known = before.iter().any(|(b, reported)| *reported && b.mid == t.mid && b.feed == t.feed);
                s.tracks.push((t.clone(), known));
                if !known {
                    fresh.push(t);
                }
            }
        }
        for t in fresh {
            let Some(track) = link.receiver_track(&t.mid) else { continue };
            let Ok(stream) = web_rtc::MediaStream::new_with_tracks(&js_sys::Array::of1(&track)) else { continue };
            let remote = RCTrack::new(&call_id, &t.user_id, t.kind, false, track, stream);
            {
                let mut shell = rt.media().borrow_mut();
                shell.register_remote(&call_id, &t.feed, remote);
                if let Some(e) = shell.sfu.get_mut(&call_id).and_then(|s| s.tracks.iter_mut().find(|(x, _)| *x == t)) {
                    e.1 = true;
                }
            }
            rt.feed(Input::Media(MediaEvent::Sfu(SfuEvent::Track { call_id: call_id.clone(), mid: t.mid })));
        }
    });
}

/// Browser events of one SFU connection (fed from a fresh task, as for peer links).
fn on_event<H: Host>(rt: &Rc<H>, call_id: &str, pc: u32, ev: PeerEvent) {
    let rt = rt.clone();
    let call_id = call_id.to_string();
    match ev {
        PeerEvent::LocalCandidate(c) => {
            let ev = SfuEvent::Candidate {
                call_id,
                pc,
                candidate: c.candidate,
                sdp_mid: c.sdp_mid.unwrap_or_default(),
                sdp_mline_index: c.sdp_m_line_index.map_or(0, u32::from),
            };
            rt.feed_later(Input::Media(MediaEvent::Sfu(ev)));
        }
        PeerEvent::LocalCandidatesComplete => {
            let ev = SfuEvent::Candidate { call_id, pc, candidate: String::new(), sdp_mid: String::new(), sdp_mline_index: 0 };
            rt.feed_later(Input::Media(MediaEvent::Sfu(ev)));
        }
        PeerEvent::IceConnectionState(state) => {
            // The engine restarts a connection whose transport is lost.
            if let Some(s) = crate::media::link_state(state) {
                rt.feed_later(Input::Media(MediaEvent::Sfu(SfuEvent::State { call_id: call_id.clone(), pc, state: s })));
            }
            // The app sees the receiving connection's states (the media it shows), and a
            // failed publishing connection.
            if pc == sfu_pc::SUBSCRIBER || state == RtcIceConnectionState::Failed {
                let state = JsValue::from(state);
                js::spawn(async move { rt.sessions().notify(&call_id, "onICEConnectionStateChange", vec![state]) });
            }
        }
        _ => {}
    }
}
