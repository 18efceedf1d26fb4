//! Helpers shared by the browser test binaries: timing, a `Side` (a link
//! plus the events it reported), offer/answer with trickled candidates.
#![allow(dead_code)] // each test binary uses a subset

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_rtc::*;
use web_sys::{HtmlVideoElement, RtcPeerConnectionState};

pub async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

pub fn now_ms() -> f64 {
    web_sys::window().unwrap().performance().unwrap().now()
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `timeout_ms`.
pub async fn wait_for(what: &str, timeout_ms: f64, mut cond: impl FnMut() -> bool) {
    let start = now_ms();
    while !cond() {
        assert!(
            now_ms() - start < timeout_ms,
            "timed out waiting for {what}"
        );
        sleep(10).await;
    }
}

/// A link plus everything its callback received.
pub struct Side {
    pub link: PeerLink,
    pub events: Rc<RefCell<Vec<PeerEvent>>>,
    /// How many of `events` were already scanned for candidates to forward.
    forwarded: Cell<usize>,
}

impl Side {
    pub fn new() -> Side {
        let events = Rc::new(RefCell::new(Vec::new()));
        let sink = events.clone();
        let link = PeerLink::new(&PeerConfig::default(), move |ev| sink.borrow_mut().push(ev))
            .expect("new PeerLink");
        Side {
            link,
            events,
            forwarded: Cell::new(0),
        }
    }

    pub fn count(&self, f: impl Fn(&PeerEvent) -> bool) -> usize {
        self.events.borrow().iter().filter(|e| f(e)).count()
    }

    pub fn local_candidates(&self) -> usize {
        self.count(|e| matches!(e, PeerEvent::LocalCandidate(_)))
    }

    pub fn remote_tracks(&self) -> Vec<(MediaStreamTrack, MediaStream)> {
        self.events
            .borrow()
            .iter()
            .filter_map(|e| match e {
                PeerEvent::RemoteTrack { track, stream } => {
                    Some((Clone::clone(track), Clone::clone(stream)))
                }
                _ => None,
            })
            .collect()
    }

    pub fn remote_track(&self, kind: Kind) -> Option<(MediaStreamTrack, MediaStream)> {
        self.remote_tracks()
            .into_iter()
            .find(|(t, _)| track_kind(t) == kind)
    }

    pub fn connected(&self) -> bool {
        self.events.borrow().iter().any(|e| {
            matches!(
                e,
                PeerEvent::ConnectionState(RtcPeerConnectionState::Connected)
            )
        })
    }

    /// Sends this side's not yet forwarded local candidates to `to`.
    pub async fn forward_candidates(&self, to: &Side) {
        let new: Vec<Candidate> = {
            let events = self.events.borrow();
            let new = events[self.forwarded.get()..]
                .iter()
                .filter_map(|e| match e {
                    PeerEvent::LocalCandidate(c) => Some(c.clone()),
                    _ => None,
                })
                .collect();
            self.forwarded.set(events.len());
            new
        };
        for c in new {
            to.link
                .add_remote_candidate(c)
                .await
                .expect("add_remote_candidate");
        }
    }
}

pub fn video_element() -> HtmlVideoElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    let v: HtmlVideoElement = doc.create_element("video").unwrap().unchecked_into();
    v.set_muted(true);
    v.set_width(320);
    v.set_height(240);
    doc.body().unwrap().append_child(&v).unwrap();
    v
}

pub fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    o.into()
}

