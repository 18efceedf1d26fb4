//! See the crate docs. One real server state (temp SQLite file) for the whole fuzzing process
//! and three authenticated connections (two call participants and a stranger, same app) driven
//! through the server's own frame handler (`rcall_server::ws::fuzzing`): each input is a
//! sequence of frames from any of them — raw bytes, or envelope frames built from small
//! vocabularies so routing, rooms, dedup and the offline store are reached.
//! Checks: no panic; a connection ends only by a violation (then it is opened again).

use std::sync::{Mutex, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use rcall_server::ws::fuzzing::Session;
use rtc_core::proto::{client_frame, Ack, CallContent, ClientFrame, GetIceServers, GetJoinedUserInfo, Ping, SendMessage, UserProfile};
use rtc_core::proto::{Authenticate, PushConfig};

use crate::engine_signals::{pick, Body, DEVICES, USERS};

use crate::{FuzzServer, APP_KEY, APP_SECRET};

/// Who the connections are: (user, device).
const PEOPLE: [(&str, &str); 3] = [("alice", "d1"), ("bob", "d2"), ("mallory", "d1")];
const TYPES: [&str; 10] = [
    "RC:VCInvite", "RC:VCRinging", "RC:VCAccept", "RC:VCHangup", "RC:VCModifyMem", "RC:VCModifyMedia", "RCall:Media", "RCall:Mute", "RC:TxtMsg", "",
];

struct World {
    server: FuzzServer,
    sessions: Mutex<Vec<Option<Session>>>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let server = FuzzServer::start(|config| {
            // The fuzzer sends far faster than any client: rate limits would only refuse.
            config.rate_limit_per_sec = u32::MAX / 4;
            config.rate_limit_burst = u32::MAX / 4;
            config.user_rate_per_sec = u32::MAX / 4;
            config.user_rate_burst = u32::MAX / 4;
        });
        World { server, sessions: Mutex::new((0..PEOPLE.len()).map(|_| None).collect()) }
    })
}

fn token(user: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    rcall_server::token::issue(APP_KEY, APP_SECRET, user, now, 3_600_000)
}

#[derive(Arbitrary, Debug)]
enum Frame {
    Raw(Vec<u8>),
    Send { ct: u8, target: u8, directional: Vec<u8>, kind: u8, call: u8, device: u8, body: Body, push: bool, no_receipt: bool, client_seq: u8, raw_content: Option<Vec<u8>> },
    Ack(u64),
    Ping(u32),
    GetIceServers,
    GetJoinedUserInfo(u8),
    Authenticate,
}

#[derive(Arbitrary, Debug)]
struct Op {
    who: u8,
    frame: Frame,
}

fn encode(frame: Frame) -> Vec<u8> {
    use client_frame::Body as C;
    let body = match frame {
        Frame::Raw(bytes) => return bytes,
        Frame::Send { ct, target, directional, kind, call, device, body, push, no_receipt, client_seq, raw_content } => {
            let content = raw_content.unwrap_or_else(|| {
                CallContent {
                    platform: "Web".into(),
                    device_id: pick(&DEVICES, device).to_string(),
                    call_id: ["c0", "c1", "c2"][call as usize % 3].to_string(),
                    user: Some(UserProfile::default()),
                    body: body.into_proto(),
                }
                .to_bytes()
            });
            C::Send(SendMessage {
                request_id: u32::from(client_seq),
                conversation_type: [1, 3, 0, 2][ct as usize % 4],
                target_id: if ct % 4 == 1 { "g".into() } else { pick(&USERS, target).to_string() },
                channel_id: String::new(),
                directional_user_ids: directional.iter().take(8).map(|u| pick(&USERS, *u).to_string()).collect(),
                message_type: TYPES[kind as usize % TYPES.len()].to_string(),
                content,
                push: push.then(|| PushConfig { push_title: "t".into(), push_content: "c".into(), ..Default::default() }),
                no_receipt,
                client_seq: u64::from(client_seq),
            })
        }
        Frame::Ack(seq) => C::Ack(Ack { seq }),
        Frame::Ping(nonce) => C::Ping(Ping { nonce }),
        Frame::GetIceServers => C::GetIceServers(GetIceServers {}),
        Frame::GetJoinedUserInfo(u) => C::GetJoinedUserInfo(GetJoinedUserInfo { request_id: 1, user_id: pick(&USERS, u).to_string() }),
        Frame::Authenticate => C::Authenticate(Authenticate { token: token("alice"), device_id: "d1".into(), resume_from: 0, instance: 1 }),
    };
    ClientFrame::new(body).to_bytes()
}

/// Runs one input; panics on a server panic.
pub fn run(data: &[u8]) {
    let w = world();
    let state = w.server.running.state();
    let mut sessions = w.sessions.lock().unwrap_or_else(|p| p.into_inner());
    let mut u = Unstructured::new(data);
    // A few frames per input keep executions fast; sequences build up across inputs anyway
    // (the connections and the server's state persist).
    for _ in 0..16 {
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        let i = op.who as usize % PEOPLE.len();
        if sessions[i].is_none() {
            let (user, device) = PEOPLE[i];
            let instance = 1 + i as u64;
            sessions[i] = w.server.rt.block_on(Session::open(state, &token(user), device, instance));
        }
        let Some(s) = sessions[i].as_mut() else { continue };
        if !s.frame(state, encode(op.frame)) {
            if let Some(s) = sessions[i].take() {
                s.close(state);
            }
        }
        if u.is_empty() {
            break;
        }
    }
    for s in sessions.iter().flatten() {
        s.drain();
    }
}
