//! The sessions as the app sees them: one `RCCallSession` object per call (the same object every
//! time), each session's listener, the constraints given to `call()`/`accept()`, and the
//! install options (`onSession`, `onSessionClose`…). Owned by the runtime ([`Sessions`]); the
//! engine's view of a call is not kept here (the engine has it).
//!
//! Re-entrancy: no borrow is held while a listener runs (it may call back into the SDK).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use rtc_core::small_map::SmallMap;
use wasm_bindgen::prelude::*;

use crate::js;

/// What `installPlugin(RCCall.installer, options)` was given.
pub struct CallOptions {
    pub on_session: Function,
    pub on_session_close: Function,
    pub on_offline_record: Option<Function>,
    pub lang: String,
    /// `isOffCameraWhenVideoDisable` (default true).
    pub camera_off: bool,
    /// `isAllowDemotionGetStream`: fall back to audio when the camera cannot be captured.
    pub demotion: bool,
    /// 2 with `isAllowPublishRetry` or `isAllowSubscribeRetry`, else 0: how often a peer link
    /// whose first negotiation failed is negotiated again (`EngineConfig::setup_retries`).
    pub setup_retries: u8,
    /// (publish, subscribe) retries through the SFU (`EngineConfig::sfu_publish_retries`).
    pub sfu_retries: (u8, u8),
}

/// `RCCallSession`: one call as the app sees it (its methods: `crate::session`). It reads its
/// call id from a cell shared with [`Sessions`], which re-points it when crossing calls merge.
#[wasm_bindgen]
pub struct RCCallSession {
    pub(crate) id: Rc<RefCell<String>>,
}

/// A session object and the id cell it reads.
type SessionEntry = (JsValue, Rc<RefCell<String>>);

#[derive(Default)]
pub struct Sessions {
    options: RefCell<Option<Rc<CallOptions>>>,
    /// Session objects handed to the app, by call id, with the id cell they read.
    objects: RefCell<SmallMap<String, SessionEntry>>,
    /// Listener of each session, by call id.
    listeners: RefCell<SmallMap<String, JsValue>>,
    /// Sessions closed during the current drive: their listener and object stay reachable
    /// until the engine's outputs are drained, because CallLib fires `onHungup` right AFTER
    /// `onSessionClose` when a call ends before connecting (spec C.13.2).
    closing: RefCell<SmallMap<String, JsValue>>,
    /// CallLib constraints given to call()/accept(), by call id.
    constraints: RefCell<SmallMap<String, JsValue>>,
    /// Audio constraints of a pending `changeAudioDevice()`, by call id.
    mic_constraints: RefCell<SmallMap<String, JsValue>>,
}

impl Sessions {
    pub fn set_options(&self, options: CallOptions) {
        *self.options.borrow_mut() = Some(Rc::new(options));
    }

    /// The install options (`None` before `installPlugin(RCCall.installer)`).
    pub fn options(&self) -> Option<Rc<CallOptions>> {
        self.options.borrow().clone()
    }

    /// The session object for `call_id`, created on first use.
    pub fn object(&self, call_id: &str) -> JsValue {
        self.objects
            .borrow_mut()
            .get_or_insert_with(call_id.to_string(), || {
                let id = Rc::new(RefCell::new(call_id.to_string()));
                (RCCallSession { id: id.clone() }.into(), id)
            })
            .0
            .clone()
    }

    /// The session is over: removed from the client's list (spec A.7) but reachable by its
    /// listener until [`Sessions::drained`]. Returns its object, if the app has one.
    pub fn close(&self, call_id: &str) -> Option<JsValue> {
        let session = self.objects.borrow_mut().remove(call_id).map(|(s, _)| s);
        if let Some(s) = &session {
            self.closing.borrow_mut().insert(call_id.to_string(), s.clone());
        }
        session
    }

    /// The engine's outputs are drained: the sessions closed meanwhile go for good.
    pub fn drained(&self) {
        let closed = std::mem::take(&mut *self.closing.borrow_mut());
        for call_id in closed.keys() {
            self.forget(call_id);
        }
    }

