//! A call simulator: several engines, an in-order server and fake media on one virtual clock.
//!
//! It lets an app developer (and our own tests) run whole CallLib flows natively, without a
//! browser or a network: add devices, give them commands, advance time, read what each device's
//! listeners would have seen.
//!
//! ```
//! use rtc_core::sim::Sim;
//! use rtc_core::types::{end_reason, MediaType};
//! use rtc_core::engine::CallEvent;
//!
//! let mut sim = Sim::new();
//! let a = sim.add_device("alice");
//! let b = sim.add_device("bob");
//! let call = sim.call(a, "bob", MediaType::AudioVideo);
//! sim.run_for(100);
//! let call_id = sim.result(a, call).unwrap().1.unwrap();
//! let accept = sim.accept(b, &call_id);
//! sim.run_for(100);
//! assert_eq!(sim.result(b, accept).unwrap().0, 10000);
//! sim.hangup(a, &call_id);
//! sim.run_for(100);
//! assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::REMOTE_HANGUP));
//! assert!(sim.events(b).iter().any(|e| matches!(e, CallEvent::Hungup { reason: 13, .. })));
//! ```
//!
//! The server here behaves like rcall's: it stamps each message with its clock, delivers to every
//! device of each recipient and to the sender's other devices, in order, after `latency` ms.

use std::collections::BTreeMap;

use crate::engine::{
    CallEvent, CallRequest, CaptureError, Command, CommandId, Engine, EngineConfig, Input, MediaAction,
    MediaEvent, Millis, OutgoingSignal, Output, Peer, Received, TrackKind,
};
use crate::proto::{conversation_type, media_signal};
use crate::types::MediaType;

/// Index of a device in the simulation.
pub type DeviceId = usize;

/// Something a device's engine produced, with the virtual time it happened.
#[allow(clippy::large_enum_variant)] // test records, kept whole for easy matching
#[derive(Debug, Clone)]
pub enum Logged {
    Event(CallEvent),
    Media(MediaAction),
    Sent(OutgoingSignal),
    Done { command: CommandId, code: i32, call_id: Option<String> },
}

struct Device {
    user_id: String,
    device_id: String,
    engine: Engine,
    log: Vec<(Millis, Logged)>,
    deadline: Option<Millis>,
    /// When set, the next captures fail this way.
    capture_error: Option<CaptureError>,
    /// Kinds captured per call, for the fake media exchange.
    local_kinds: BTreeMap<String, Vec<TrackKind>>,
}

/// Something due at a virtual time.
enum Event {
    /// Feed this input to this device.
    Deliver(DeviceId, Input),
    /// A device's message reaches the server.
    AtServer(DeviceId, OutgoingSignal),
}

/// One listener event as a short line (see [`Sim::timeline`]).
pub fn describe(e: &CallEvent) -> String {
    match e {
        CallEvent::Session { .. } => "Session".to_string(),
        CallEvent::Ringing { sender, .. } => format!("Ringing({})", sender.user_id),
        CallEvent::Accept { sender, .. } => format!("Accept({})", sender.user_id),
        CallEvent::Hungup { sender, reason, .. } => format!("Hungup({},{reason})", sender.user_id),
        CallEvent::TrackReady { track, with_session, .. } => format!(
            "Track({}/{:?}{})",
            track.user_id,
            track.kind,
            if *with_session { "" } else { ",nosession" }
        ),
        CallEvent::SessionClosed { summary, .. } => format!("Close({})", summary.end_reason),
        CallEvent::MemberModify { sender, invited, .. } => {
            let ids: Vec<&str> = invited.iter().map(|s| s.user_id.as_str()).collect();
            format!("MemberModify({},[{}])", sender.user_id, ids.join(","))
        }
        CallEvent::MediaModify { sender, media_type, .. } => format!("MediaModify({},{})", sender.user_id, *media_type as i32),
        CallEvent::OfflineRecord(r) => format!("OfflineRecord({},{})", r.inviter_id, r.end_reason),
        CallEvent::Merged { .. } => "Merged".to_string(),
        CallEvent::MuteChange { user_id, kind, muted, .. } => {
            format!("{}({user_id},{})", if *kind == TrackKind::Video { "VideoMute" } else { "AudioMute" }, if *muted { "muted" } else { "unmuted" })
        }
    }
}

