//! See the crate docs. The input is read as a sequence of [`Op`]s drawn from small vocabularies
//! (three users besides us, a stranger, two call ids plus the ones we create), so the fuzzer
//! reaches live calls quickly instead of failing to guess ids.

use arbitrary::{Arbitrary, Unstructured};
use rtc_core::engine::{
    CallRequest, CaptureError, Command, Input, LinkState, MediaEvent, Output, Peer, Received, TrackKind, VideoLayer,
};
use rtc_core::proto::{call_content, media_signal, CallContent, IceCandidate, MemberProfile, UserProfile};
use rtc_core::proto::{Accept, ChannelInfo, Hangup, Invite, ModifyMedia, ModifyMem, MuteState, Ringing};
use rtc_core::proto::MediaSignal;
use rtc_core::types::MediaType;
use rtc_core::{Engine, EngineConfig};

const ME: &str = "me";
const MY_DEVICE: &str = "me-dev";
pub const USERS: [&str; 5] = ["me", "alice", "bob", "carol", "mallory"];
pub const DEVICES: [&str; 4] = ["d1", "d2", "me-dev", ""];
/// Outputs one input may produce before we call it a runaway loop.
const MAX_OUTPUTS_PER_INPUT: usize = 10_000;

#[derive(Arbitrary, Debug)]
enum Op {
    Signal { from: u8, device: u8, group: bool, call: u8, body: Body, age_ms: u16, offline: bool },
    RawSignal { from: u8, device: u8, group: bool, content: Vec<u8> },
    Call { to: u8, group: bool, video: bool, users: Vec<u8> },
    Accept { call: u8 },
    Hangup { call: u8 },
    Invite { call: u8, users: Vec<u8> },
    Mute { call: u8, video: bool, muted: bool },
    Descend { call: u8 },
    ChangeMicrophone { call: u8 },
    Advance { ms: u32 },
    Captured { call: u8, ok: bool, video: bool, error: u8 },
    LinkState { call: u8, from: u8, device: u8, state: u8 },
    LocalSignal { call: u8, from: u8, device: u8, offer: bool },
    RemoteTrack { call: u8, from: u8, device: u8, video: bool },
    SendResult { back: u8, ok: bool, code: u16 },
    SyncDone,
    Kicked { call: u8 },
    LinkDown { ago_ms: u16 },
    LinkUp,
    /// `session.setRemoteVideoLayer(userId, layer)`: any user (ourselves, a stranger, none).
    RemoteVideoLayer { call: u8, user: u8, layer: u8 },
}

/// A call message body from small vocabularies (also used by `server_frames`).
#[derive(Arbitrary, Debug)]
pub enum Body {
    Invite { media: i8, invitees: Vec<u8>, extra: bool },
    Ringing,
    Accept { media: i8 },
    Hangup { reason: i8 },
    ModifyMem { media: i8, invitees: Vec<u8>, caller: u8, existed: Vec<(u8, i8, i8)> },
    ModifyMedia { media: i8 },
    Media { to_user: u8, to_device: u8, kind: u8 },
    Mute { video: bool, muted: bool },
    Empty,
}

struct Driver {
    engine: Engine,
    now: i64,
    calls: Vec<String>,
    requests: Vec<u32>,
    next_command: u64,
    next_call: u32,
}

pub fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[i as usize % list.len()]
}

impl Driver {
    fn call_id(&self, i: u8) -> String {
        let fixed = ["c0", "c1"];
        let n = fixed.len() + self.calls.len();
        let i = i as usize % n;
        if i < fixed.len() {
            fixed[i].to_string()
        } else {
            self.calls[i - fixed.len()].clone()
        }
    }

    fn users(ids: &[u8]) -> Vec<String> {
        ids.iter().take(8).map(|i| pick(&USERS, *i).to_string()).collect()
    }

    fn feed(&mut self, input: Input) {
        self.engine.handle_input(self.now, input);
        for _ in 0..MAX_OUTPUTS_PER_INPUT {
            match self.engine.poll_output() {
                Output::Wait(_) => return,
                Output::Send(s) => {
                    if s.receipt {
                        self.requests.push(s.request_id);
                        if self.requests.len() > 64 {
                            self.requests.remove(0);
                        }
                    }
                }
                Output::Done { call_id: Some(c), .. } if !self.calls.contains(&c) => self.calls.push(c),
                _ => {}
            }
        }
        panic!("the engine produced more than {MAX_OUTPUTS_PER_INPUT} outputs for one input");
    }

