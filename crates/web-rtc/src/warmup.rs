//! Warm video encoders while a call rings, so the first frame after `accept()` decodes at once.
//!
//! Why: on a connected link, a video sender started with `replaceTrack` loses about two camera
//! frame intervals. Chromium initialises the encoder with the first frame it gets and does not
//! send that frame (the encoder waits for its first bitrate allocation). And the receiving decoder
//! needs a keyframe. Measured with `bench/pipeline` (fake 20 fps camera, `replaceTrack` → first
//! remote frame):
//! - warm camera: 83 ms → 42 ms;
//! - camera opened at the same moment: 121 ms → 78 ms.
//!
//! How, per pre-connected link (see [`PeerLink::prepare`](crate::PeerLink::prepare)):
//! - **Sender gate.** The video sender gets an encoded transform (`RTCRtpScriptTransform`) whose
//!   worker drops every encoded frame until [`SenderGate::open`]. The sender first carries a
//!   blank canvas track (the [`Primer`]). Once the encoder has produced its first frame (it is
//!   initialised and has a bitrate), the primer is taken off again. The camera and microphone
//!   are never touched, and no frame reaches the peer before the link is attached.
//! - **Receiver tap.** Every video receiver gets a pass-through transform. Through it,
//!   [`ReceiverTap::request_key_frame`] sends an RTCP keyframe request the moment this side
//!   knows the peer will start (someone accepted). The peer's encoder keeps the request until its
//!   camera's first frame, which then goes out as a keyframe. A receiver whose first frame is not
//!   a keyframe asks at once too (faster than the browser's own recovery).
//!
//! Both need the one shared worker ([`start`]) to be up. Without `RTCRtpScriptTransform`
//! (older browsers), or when the worker cannot start (a CSP without `blob:` workers), nothing
//! here is used and links work as before.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    Blob, BlobPropertyBag, CanvasRenderingContext2d, HtmlCanvasElement, MediaStreamTrack,
    MessageEvent, RtcRtpReceiver, RtcRtpSender, Url, Worker,
};

/// The worker behind every transform of the page. Main → worker: `[op, id]` with op `open`
/// (a sender gate lets frames through from now on), `key` (a receiver tap asks for a keyframe),
/// `close` (forget the id). Worker → main: `0` once running, a gate's id when that gate saw its
/// first encoded frame (the encoder is warm).
const WORKER_JS: &str = r#"const g=new Map(),get=i=>{let s=g.get(i);s||g.set(i,s={});return s};
onrtctransform=e=>{const t=e.transformer,o=t.options,s=get(o.id),ask=()=>t.sendKeyFrameRequest&&t.sendKeyFrameRequest().catch(()=>{});
s.t=t;if(s.want){s.want=0;ask()}
t.readable.pipeThrough(new TransformStream({transform(f,c){if(o.send){if(!s.open){s.warm||(s.warm=1,postMessage(o.id));return}}
else if(!s.key){if(f.type==='key')s.key=1;else if(!s.asked){s.asked=1;ask()}}c.enqueue(f)}})).pipeTo(t.writable).catch(()=>{})};
onmessage=e=>{const[op,i]=e.data;if(op==='close')return g.delete(i);const s=get(i);
if(op==='open')s.open=1;else if(op==='key'){if(s.t&&s.t.sendKeyFrameRequest)s.t.sendKeyFrameRequest().catch(()=>{});else s.want=1}};
postMessage(0);"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = RTCRtpScriptTransform)]
    type ScriptTransform;

    /// web-sys binds this only behind `web_sys_unstable_apis`.
    #[wasm_bindgen(constructor, catch, js_class = "RTCRtpScriptTransform")]
    fn new(worker: &Worker, options: &JsValue) -> Result<ScriptTransform, JsValue>;
}

type WhenWarm = Box<dyn FnOnce()>;