/// See the module docs.
pub struct Sim {
    now: Millis,
    /// Added to the virtual clock to get the server's clock (tests clock skew).
    pub server_skew: Millis,
    /// One-way delay between a device and the server, in ms.
    pub latency: Millis,
    /// How long a capture takes, in ms.
    pub capture_delay: Millis,
    /// Extra random delay, 0..=jitter ms, added to each hop (the server still delivers each
    /// device's messages in the order it accepted them).
    pub jitter: Millis,
    /// Probability that one delivery to one device is lost (never duplicated).
    pub loss: f64,
    devices: Vec<Device>,
    /// Pending events: (due time, sequence, event), processed in order.
    queue: Vec<(Millis, u64, Event)>,
    seq: u64,
    rng: u64,
    /// Last delivery time per device, to keep each device's deliveries in server order.
    last_delivery: Vec<Millis>,
    /// Last arrival at the server per device: a device's sends reach the server in the order
    /// sent (one WebSocket, i.e. TCP), whatever the jitter.
    last_upload: Vec<Millis>,
    /// Deliveries dropped by `loss`.
    pub lost: usize,
    /// Open fake peer links: (device, call, peer) → negotiates video.
    links: BTreeMap<(DeviceId, String, Peer), bool>,
    /// Links whose first offer/answer completed (later ones, e.g. ICE restarts, add no tracks).
    negotiated: std::collections::BTreeSet<(DeviceId, String, Peer)>,
    /// Every `RestartIce` asked for: (time, device, call, peer).
    pub restarts: Vec<(Millis, DeviceId, String, Peer)>,
    next_command: CommandId,
    next_call: u64,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// A simulation starting at t = 1_700_000_000_000 ms with 10 ms latency.
    pub fn new() -> Self {
        Self {
            now: 1_700_000_000_000,
            server_skew: 0,
            latency: 10,
            capture_delay: 5,
            jitter: 0,
            loss: 0.0,
            devices: Vec::new(),
            queue: Vec::new(),
            seq: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            last_delivery: Vec::new(),
            last_upload: Vec::new(),
            lost: 0,
            links: BTreeMap::new(),
            negotiated: Default::default(),
            restarts: Vec::new(),
            next_command: 1,
            next_call: 1,
        }
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    /// Seeds the random source used by `jitter`, `loss` and [`Sim::random`].
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    }

    /// A deterministic pseudo-random number (xorshift64*).
    pub fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn hop(&mut self) -> Millis {
        let extra = if self.jitter > 0 { (self.random() % (self.jitter as u64 + 1)) as Millis } else { 0 };
        self.latency + extra
    }

    /// Ids of every device of the simulation.
    pub fn devices(&self) -> std::ops::Range<DeviceId> {
        0..self.devices.len()
    }

    /// Adds a device for `user_id` (call again with the same user for multi-device).
    pub fn add_device(&mut self, user_id: &str) -> DeviceId {
        let id = self.devices.len();
        let device_id = format!("dev{id}");
        let engine = Engine::new(EngineConfig::new(user_id, &device_id));
        self.devices.push(Device {
            user_id: user_id.to_string(),
            device_id,
            engine,
            log: Vec::new(),
            deadline: None,
            capture_error: None,
            local_kinds: BTreeMap::new(),
        });
        self.last_delivery.push(0);
        self.last_upload.push(0);
        id
    }

    /// Makes the next captures on `dev` fail (or succeed again with `None`).
    pub fn fail_capture(&mut self, dev: DeviceId, error: Option<CaptureError>) {
        self.devices[dev].capture_error = error;
    }

    pub fn engine(&self, dev: DeviceId) -> &Engine {
        &self.devices[dev].engine
    }

    /// Feeds a command now and returns its id.
    pub fn command(&mut self, dev: DeviceId, cmd: Command) -> CommandId {
        let id = self.next_command;
        self.next_command += 1;
        self.input(dev, Input::Command(id, cmd));
        id
    }

    /// `call()` to one user.
    pub fn call(&mut self, dev: DeviceId, target: &str, media_type: MediaType) -> CommandId {
        let req = self.request(conversation_type::PRIVATE, target, Vec::new(), media_type);
        self.command(dev, Command::Call(req))
    }

    /// `callInGroup()`.
    pub fn call_in_group(&mut self, dev: DeviceId, group: &str, users: &[&str], media_type: MediaType) -> CommandId {
        let users = users.iter().map(|u| u.to_string()).collect();
        let req = self.request(conversation_type::GROUP, group, users, media_type);
        self.command(dev, Command::Call(req))
    }

