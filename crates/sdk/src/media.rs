//! Carries out the engine's media actions with `web-rtc`, and reports back.
//!
//! Local media is kept per call; one `PeerLink` per (call, remote device). Track objects
//! (`RCTrack`) are kept per (call, track id) so the app gets the same object every time.

use std::rc::Rc;

use rtc_core::engine::{CaptureError, Input, MediaAction, MediaEvent, Peer, TrackKind};
use rtc_core::proto::{media_signal, IceCandidate};
use rtc_core::small_map::SmallMap;
use wasm_bindgen::JsValue;
use web_rtc::{Candidate, CaptureRequest, Kind, LocalMedia, MediaError, PeerEvent, PeerLink};

use crate::js;
use crate::runtime::{rt, Runtime};
use crate::track::RCTrack;

#[derive(Default)]
pub struct MediaShell {
    local: SmallMap<String, LocalMedia>,
    peers: SmallMap<(String, Peer), PeerLink>,
    tracks: SmallMap<(String, String), JsValue>,
}

fn kind_of(k: Kind) -> TrackKind {
    match k {
        Kind::Audio => TrackKind::Audio,
        Kind::Video => TrackKind::Video,
    }
}

impl MediaShell {
    pub fn track_object(&self, call_id: &str, track_id: &str) -> Option<JsValue> {
        self.tracks.get(&(call_id.to_string(), track_id.to_string())).cloned()
    }

    /// Carries out one engine action. Async work reports back through `feed`.
    pub fn act(rt: &Rc<Runtime>, action: MediaAction) {
        match action {
            MediaAction::Capture { call_id, video } => capture(rt, call_id, video),
            MediaAction::Release { call_id } => {
                let media = rt.media.borrow_mut().local.remove(&call_id);
                if let Some(m) = media {
                    m.stop();
                }
            }
            MediaAction::Connect { call_id, peer, offerer } => connect(rt, call_id, peer, offerer),
            MediaAction::Apply { call_id, peer, signal } => apply(rt, call_id, peer, signal),
            MediaAction::Disconnect { call_id, peer } => {
                let link = rt.media.borrow_mut().peers.remove(&(call_id, peer));
                if let Some(l) = link {
                    l.close();
                }
            }
            MediaAction::DropVideo { call_id } => drop_video(rt, &call_id),
            MediaAction::Rename { from, into } => {
                let mut m = rt.media.borrow_mut();
                if let Some(local) = m.local.remove(&from) {
                    m.local.insert(into.clone(), local);
                }
                let tracks: Vec<((String, String), JsValue)> = std::mem::take(&mut m.tracks).into_iter().collect();
                for ((c, t), v) in tracks {
                    m.tracks.insert((if c == from { into.clone() } else { c }, t), v);
                }
            }
            MediaAction::Leave { call_id } => {
                let links: Vec<PeerLink> = {
                    let mut m = rt.media.borrow_mut();
                    let keys: Vec<(String, Peer)> = m.peers.keys().filter(|(c, _)| *c == call_id).cloned().collect();
                    keys.into_iter().filter_map(|k| m.peers.remove(&k)).collect()
                };
                for l in links {
                    l.close();
                }
                rt.media.borrow_mut().tracks.retain(|(c, _), _| *c != call_id);
            }
        }
    }

    /// Closes everything (disconnect).
    pub fn stop_all(rt: &Rc<Runtime>) {
        let shell = std::mem::take(&mut *rt.media.borrow_mut());
        for (_, l) in shell.peers {
            l.close();
        }
        for (_, m) in shell.local {
            m.stop();
        }
    }

    fn register_track(&mut self, call_id: &str, track: RCTrack) -> String {
        let id = track.track_id();
        self.tracks.insert((call_id.to_string(), id.clone()), track.into());
        id
    }
}

/// The call went audio-only: stop the camera, stop sending video to every peer.
fn drop_video(rt: &Rc<Runtime>, call_id: &str) {
    let (video, links) = {
        let m = rt.media.borrow();
        let video = m.local.get(call_id).and_then(|l| l.video());
        let links: Vec<PeerLink> = m.peers.iter().filter(|((c, _), _)| c == call_id).map(|(_, l)| l.clone()).collect();
        (video, links)
    };
    if let Some(track) = video {
        track.stop();
    }
    for link in links {
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = link.replace_track(Kind::Video, None).await {
                js::warn(&format!("[rcall] could not stop sending video: {e}"));
            }
        });
    }
}