    pub fn set_listener(&self, call_id: &str, listener: JsValue) {
        let copy = js::shallow_copy(&listener);
        // The seed's stats sample spells the key `OnRTCStateReport`; CallLib read only
        // `onRTCStateReport`. Both work here (the lower-case one wins when both are given).
        if js::get_function(&copy, "onRTCStateReport").is_none() {
            if let Some(f) = js::get_function(&copy, "OnRTCStateReport") {
                let _ = js_sys::Reflect::set(&copy, &"onRTCStateReport".into(), &f);
            }
        }
        self.listeners.borrow_mut().insert(call_id.to_string(), copy);
    }

    pub fn has_listener(&self, call_id: &str) -> bool {
        self.listeners.borrow().get(call_id).is_some()
    }

    /// Forgets the listener and constraints of a call that ended or never started.
    pub fn forget(&self, call_id: &str) {
        self.listeners.borrow_mut().remove(call_id);
        self.constraints.borrow_mut().remove(call_id);
    }

    pub fn set_constraints(&self, call_id: &str, constraints: JsValue) {
        self.constraints.borrow_mut().insert(call_id.to_string(), constraints);
    }

    /// The constraints given to `call()`/`accept()` (`undefined` if none).
    pub fn constraints(&self, call_id: &str) -> JsValue {
        self.constraints.borrow().get(call_id).cloned().unwrap_or(JsValue::UNDEFINED)
    }

    pub fn set_mic_constraints(&self, call_id: &str, constraints: JsValue) {
        self.mic_constraints.borrow_mut().insert(call_id.to_string(), constraints);
    }

    /// The constraints of the `changeAudioDevice()` being carried out (`undefined` if none).
    pub fn take_mic_constraints(&self, call_id: &str) -> JsValue {
        self.mic_constraints.borrow_mut().remove(call_id).unwrap_or(JsValue::UNDEFINED)
    }

    /// Crossing calls merged: everything known under `from` now belongs to `into`.
    pub fn rename(&self, from: &str, into: &str) {
        // (Each value is taken out in its own statement: a `RefMut` temporary in an `if let`
        // head would still be borrowed inside the block.)
        let session = self.objects.borrow_mut().remove(from);
        if let Some((obj, id)) = session {
            *id.borrow_mut() = into.to_string();
            self.objects.borrow_mut().insert(into.to_string(), (obj, id));
        }
        let listener = self.listeners.borrow_mut().remove(from);
        if let Some(l) = listener {
            self.listeners.borrow_mut().insert(into.to_string(), l);
        }
        let constraints = self.constraints.borrow_mut().remove(from);
        if let Some(c) = constraints {
            self.constraints.borrow_mut().insert(into.to_string(), c);
        }
    }

    /// Calls the session listener's `method(...args, session)`, if the session is open.
    pub fn notify(&self, call_id: &str, method: &str, args: Vec<JsValue>) {
        self.to_listener(call_id, method, args, true);
    }

    /// Whether the session's listener has `method`.
    pub fn listens(&self, call_id: &str, method: &str) -> bool {
        self.listener(call_id).is_some_and(|l| js::get_function(&l, method).is_some())
    }

    fn listener(&self, call_id: &str) -> Option<JsValue> {
        self.listeners.borrow().get(call_id).cloned()
    }

    /// Calls `listener[method](...args, session?)` for the session's listener.
    pub fn to_listener(&self, call_id: &str, method: &str, mut args: Vec<JsValue>, with_session: bool) {
        let Some(listener) = self.listener(call_id) else { return };
        if with_session {
            let open = self.objects.borrow().get(call_id).map(|(s, _)| s.clone());
            let session = open.or_else(|| self.closing.borrow().get(call_id).cloned());
            if let Some(s) = session {
                args.push(s);
            }
        }
        js::call_method(&listener, method, &args);
    }
}