    fn request(&mut self, ct: i32, target: &str, user_ids: Vec<String>, media_type: MediaType) -> CallRequest {
        let n = self.next_call;
        self.next_call += 1;
        CallRequest {
            call_id: format!("simcall{n:016}_{}_{}", self.now, n % 1000),
            conversation_type: ct,
            target_id: target.to_string(),
            user_ids,
            media_type,
            channel_id: String::new(),
            extra: String::new(),
            push_title: None,
            push_content: None,
        }
    }

    pub fn accept(&mut self, dev: DeviceId, call_id: &str) -> CommandId {
        self.command(dev, Command::Accept { call_id: call_id.to_string() })
    }

    pub fn hangup(&mut self, dev: DeviceId, call_id: &str) -> CommandId {
        self.command(dev, Command::Hangup { call_id: call_id.to_string() })
    }

    /// Feeds an arbitrary input to `dev` now (e.g. a hand-made message "from the server").
    pub fn inject(&mut self, dev: DeviceId, input: Input) {
        self.input(dev, input);
    }

    /// Result of a command: `(code, call_id)`, once it finished.
    pub fn result(&self, dev: DeviceId, command: CommandId) -> Option<(i32, Option<String>)> {
        self.devices[dev].log.iter().find_map(|(_, l)| match l {
            Logged::Done { command: c, code, call_id } if *c == command => Some((*code, call_id.clone())),
            _ => None,
        })
    }

    /// Listener events seen by `dev`, in order.
    pub fn events(&self, dev: DeviceId) -> Vec<&CallEvent> {
        self.devices[dev].log.iter().filter_map(|(_, l)| if let Logged::Event(e) = l { Some(e) } else { None }).collect()
    }

    /// A short line per listener event seen by `dev`, in order — `"Session"`,
    /// `"Ringing(bob)"`, `"Track(bob/Video)"`, `"Hungup(bob,13)"`, `"Close(3)"`… — so a flow reads
    /// as one assertion.
    pub fn timeline(&self, dev: DeviceId) -> Vec<String> {
        self.events(dev).into_iter().map(describe).collect()
    }

    /// Everything `dev` produced, with times.
    pub fn log(&self, dev: DeviceId) -> &[(Millis, Logged)] {
        &self.devices[dev].log
    }

    /// Messages `dev` sent.
    pub fn sent(&self, dev: DeviceId) -> Vec<&OutgoingSignal> {
        self.devices[dev].log.iter().filter_map(|(_, l)| if let Logged::Sent(s) = l { Some(s) } else { None }).collect()
    }