    fn command(&mut self, cmd: Command) {
        self.next_command += 1;
        self.feed(Input::Command(self.next_command, cmd));
    }

    fn received(&self, from: u8, device: u8, group: bool, content: CallContent, sent_time: i64, offline: bool) -> Received {
        let sender = pick(&USERS, from).to_string();
        Received {
            sender_device_id: pick(&DEVICES, device).to_string(),
            conversation_type: if group { 3 } else { 1 },
            target_id: if group { "g".into() } else { sender.clone() },
            sender_user_id: sender,
            channel_id: String::new(),
            sent_time,
            server_time: self.now,
            offline,
            content,
        }
    }

    fn peer(from: u8, device: u8) -> Peer {
        Peer { user_id: pick(&USERS, from).to_string(), device_id: pick(&DEVICES, device).to_string() }
    }

    fn op(&mut self, op: Op) {
        match op {
            Op::Signal { from, device, group, call, body, age_ms, offline } => {
                let content = CallContent {
                    platform: "Web".into(),
                    device_id: pick(&DEVICES, device).to_string(),
                    call_id: self.call_id(call),
                    user: Some(UserProfile::default()),
                    body: body.into_proto(),
                };
                let msg = self.received(from, device, group, content, self.now - i64::from(age_ms) * 10, offline);
                self.feed(Input::Signal(msg));
            }
            Op::RawSignal { from, device, group, content } => {
                if let Ok(content) = CallContent::from_bytes(&content) {
                    let msg = self.received(from, device, group, content, self.now, false);
                    self.feed(Input::Signal(msg));
                }
            }
            Op::Call { to, group, video, users } => {
                self.next_call += 1;
                let call_id = format!("mine{}_{}_1", self.next_call, self.now);
                let req = CallRequest {
                    call_id,
                    conversation_type: if group { 3 } else { 1 },
                    target_id: if group { "g".into() } else { pick(&USERS, to).to_string() },
                    user_ids: if group { Self::users(&users) } else { Vec::new() },
                    media_type: if video { MediaType::AudioVideo } else { MediaType::Audio },
                    channel_id: String::new(),
                    extra: String::new(),
                    push_title: None,
                    push_content: None,
                };
                self.command(Command::Call(req));
            }
            Op::Accept { call } => self.command(Command::Accept { call_id: self.call_id(call) }),
            Op::Hangup { call } => self.command(Command::Hangup { call_id: self.call_id(call) }),
            Op::Invite { call, users } => self.command(Command::Invite {
                call_id: self.call_id(call),
                user_ids: Self::users(&users),
                extra: String::new(),
                push_title: None,
                push_content: None,
            }),
            Op::Mute { call, video, muted } => {
                let kind = if video { TrackKind::Video } else { TrackKind::Audio };
                self.command(Command::MuteTrack { call_id: self.call_id(call), kind, muted })
            }
            Op::Descend { call } => self.command(Command::DescendAbility { call_id: self.call_id(call) }),
            Op::ChangeMicrophone { call } => self.command(Command::ChangeMicrophone { call_id: self.call_id(call) }),
            Op::Advance { ms } => {
                self.now += i64::from(ms % 120_000);
                self.feed(Input::Timeout);
            }
            Op::Captured { call, ok, video, error } => {
                let result = if ok {
                    Ok(if video { vec![TrackKind::Audio, TrackKind::Video] } else { vec![TrackKind::Audio] })
                } else {
                    Err([CaptureError::PermissionDenied, CaptureError::NotFound, CaptureError::Other][error as usize % 3])
                };
                self.feed(Input::Media(MediaEvent::Captured { call_id: self.call_id(call), result }));
            }
            Op::LinkState { call, from, device, state } => {
                let state = [LinkState::Connected, LinkState::Disconnected, LinkState::Failed][state as usize % 3];
                let ev = MediaEvent::LinkState { call_id: self.call_id(call), peer: Self::peer(from, device), state };
                self.feed(Input::Media(ev));
            }
            Op::LocalSignal { call, from, device, offer } => {
                let signal = if offer { media_signal::Kind::Offer("v=0".into()) } else { media_signal::Kind::Answer("v=0".into()) };
                let ev = MediaEvent::LocalSignal { call_id: self.call_id(call), peer: Self::peer(from, device), signal };
                self.feed(Input::Media(ev));
            }
            Op::RemoteTrack { call, from, device, video } => {
                let kind = if video { TrackKind::Video } else { TrackKind::Audio };
                let ev = MediaEvent::RemoteTrack { call_id: self.call_id(call), peer: Self::peer(from, device), kind };
                self.feed(Input::Media(ev));
            }
            Op::SendResult { back, ok, code } => {
                if self.requests.is_empty() {
                    return;
                }
                let request_id = self.requests[back as usize % self.requests.len()];
                let result = if ok { Ok(self.now) } else { Err(i32::from(code)) };
                self.feed(Input::SendResult { request_id, server_time: self.now, result });
            }
            Op::SyncDone => self.feed(Input::SyncDone),
            Op::Kicked { call } => self.feed(Input::Kicked { call_id: self.call_id(call) }),
            Op::LinkDown { ago_ms } => self.feed(Input::LinkDown { since: self.now - i64::from(ago_ms) }),
            Op::LinkUp => self.feed(Input::LinkUp),
            Op::RemoteVideoLayer { call, user, layer } => {
                let user_id = [&USERS[..], &[""]].concat()[user as usize % (USERS.len() + 1)].to_owned();
                let layer = [VideoLayer::High, VideoLayer::Low, VideoLayer::Auto][layer as usize % 3];
                self.command(Command::RemoteVideoLayer { call_id: self.call_id(call), user_id, layer });
            }
        }
    }
}