/// Offer/answer between `a` (offerer) and `b` with trickled candidates,
/// some of them delivered to `b` before its remote description (queued).
/// Returns the time the offer was started (ms, performance.now()).
pub async fn connect(a: &Side, b: &Side) -> f64 {
    let t0 = now_ms();
    let offer = a.link.create_offer().await.expect("create_offer");
    assert!(offer.contains("m=audio"), "offer has an audio section");

    // Candidates that reach `b` before the offer must be queued, not fail.
    wait_for("the offerer's first candidates", 5000.0, || {
        a.local_candidates() > 0
    })
    .await;
    a.forward_candidates(b).await;
    assert!(
        b.link.pending_candidates() > 0,
        "early candidates are queued"
    );

    let answer = b.link.accept_offer(&offer).await.expect("accept_offer");
    assert_eq!(
        b.link.pending_candidates(),
        0,
        "queue flushed after the offer"
    );
    // Same on the other side: b's candidates may reach a before the answer.
    wait_for("the answerer's first candidates", 5000.0, || {
        b.local_candidates() > 0
    })
    .await;
    b.forward_candidates(a).await;
    assert!(
        a.link.pending_candidates() > 0,
        "early candidates are queued"
    );
    a.link.accept_answer(&answer).await.expect("accept_answer");
    assert_eq!(a.link.pending_candidates(), 0);
    t0
}

/// Keeps trickling candidates both ways until `done` holds.
pub async fn pump_until(a: &Side, b: &Side, what: &str, mut done: impl FnMut() -> bool) {
    let start = now_ms();
    while !done() {
        assert!(now_ms() - start < 10_000.0, "timed out waiting for {what}");
        a.forward_candidates(b).await;
        b.forward_candidates(a).await;
        sleep(10).await;
    }
}

pub fn no_rejected(side: &Side) {
    let rejected: Vec<String> = side
        .events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            PeerEvent::RemoteCandidateRejected { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .collect();
    assert!(rejected.is_empty(), "rejected candidates: {rejected:?}");
}

impl Side {
    /// How many `RemoteTrackUnmuted` events were reported for `kind`.
    pub fn unmuted(&self, kind: Kind) -> usize {
        self.count(
            |e| matches!(e, PeerEvent::RemoteTrackUnmuted { track } if track_kind(track) == kind),
        )
    }

    /// How many `RemoteTrackMuted` events were reported for `kind`.
    pub fn muted(&self, kind: Kind) -> usize {
        self.count(
            |e| matches!(e, PeerEvent::RemoteTrackMuted { track } if track_kind(track) == kind),
        )
    }
}

/// Counts `negotiationneeded` events of a link's connection (the link does
/// not handle them: nothing here may need a renegotiation). Keep the
/// returned closure alive while counting.
pub fn count_negotiation_needed(
    link: &PeerLink,
) -> (Rc<Cell<u32>>, wasm_bindgen::closure::Closure<dyn FnMut()>) {
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let f = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || n2.set(n2.get() + 1));
    link.raw()
        .add_event_listener_with_callback("negotiationneeded", f.as_ref().unchecked_ref())
        .unwrap();
    (n, f)
}

/// RTP payload bytes (sent, received) over all `outbound-rtp` /
/// `inbound-rtp` stats of a link; absent stats count as 0.
pub async fn rtp_bytes(link: &PeerLink) -> (f64, f64) {
    let report = link.stats().await.unwrap();
    let (mut sent, mut received) = (0.0, 0.0);
    for s in report.values().into_iter().filter_map(|v| v.ok()) {
        let ty = Reflect::get(&s, &"type".into()).unwrap().as_string();
        let num = |k: &str| Reflect::get(&s, &k.into()).unwrap().as_f64().unwrap_or(0.0);
        match ty.as_deref() {
            Some("outbound-rtp") => sent += num("bytesSent"),
            Some("inbound-rtp") => received += num("bytesReceived"),
            _ => {}
        }
    }
    (sent, received)
}

/// Frames decoded so far from the link's inbound video.
pub async fn frames_decoded(link: &PeerLink) -> u64 {
    link.inbound_video().await.unwrap().frames_decoded
}

/// `Object.keys(v)`, sorted.
pub fn keys(v: &JsValue) -> Vec<String> {
    let mut k: Vec<String> = Object::keys(v.unchecked_ref::<Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .collect();
    k.sort();
    k
}

pub fn field(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(k)).unwrap()
}