    /// The id of the call `dev` was offered by `onSession`, if any (the latest).
    pub fn incoming(&self, dev: DeviceId) -> Option<String> {
        self.events(dev).into_iter().rev().find_map(|e| match e {
            CallEvent::Session { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
    }

    /// The end reason of `call_id` on `dev`, once `onSessionClose` fired.
    pub fn close_reason(&self, dev: DeviceId, call_id: &str) -> Option<i32> {
        self.events(dev).into_iter().find_map(|e| match e {
            CallEvent::SessionClosed { call_id: c, summary } if c == call_id => Some(summary.end_reason),
            _ => None,
        })
    }

    /// Advances the virtual clock by `ms`, delivering everything due on the way.
    pub fn run_for(&mut self, ms: Millis) {
        let until = self.now + ms;
        self.run_until(until);
    }

    pub fn run_until(&mut self, until: Millis) {
        loop {
            let next_msg = self.queue.iter().map(|(t, s, _)| (*t, *s)).min();
            let next_timer = self.devices.iter().enumerate().filter_map(|(i, d)| d.deadline.map(|t| (t, i))).min();
            let msg_t = next_msg.map(|(t, _)| t).filter(|t| *t <= until);
            let timer_t = next_timer.map(|(t, _)| t).filter(|t| *t <= until);
            match (msg_t, timer_t) {
                (None, None) => break,
                (Some(m), t) if t.is_none_or(|t| m <= t) => {
                    let (_, seq) = next_msg.expect("some");
                    let pos = self.queue.iter().position(|(tt, s, _)| *tt == m && *s == seq).expect("queued");
                    let (t, _, event) = self.queue.remove(pos);
                    self.now = self.now.max(t);
                    match event {
                        Event::Deliver(dev, input) => self.input(dev, input),
                        Event::AtServer(from, signal) => self.at_server(from, signal),
                    }
                }
                _ => {
                    let (t, dev) = next_timer.expect("some");
                    self.now = self.now.max(t);
                    self.devices[dev].deadline = None;
                    self.input(dev, Input::Timeout);
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn schedule(&mut self, at: Millis, dev: DeviceId, input: Input) {
        self.seq += 1;
        self.queue.push((at, self.seq, Event::Deliver(dev, input)));
    }

    /// Server → device hop, kept in the server's order for that device.
    fn deliver(&mut self, dev: DeviceId, input: Input) {
        let at = (self.now + self.hop()).max(self.last_delivery[dev]);
        self.last_delivery[dev] = at;
        self.schedule(at, dev, input);
    }

    /// Feeds `input` to `dev` now and handles everything it outputs.
    fn input(&mut self, dev: DeviceId, input: Input) {
        let now = self.now;
        self.devices[dev].engine.handle_input(now, input);
        loop {
            let out = self.devices[dev].engine.poll_output();
            match out {
                Output::Wait(deadline) => {
                    self.devices[dev].deadline = deadline;
                    break;
                }
                Output::Send(signal) => {
                    self.devices[dev].log.push((now, Logged::Sent(signal.clone())));
                    let at = (now + self.hop()).max(self.last_upload[dev]);
                    self.last_upload[dev] = at;
                    self.seq += 1;
                    self.queue.push((at, self.seq, Event::AtServer(dev, signal)));
                }
                Output::Event(ev) => self.devices[dev].log.push((now, Logged::Event(ev))),
                Output::Done { command, code, call_id } => {
                    self.devices[dev].log.push((now, Logged::Done { command, code, call_id }))
                }
                Output::Media(action) => {
                    self.devices[dev].log.push((now, Logged::Media(action.clone())));
                    self.fake_media(dev, action);
                }
            }
        }
    }

    /// The server, when a message reaches it: stamp it, deliver it to every device of each
    /// recipient and to the sender's other devices, answer the sender.
    fn at_server(&mut self, from: DeviceId, signal: OutgoingSignal) {
        let server_time = self.now + self.server_skew;
        let sender_user = self.devices[from].user_id.clone();
        let recipients: Vec<String> = if signal.conversation_type == conversation_type::PRIVATE {
            vec![signal.target_id.clone()]
        } else {
            signal.directional_user_ids.clone()
        };
        for i in 0..self.devices.len() {
            if i == from {
                continue;
            }
            let own_device = self.devices[i].user_id == sender_user;
            if !own_device && !recipients.contains(&self.devices[i].user_id) {
                continue;
            }
            if self.loss > 0.0 && (self.random() % 1_000_000) as f64 / 1_000_000.0 < self.loss {
                self.lost += 1;
                continue;
            }
            let target_id = if signal.conversation_type == conversation_type::PRIVATE && !own_device {
                sender_user.clone()
            } else {
                signal.target_id.clone()
            };
            let msg = Received {
                sender_user_id: sender_user.clone(),
                sender_device_id: self.devices[from].device_id.clone(),
                conversation_type: signal.conversation_type,
                target_id,
                channel_id: signal.channel_id.clone(),
                sent_time: server_time,
                server_time,
                offline: false,
                content: signal.content.clone(),
            };
            self.deliver(i, Input::Signal(msg));
        }
        // Like the server: an accepted no-receipt message gets no SendResult.
        if signal.receipt {
            let result = Input::SendResult { request_id: signal.request_id, server_time, result: Ok(server_time) };
            self.deliver(from, result);
        }
    }

    fn device_of(&self, peer: &Peer) -> Option<DeviceId> {
        self.devices.iter().position(|d| d.user_id == peer.user_id && d.device_id == peer.device_id)
    }

    /// Fake browser media: captures succeed after `capture_delay` (unless told to fail); an
    /// offer is answered; once the answer lands both sides see each other's tracks.
    fn fake_media(&mut self, dev: DeviceId, action: MediaAction) {
        let now = self.now;
        let action_kind = match &action {
            MediaAction::CaptureCamera { .. } => Some(TrackKind::Video),
            MediaAction::CaptureMicrophone { .. } => Some(TrackKind::Audio),
            _ => None,
        };
        let me = Peer { user_id: self.devices[dev].user_id.clone(), device_id: self.devices[dev].device_id.clone() };
        match action {
            MediaAction::Capture { call_id, video } => {
                let result = match self.devices[dev].capture_error {
                    Some(e) => Err(e),
                    None => {
                        let kinds = if video { vec![TrackKind::Audio, TrackKind::Video] } else { vec![TrackKind::Audio] };
                        self.devices[dev].local_kinds.insert(call_id.clone(), kinds.clone());
                        Ok(kinds)
                    }
                };
                self.schedule(now + self.capture_delay, dev, Input::Media(MediaEvent::Captured { call_id, result }));
            }
            MediaAction::Release { call_id } => {
                self.devices[dev].local_kinds.remove(&call_id);
            }
            MediaAction::Rename { from, into } => {
                if let Some(kinds) = self.devices[dev].local_kinds.remove(&from) {
                    self.devices[dev].local_kinds.insert(into, kinds);
                }
            }
            MediaAction::DropVideo { call_id } => {
                if let Some(kinds) = self.devices[dev].local_kinds.get_mut(&call_id) {
                    kinds.retain(|k| *k != TrackKind::Video);
                }
            }
            MediaAction::Connect { call_id, peer, offerer: true, video, .. } => {
                self.links.insert((dev, call_id.clone(), peer.clone()), video);
                let signal = media_signal::Kind::Offer(format!("offer from {}", me.user_id));
                self.schedule(now + 1, dev, Input::Media(MediaEvent::LocalSignal { call_id, peer, signal }));
            }
            MediaAction::Connect { call_id, peer, offerer: false, video, .. } => {
                self.links.insert((dev, call_id, peer), video);
            }
            MediaAction::Apply { call_id, peer, signal: media_signal::Kind::Offer(_) } => {
                let signal = media_signal::Kind::Answer(format!("answer from {}", me.user_id));
                self.schedule(now + 1, dev, Input::Media(MediaEvent::LocalSignal { call_id, peer, signal }));
            }
            MediaAction::RestartIce { call_id, peer } => {
                self.restarts.push((now, dev, call_id.clone(), peer.clone()));
                let signal = media_signal::Kind::Offer(format!("restart offer from {}", me.user_id));
                self.schedule(now + 1, dev, Input::Media(MediaEvent::LocalSignal { call_id, peer, signal }));
            }
            MediaAction::Apply { call_id, peer, signal: media_signal::Kind::Answer(_) } => {
                // Negotiated: like the browser's ontrack, each side learns of the other's tracks
                // now, before any media flows (once: a later negotiation adds none).
                if !self.negotiated.insert((dev, call_id.clone(), peer.clone())) {
                    return;
                }
                let video = self.links.get(&(dev, call_id.clone(), peer.clone())).copied().unwrap_or(false);
                let kinds: &[TrackKind] = if video { &[TrackKind::Audio, TrackKind::Video] } else { &[TrackKind::Audio] };
                if let Some(other) = self.device_of(&peer) {
                    for &kind in kinds {
                        let ev = MediaEvent::RemoteTrack { call_id: call_id.clone(), peer: peer.clone(), kind };
                        self.schedule(now + 20, dev, Input::Media(ev));
                        let ev = MediaEvent::RemoteTrack { call_id: call_id.clone(), peer: me.clone(), kind };
                        self.schedule(now + 20, other, Input::Media(ev));
                    }
                }
            }
            MediaAction::Disconnect { call_id, peer } => {
                self.links.remove(&(dev, call_id, peer));
            }
            MediaAction::Leave { call_id } => {
                self.links.retain(|(d, c, _), _| !(*d == dev && *c == call_id));
            }
            MediaAction::CaptureCamera { call_id } | MediaAction::CaptureMicrophone { call_id } => {
                let kind = if matches!(action_kind, Some(TrackKind::Video)) { TrackKind::Video } else { TrackKind::Audio };
                let result = match self.devices[dev].capture_error {
                    Some(e) => Err(e),
                    None => Ok(vec![kind]),
                };
                self.schedule(now + self.capture_delay, dev, Input::Media(MediaEvent::Captured { call_id, result }));
            }
            MediaAction::Apply { .. }
            | MediaAction::Attach { .. }
            | MediaAction::RequestKeyFrames { .. }
            | MediaAction::SetEnabled { .. } => {}
        }
    }
}