impl Body {
    pub fn into_proto(self) -> Option<call_content::Body> {
        use call_content::Body as B;
        let channel = || Some(ChannelInfo { id: String::new(), key: String::new() });
        Some(match self {
            Body::Invite { media, invitees, extra } => B::Invite(Invite {
                engine_type: 4,
                channel_info: channel(),
                media_type: i32::from(media),
                invite_user_ids: Driver::users(&invitees),
                observer_user_ids: Vec::new(),
                extra: if extra { "x".into() } else { String::new() },
            }),
            Body::Ringing => B::Ringing(Ringing {}),
            Body::Accept { media } => B::Accept(Accept { media_type: i32::from(media) }),
            Body::Hangup { reason } => B::Hangup(Hangup { reason: i32::from(reason) }),
            Body::ModifyMem { media, invitees, caller, existed } => B::ModifyMem(ModifyMem {
                engine_type: 4,
                channel_info: channel(),
                media_type: i32::from(media),
                invite_user_ids: Driver::users(&invitees),
                observer_user_ids: Vec::new(),
                caller: pick(&USERS, caller).to_string(),
                modify_mem_type: 1,
                existed_user_pofiles: existed
                    .into_iter()
                    .take(8)
                    .map(|(u, m, s)| MemberProfile { user_id: pick(&USERS, u).to_string(), media_type: i32::from(m), call_status: i32::from(s) })
                    .collect(),
                extra: String::new(),
            }),
            Body::ModifyMedia { media } => B::ModifyMedia(ModifyMedia { media_type: i32::from(media) }),
            Body::Media { to_user, to_device, kind } => B::Media(MediaSignal {
                to_user_id: pick(&USERS, to_user).to_string(),
                to_device_id: pick(&DEVICES, to_device).to_string(),
                kind: Some(match kind % 3 {
                    0 => media_signal::Kind::Offer("v=0".into()),
                    1 => media_signal::Kind::Answer("v=0".into()),
                    _ => media_signal::Kind::Candidate(IceCandidate { candidate: "candidate:1".into(), sdp_mid: None, sdp_m_line_index: Some(0) }),
                }),
            }),
            Body::Mute { video, muted } => B::Mute(MuteState { video, muted }),
            Body::Empty => return None,
        })
    }
}

/// Runs one input; panics on an engine panic or a runaway output loop.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut d = Driver {
        engine: Engine::new(EngineConfig::new(ME, MY_DEVICE)),
        now: 1_700_000_000_000,
        calls: Vec::new(),
        requests: Vec::new(),
        next_command: 0,
        next_call: 0,
    };
    for _ in 0..256 {
        match Op::arbitrary(&mut u) {
            Ok(op) => d.op(op),
            Err(_) => break,
        }
        if u.is_empty() {
            break;
        }
    }
}