struct Hub {
    worker: Worker,
    ready: Cell<bool>,
    next_id: Cell<u32>,
    /// What waits for a gate's first encoded frame, by gate id (a few at most).
    warming: RefCell<Vec<(u32, WhenWarm)>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

thread_local! {
    static HUB: RefCell<Option<Rc<Hub>>> = const { RefCell::new(None) };
    static TRIED: Cell<bool> = const { Cell::new(false) };
}

/// Starts the shared worker, once per page; later calls do nothing. Call it early (the SDK does
/// when it is set up): links negotiated before the worker is up are not warmed. Does nothing
/// where the browser lacks `RTCRtpScriptTransform` or refuses the worker.
pub fn start() {
    if TRIED.with(|t| t.replace(true)) {
        return;
    }
    let has_transform = Reflect::has(
        &js_sys::global(),
        &JsValue::from_str("RTCRtpScriptTransform"),
    )
    .unwrap_or(false);
    if !has_transform {
        return;
    }
    let Some(worker) = spawn_worker() else { return };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|ev: MessageEvent| {
        let Some(hub) = hub() else { return };
        match ev.data().as_f64() {
            Some(0.0) => hub.ready.set(true),
            Some(id) => wake(&hub, id as u32),
            None => {}
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let hub = Hub {
        worker,
        ready: Cell::new(false),
        next_id: Cell::new(1),
        warming: RefCell::new(Vec::new()),
        _on_message: on_message,
    };
    HUB.with(|h| *h.borrow_mut() = Some(Rc::new(hub)));
}

fn spawn_worker() -> Option<Worker> {
    let bag = BlobPropertyBag::new();
    bag.set_type("text/javascript");
    let blob =
        Blob::new_with_str_sequence_and_options(&Array::of1(&JsValue::from_str(WORKER_JS)), &bag)
            .ok()?;
    let url = Url::create_object_url_with_blob(&blob).ok()?;
    let worker = Worker::new(&url).ok();
    let _ = Url::revoke_object_url(&url);
    worker
}

/// The worker, once it runs.
fn hub() -> Option<Rc<Hub>> {
    HUB.with(|h| h.borrow().clone())
}

fn ready_hub() -> Option<Rc<Hub>> {
    hub().filter(|h| h.ready.get())
}

/// Whether links negotiated now get gates and taps.
pub fn is_ready() -> bool {
    ready_hub().is_some()
}

/// Installs a transform on `target` (a sender or receiver) under a new id.
fn install(hub: &Hub, target: &JsValue, send: bool) -> Option<u32> {
    let id = hub.next_id.get();
    hub.next_id.set(id + 1);
    let options = js_sys::Object::new();
    Reflect::set(&options, &"id".into(), &id.into()).ok()?;
    Reflect::set(&options, &"send".into(), &send.into()).ok()?;
    let transform = ScriptTransform::new(&hub.worker, &options).ok()?;
    Reflect::set(target, &"transform".into(), &transform).ok()?;
    Some(id)
}

fn post(hub: &Hub, op: &str, id: u32) {
    let _ = hub
        .worker
        .post_message(&Array::of2(&JsValue::from_str(op), &JsValue::from(id)));
}

/// A video sender whose encoded frames are dropped until [`open`](Self::open).
#[derive(Debug)]
pub struct SenderGate {
    id: u32,
    opened: Cell<bool>,
}

impl SenderGate {
    /// Puts a gate on `sender`; `None` when the worker is not up (then the sender is untouched).
    pub fn install(sender: &RtcRtpSender) -> Option<SenderGate> {
        let hub = ready_hub()?;
        let id = install(&hub, sender, true)?;
        Some(SenderGate {
            id,
            opened: Cell::new(false),
        })
    }

    /// Calls `f` once the encoder behind the gate produced its first frame (it is warm), or
    /// when the gate is opened or dropped before that; at once if it is open already.
    pub fn when_warm(&self, f: impl FnOnce() + 'static) {
        match hub().filter(|_| !self.opened.get()) {
            Some(hub) => hub.warming.borrow_mut().push((self.id, Box::new(f))),
            None => f(),
        }
    }

    /// Lets every frame through from now on. Idempotent.
    pub fn open(&self) {
        if self.opened.replace(true) {
            return;
        }
        if let Some(hub) = hub() {
            post(&hub, "open", self.id);
            wake(&hub, self.id); // nothing left to warm up for
        }
    }

    /// Whether [`open`](Self::open) was called.
    pub fn is_open(&self) -> bool {
        self.opened.get()
    }
}

impl Drop for SenderGate {
    fn drop(&mut self) {
        if let Some(hub) = hub() {
            wake(&hub, self.id);
            post(&hub, "close", self.id);
        }
    }
}

/// Runs what waits for gate `id` to be warm, if anything.
fn wake(hub: &Hub, id: u32) {
    let waiting = {
        let mut warming = hub.warming.borrow_mut();
        let at = warming.iter().position(|(i, _)| *i == id);
        at.map(|at| warming.swap_remove(at).1)
    };
    if let Some(f) = waiting {
        f();
    }
}

/// A pass-through transform on a video receiver, to ask the peer for keyframes.
#[derive(Debug)]
pub struct ReceiverTap {
    id: u32,
}

impl ReceiverTap {
    /// Taps `receiver`; `None` when the worker is not up (then the receiver is untouched).
    pub fn install(receiver: &RtcRtpReceiver) -> Option<ReceiverTap> {
        let hub = ready_hub()?;
        install(&hub, receiver, false).map(|id| ReceiverTap { id })
    }

    /// Sends an RTCP keyframe request (PLI) to the peer now, or as soon as the transform runs.
    pub fn request_key_frame(&self) {
        if let Some(hub) = hub() {
            post(&hub, "key", self.id);
        }
    }
}

impl Drop for ReceiverTap {
    fn drop(&mut self) {
        if let Some(hub) = hub() {
            post(&hub, "close", self.id);
        }
    }
}

/// A blank video track for a gated sender to warm its encoder on: a black canvas, repainted
/// ten times a second so it keeps producing frames until the link connects. Stopped when dropped.
pub struct Primer {
    track: MediaStreamTrack,
    interval: i32,
    _paint: Closure<dyn FnMut()>,
}

impl std::fmt::Debug for Primer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primer")
            .field("track", &self.track.id())
            .finish()
    }
}

impl Primer {
    /// 640x480: CallLib's default resolution, so a default camera replaces it without an encoder
    /// reconfiguration.
    pub fn new() -> Option<Primer> {
        let window = web_sys::window()?;
        let canvas: HtmlCanvasElement = window
            .document()?
            .create_element("canvas")
            .ok()?
            .dyn_into()
            .ok()?;
        canvas.set_width(640);
        canvas.set_height(480);
        let ctx: CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
        ctx.fill_rect(0.0, 0.0, 640.0, 480.0);
        let stream = canvas.capture_stream_with_frame_request_rate(10.0).ok()?;
        let track: MediaStreamTrack = stream.get_video_tracks().get(0).dyn_into().ok()?;
        let paint = Closure::<dyn FnMut()>::new(move || ctx.fill_rect(0.0, 0.0, 640.0, 480.0));
        let interval = window
            .set_interval_with_callback_and_timeout_and_arguments_0(
                paint.as_ref().unchecked_ref(),
                100,
            )
            .ok()?;
        Some(Primer {
            track,
            interval,
            _paint: paint,
        })
    }

    /// The blank track.
    pub fn track(&self) -> &MediaStreamTrack {
        &self.track
    }
}

impl Drop for Primer {
    fn drop(&mut self) {
        self.track.stop();
        if let Some(w) = web_sys::window() {
            w.clear_interval_with_handle(self.interval);
        }
    }
}