fn capture(rt: &Rc<Runtime>, call_id: String, video: bool) {
    let constraints = rt.constraints.borrow().get(&call_id).cloned().unwrap_or(JsValue::UNDEFINED);
    let req = CaptureRequest {
        audio: true,
        video,
        audio_constraints: crate::constraints::audio(&constraints),
        video_constraints: if video { crate::constraints::video(&constraints) } else { None },
    };
    let rt = rt.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let result = web_rtc::capture(&req).await;
        let result = match result {
            Ok(media) => {
                let me = rt.current_user().unwrap_or_default();
                let mut kinds = Vec::new();
                {
                    let mut shell = rt.media.borrow_mut();
                    for t in media.tracks() {
                        let kind = kind_of(web_rtc::track_kind(&t));
                        kinds.push(kind);
                        shell.register_track(&call_id, RCTrack::new(&me, kind, true, t, media.stream()));
                    }
                    shell.local.insert(call_id.clone(), media);
                }
                Ok(kinds)
            }
            Err(e) => {
                js::warn(&format!("[rcall] capture failed: {e}"));
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

fn connect(rt: &Rc<Runtime>, call_id: String, peer: Peer, offerer: bool) {
    let config = rt.peer_config.borrow().clone();
    let (c, p) = (call_id.clone(), peer.clone());
    let link = PeerLink::new(&config, move |ev| on_peer_event(&c, &p, ev));
    let link = match link {
        Ok(l) => l,
        Err(e) => return js::warn(&format!("[rcall] cannot create a peer connection: {e}")),
    };
    let local = rt.media.borrow().local.get(&call_id).cloned();
    if let Some(media) = local {
        if let Err(e) = link.add_local_media(&media) {
            js::warn(&format!("[rcall] cannot add local media: {e}"));
        }
    }
    rt.media.borrow_mut().peers.insert((call_id.clone(), peer.clone()), link.clone());
    if offerer {
        let rt = rt.clone();
        wasm_bindgen_futures::spawn_local(async move {
            match link.create_offer().await {
                Ok(sdp) => rt.feed(Input::Media(MediaEvent::LocalSignal {
                    call_id,
                    peer,
                    signal: media_signal::Kind::Offer(sdp),
                })),
                Err(e) => js::warn(&format!("[rcall] createOffer failed: {e}")),
            }
        });
    }
}

fn apply(rt: &Rc<Runtime>, call_id: String, peer: Peer, signal: media_signal::Kind) {
    let Some(link) = rt.media.borrow().peers.get(&(call_id.clone(), peer.clone())).cloned() else { return };
    let rt = rt.clone();
    wasm_bindgen_futures::spawn_local(async move {
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
            js::warn(&format!("[rcall] media negotiation step failed: {e}"));
        }
    });
}

/// Browser events of one peer connection. Fed from a fresh task: the handler may be dropped
/// by what the engine decides.
fn on_peer_event(call_id: &str, peer: &Peer, ev: PeerEvent) {
    let rt = rt();
    match ev {
        PeerEvent::LocalCandidate(c) => {
            let signal = media_signal::Kind::Candidate(IceCandidate {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_m_line_index: c.sdp_m_line_index.map(u32::from),
            });
            rt.feed_later(Input::Media(MediaEvent::LocalSignal {
                call_id: call_id.to_string(),
                peer: peer.clone(),
                signal,
            }));
        }
        PeerEvent::RemoteTrack { track, stream } => {
            let kind = kind_of(web_rtc::track_kind(&track));
            rt.media.borrow_mut().register_track(call_id, RCTrack::new(&peer.user_id, kind, false, track, stream));
            rt.feed_later(Input::Media(MediaEvent::RemoteTrack {
                call_id: call_id.to_string(),
                peer: peer.clone(),
                kind,
            }));
        }
        _ => {}
    }
}
