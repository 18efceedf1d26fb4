//! SFU mode of the engine (docs/sfu.md): a GROUP call's media through the SFU, driven on a
//! virtual clock with hand-made server frames. `cargo test -p rtc-core --test sfu`.

use rtc_core::engine::{
    retry_delay, CallEvent, CallRequest, Command, Input, MediaAction, MediaEvent, Output, Received, SfuAction, SfuEvent, SfuInput,
    TrackKind, VideoLayer, RETRY_BACKOFF_MS,
};
use rtc_core::proto::{self, call_content::Body, client_frame::Body as Frame, conversation_type, sfu_pc, CallContent};
use rtc_core::types::{end_reason, error_code, MediaType, SessionState};
use rtc_core::{Engine, EngineConfig};

const CALL: &str = "c1";

struct Dev {
    engine: Engine,
    now: i64,
    out: Vec<Output>,
    next_command: u64,
    /// Captures find a camera (false: only a microphone, as `isAllowDemotionGetStream` leaves it).
    camera: bool,
}

impl Dev {
    fn new(user: &str, sfu: bool, retries: u8) -> Self {
        Self::configured(user, sfu, |cfg| {
            cfg.sfu_publish_retries = retries;
            cfg.sfu_subscribe_retries = retries;
        })
    }

    fn configured(user: &str, sfu: bool, configure: impl FnOnce(&mut EngineConfig)) -> Self {
        let mut cfg = EngineConfig::new(user, &format!("{user}-dev"));
        configure(&mut cfg);
        let mut d = Dev { engine: Engine::new(cfg), now: 1_000_000, out: Vec::new(), next_command: 1, camera: true };
        d.input(Input::Sfu(SfuInput::Enabled(sfu)));
        d
    }

    fn input(&mut self, input: Input) {
        self.now += 10;
        self.engine.handle_input(self.now, input);
        loop {
            match self.engine.poll_output() {
                Output::Wait(_) => break,
                o => self.out.push(o),
            }
        }
    }

    fn sfu(&mut self, i: SfuInput) {
        self.input(Input::Sfu(i));
    }

    fn media(&mut self, ev: SfuEvent) {
        self.input(Input::Media(MediaEvent::Sfu(ev)));
    }

    /// The browser answered the server's offer on the receiving connection with `sdp`.
    fn subscribe_answer(&mut self, sdp: impl Into<String>) {
        self.media(SfuEvent::SubscribeAnswer { call_id: CALL.into(), sdp: sdp.into() });
    }

    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    fn command(&mut self, cmd: Command) -> u64 {
        let id = self.next_command;
        self.next_command += 1;
        self.input(Input::Command(id, cmd));
        id
    }

    /// A call message from `user`.
    fn signal(&mut self, user: &str, conversation: i32, body: Body) {
        let content =
            CallContent { platform: "Web".into(), device_id: format!("{user}-dev"), call_id: CALL.into(), user: None, body: Some(body) };
        let target = if conversation == conversation_type::GROUP { "grp".to_string() } else { user.to_string() };
        let msg = Received {
            sender_user_id: user.into(),
            sender_device_id: format!("{user}-dev"),
            conversation_type: conversation,
            target_id: target,
            channel_id: String::new(),
            sent_time: self.now,
            server_time: self.now,
            offline: false,
            content,
        };
        self.input(Input::Signal(msg));
    }

    /// Answers every pending capture and send of the outputs so far (all succeed).
    fn settle(&mut self) -> Vec<Output> {
        let mut seen = Vec::new();
        loop {
            let outs = self.take();
            if outs.is_empty() {
                return seen;
            }
            for o in &outs {
                match o {
                    Output::Media(MediaAction::Capture { call_id, video }) => {
                        let kinds = if *video && self.camera { vec![TrackKind::Audio, TrackKind::Video] } else { vec![TrackKind::Audio] };
                        let ev = MediaEvent::Captured { call_id: call_id.clone(), result: Ok(kinds) };
                        self.input(Input::Media(ev));
                    }
                    Output::Send(s) if s.receipt => {
                        let now = self.now;
                        self.input(Input::SendResult { request_id: s.request_id, server_time: now, result: Ok(now) });
                    }
                    _ => {}
                }
            }
            seen.extend(outs);
        }
    }
}

/// The code `command` finished with in `outs` (None: not finished there).
fn done(outs: &[Output], command: u64) -> Option<i32> {
    outs.iter().find_map(|o| match o {
        Output::Done { command: c, code, .. } if *c == command => Some(*code),
        _ => None,
    })
}

fn sfu_actions(outs: &[Output]) -> Vec<&SfuAction> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Media(MediaAction::Sfu(a)) => Some(a),
            _ => None,
        })
        .collect()
}

fn frames(outs: &[Output]) -> Vec<&Frame> {
    sfu_actions(outs)
        .into_iter()
        .filter_map(|a| match a {
            SfuAction::Send(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn publishes(outs: &[Output]) -> usize {
    sfu_actions(outs).iter().filter(|a| matches!(a, SfuAction::Publish { .. })).count()
}

fn events(outs: &[Output]) -> Vec<&CallEvent> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn mesh_links(outs: &[Output]) -> usize {
    outs.iter().filter(|o| matches!(o, Output::Media(MediaAction::Connect { .. }))).count()
}

fn feed(user: &str, video: bool) -> proto::SfuFeed {
    let mut streams = vec![proto::SfuStream { mid: "0".into(), kind: "audio".into(), simulcast: false, muted: false }];
    if video {
        streams.push(proto::SfuStream { mid: "1".into(), kind: "video".into(), simulcast: true, muted: false });
    }
    proto::SfuFeed { feed: format!("feed-{user}"), user_id: user.into(), streams }
}

fn joined(feeds: Vec<proto::SfuFeed>, generation: u32) -> SfuInput {
    SfuInput::Joined(proto::SfuJoined { call_id: CALL.into(), feeds, generation })
}

fn feeds(feeds: Vec<proto::SfuFeed>) -> SfuInput {
    SfuInput::Feeds(proto::SfuFeeds { call_id: CALL.into(), feeds })
}

fn failed(request_id: u32, pc: u32) -> SfuInput {
    SfuInput::Failed(proto::SfuFailed { request_id, call_id: CALL.into(), pc, code: 53004, reason: "refused".into(), answer: false })
}

/// The request id of the last `SfuPublish` / `SfuSubscribe` sent.
fn last_publish(outs: &[Output]) -> Option<u32> {
    frames(outs).into_iter().rev().find_map(|f| match f {
        Frame::SfuPublish(p) => Some(p.request_id),
        _ => None,
    })
}

fn last_subscribe(outs: &[Output]) -> Option<&proto::SfuSubscribe> {
    frames(outs).into_iter().rev().find_map(|f| match f {
        Frame::SfuSubscribe(s) => Some(s),
        _ => None,
    })
}

/// The SFU's offer for a subscription: mid `a-<user>` / `v-<user>` per user.
fn offer(request_id: u32, users: &[&str]) -> SfuInput {
    let mut mids = Vec::new();
    for u in users {
        mids.push(proto::SfuMid { mid: format!("a-{u}"), feed: format!("feed-{u}"), user_id: u.to_string(), kind: "audio".into() });
        mids.push(proto::SfuMid { mid: format!("v-{u}"), feed: format!("feed-{u}"), user_id: u.to_string(), kind: "video".into() });
    }
    SfuInput::Offer(proto::SfuOffer { request_id, call_id: CALL.into(), sdp: "janus-offer".into(), mids, version: 0 })
}

/// alice calls bob and carol in a group: settled, ringing.
fn caller(sfu: bool, retries: u8, media_type: MediaType) -> Dev {
    let mut a = Dev::new("alice", sfu, retries);
    a.command(Command::Call(CallRequest {
        call_id: CALL.into(),
        conversation_type: conversation_type::GROUP,
        target_id: "grp".into(),
        user_ids: vec!["bob".into(), "carol".into()],
        media_type,
        channel_id: String::new(),
        extra: String::new(),
        push_title: None,
        push_content: None,
    }));
    a.settle();
    a
}

/// bob is invited by alice to a group video call (with carol), accepts, and is in.
fn callee(sfu: bool, retries: u8) -> Dev {
    callee_with(Dev::new("bob", sfu, retries))
}

fn callee_with(mut b: Dev) -> Dev {
    let invite = proto::Invite {
        engine_type: proto::ENGINE_TYPE,
        channel_info: Some(proto::ChannelInfo { id: CALL.into(), key: String::new() }),
        media_type: MediaType::AudioVideo as i32,
        invite_user_ids: vec!["bob".into(), "carol".into()],
        observer_user_ids: Vec::new(),
        extra: String::new(),
    };
    b.signal("alice", conversation_type::GROUP, Body::Invite(invite));
    b.settle();
    b.command(Command::Accept { call_id: CALL.into() });
    b.settle();
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);
    b
}

/// Publishes for `dev` (its pending `Publish`) and has the SFU answer; returns the outputs.
fn publish_ok(dev: &mut Dev) -> Vec<Output> {
    dev.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "local-offer".into() });
    let outs = dev.take();
    let rid = last_publish(&outs).expect("SfuPublish sent");
    dev.sfu(SfuInput::Answer(proto::SfuAnswer { request_id: rid, call_id: CALL.into(), sdp: "janus-answer".into() }));
    let mut all = outs;
    all.extend(dev.take());
    all
}

#[test]
fn a_group_caller_publishes_once_and_subscribes_without_mesh_links() {
    let mut a = caller(true, 0, MediaType::AudioVideo);
    a.sfu(joined(Vec::new(), 1));
    let outs = a.take();
    assert_eq!(sfu_actions(&outs), vec![&SfuAction::Publish { call_id: CALL.into(), video: true }]);
    let outs = publish_ok(&mut a);
    let answer = SfuAction::PublishAnswer { call_id: CALL.into(), sdp: "janus-answer".into() };
    assert!(sfu_actions(&outs).contains(&&answer), "{outs:?}");
    // bob rings and accepts: the mesh would pre-connect and connect here.
    a.signal("bob", conversation_type::GROUP, Body::Ringing(proto::Ringing {}));
    a.signal("bob", conversation_type::GROUP, Body::Accept(proto::Accept { media_type: 2 }));
    let outs = a.take();
    assert_eq!(mesh_links(&outs), 0, "{outs:?}");
    assert!(events(&outs).iter().any(|e| matches!(e, CallEvent::Accept { .. })));
    // bob publishes: alice subscribes to both his streams; the server picks the layer.
    a.sfu(feeds(vec![feed("bob", true)]));
    let outs = a.take();
    let sub = last_subscribe(&outs).expect("SfuSubscribe").clone();
    let wants: Vec<(&str, &str, i32)> = sub.want.iter().map(|w| (w.feed.as_str(), w.mid.as_str(), w.substream)).collect();
    assert_eq!(wants, vec![("feed-bob", "0", -1), ("feed-bob", "1", -1)]);
    // The same feeds again change nothing.
    a.sfu(feeds(vec![feed("bob", true)]));
    assert!(frames(&a.take()).is_empty());
    a.sfu(offer(sub.request_id, &["bob"]));
    let outs = a.take();
    let Some(SfuAction::Subscribe { tracks, sdp, .. }) = sfu_actions(&outs).into_iter().find(|a| matches!(a, SfuAction::Subscribe { .. }))
    else {
        panic!("no Subscribe: {outs:?}")
    };
    assert_eq!(sdp, "janus-offer");
    assert_eq!(tracks.len(), 2);
    assert_eq!((tracks[1].mid.as_str(), tracks[1].user_id.as_str(), tracks[1].kind), ("v-bob", "bob", TrackKind::Video));
    a.subscribe_answer("local-answer");
    let outs = a.take();
    let answered =
        frames(&outs).into_iter().any(|f| matches!(f, Frame::SfuAnswer(x) if x.request_id == sub.request_id && x.sdp == "local-answer"));
    assert!(answered, "{outs:?}");
    // Media arrives: onTrackReady per remote user, with RTCLib's ids, as in mesh mode.
    a.media(SfuEvent::Track { call_id: CALL.into(), mid: "v-bob".into() });
    a.media(SfuEvent::Track { call_id: CALL.into(), mid: "a-bob".into() });
    let outs = a.take();
    let ids: Vec<(&str, &str, bool)> = events(&outs)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::TrackReady { track, with_session, .. } => Some((track.track_id.as_str(), track.device_id.as_str(), *with_session)),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![("bob_RongCloudRTC_1", "feed-bob", true), ("bob_RongCloudRTC_0", "feed-bob", true)]);
    // A local candidate is trickled on the socket.
    a.media(SfuEvent::Candidate {
        call_id: CALL.into(),
        pc: sfu_pc::SUBSCRIBER,
        candidate: "candidate:1".into(),
        sdp_mid: "0".into(),
        sdp_mline_index: 0,
    });
    assert!(matches!(frames(&a.take())[..], [Frame::SfuTrickle(ref t)] if t.pc == sfu_pc::SUBSCRIBER && t.candidate == "candidate:1"));
    // Hanging up leaves the "room": the shell closes both SFU connections.
    a.command(Command::Hangup { call_id: CALL.into() });
    let outs = a.take();
    assert!(outs.iter().any(|o| matches!(o, Output::Media(MediaAction::Leave { .. }))), "{outs:?}");
    assert!(outs.iter().any(|o| matches!(o, Output::Send(s) if matches!(s.content.body, Some(Body::Hangup(_))))));
}

#[test]
fn a_caller_publishes_only_once_its_media_is_captured() {
    let mut a = Dev::new("alice", true, 0);
    a.command(Command::Call(CallRequest {
        call_id: CALL.into(),
        conversation_type: conversation_type::GROUP,
        target_id: "grp".into(),
        user_ids: vec!["bob".into(), "carol".into()],
        media_type: MediaType::AudioVideo,
        channel_id: String::new(),
        extra: String::new(),
        push_title: None,
        push_content: None,
    }));
    let outs = a.take();
    let invite = outs.iter().find_map(|o| match o {
        Output::Send(s) => Some(s.request_id),
        _ => None,
    });
    let now = a.now;
    a.input(Input::SendResult { request_id: invite.unwrap(), server_time: now, result: Ok(now) });
    // The server admits the inviter with its invite, while the camera still starts.
    a.sfu(joined(Vec::new(), 1));
    assert_eq!(publishes(&a.take()), 0);
    a.input(Input::Media(MediaEvent::Captured { call_id: CALL.into(), result: Ok(vec![TrackKind::Audio, TrackKind::Video]) }));
    assert_eq!(publishes(&a.take()), 1);
}

#[test]
fn a_callee_publishes_and_subscribes_once_admitted() {
    let mut b = callee(true, 0);
    assert_eq!(mesh_links(&b.take()), 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let outs = b.take();
    assert_eq!(publishes(&outs), 1);
    let sub = last_subscribe(&outs).expect("subscribes to alice");
    assert_eq!(sub.want.len(), 2);
    // A publisher that is not in the call (yet) surfaces only once it is: carol still rings.
    b.sfu(offer(sub.request_id, &["alice", "carol"]));
    b.media(SfuEvent::Track { call_id: CALL.into(), mid: "v-carol".into() });
    assert!(events(&b.take()).iter().all(|e| !matches!(e, CallEvent::TrackReady { .. })));
    b.signal("carol", conversation_type::GROUP, Body::Accept(proto::Accept { media_type: 2 }));
    let outs = b.take();
    let ready: Vec<&str> = events(&outs)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::TrackReady { track, .. } => Some(track.track_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ready, vec!["carol_RongCloudRTC_1"]);
}

#[test]
fn without_sfu_mode_and_for_one_to_one_calls_the_mesh_stays() {
    // Group call, the server has no SFU: bob's accept connects a mesh link.
    let mut a = caller(false, 0, MediaType::AudioVideo);
    a.signal("bob", conversation_type::GROUP, Body::Accept(proto::Accept { media_type: 2 }));
    assert_eq!(mesh_links(&a.take()), 1);
    // A frame for a mesh call is ignored.
    a.sfu(joined(vec![feed("bob", true)], 1));
    assert!(sfu_actions(&a.take()).is_empty());
    // 1:1 call with an SFU: still peer-to-peer.
    let mut p = Dev::new("alice", true, 0);
    p.command(Command::Call(CallRequest {
        call_id: CALL.into(),
        conversation_type: conversation_type::PRIVATE,
        target_id: "bob".into(),
        user_ids: Vec::new(),
        media_type: MediaType::AudioVideo,
        channel_id: String::new(),
        extra: String::new(),
        push_title: None,
        push_content: None,
    }));
    p.settle();
    p.signal("bob", conversation_type::PRIVATE, Body::Ringing(proto::Ringing {}));
    assert_eq!(mesh_links(&p.take()), 1, "pre-connect while ringing");
    p.sfu(joined(Vec::new(), 1));
    assert!(sfu_actions(&p.take()).is_empty());
}

/// Past the longest pause before a retry ([`RETRY_BACKOFF_MS`] and its jitter).
const PAST_BACKOFF_MS: i64 = RETRY_BACKOFF_MS[1] * 2;

/// Fails the pending publish `n` times, letting the pause before each retry pass; returns all
/// outputs.
fn fail_publishes(dev: &mut Dev, n: usize) -> Vec<Output> {
    let mut all = Vec::new();
    for _ in 0..n {
        dev.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "local-offer".into() });
        let outs = dev.take();
        let rid = last_publish(&outs).expect("SfuPublish sent");
        all.extend(outs);
        dev.sfu(failed(rid, sfu_pc::PUBLISHER));
        all.extend(dev.take());
        dev.advance(PAST_BACKOFF_MS);
        all.extend(dev.take());
    }
    all
}

fn count(outs: &[Output], f: impl Fn(&CallEvent) -> bool) -> usize {
    events(outs).into_iter().filter(|e| f(e)).count()
}

fn hangup_reason(outs: &[Output]) -> Option<i32> {
    outs.iter().find_map(|o| match o {
        Output::Send(s) => match &s.content.body {
            Some(Body::Hangup(h)) => Some(h.reason),
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn a_failed_publish_without_retries_fires_once_and_ends_with_9() {
    let mut b = callee(true, 0);
    b.sfu(joined(Vec::new(), 1));
    b.take();
    let outs = fail_publishes(&mut b, 1);
    assert_eq!(count(&outs, |e| matches!(e, CallEvent::PublishFail { code: 53004, .. })), 1);
    assert_eq!(publishes(&outs), 0, "no retry");
    assert_eq!(hangup_reason(&outs), Some(end_reason::PUBLISH_ERROR));
    assert!(events(&outs)
        .iter()
        .any(|e| matches!(e, CallEvent::SessionClosed { summary, .. } if summary.end_reason == end_reason::PUBLISH_ERROR)));
}

#[test]
fn a_failed_publish_is_retried_twice_with_is_allow_publish_retry() {
    let mut b = callee(true, 2);
    b.sfu(joined(Vec::new(), 1));
    b.take();
    let outs = fail_publishes(&mut b, 3);
    assert_eq!(count(&outs, |e| matches!(e, CallEvent::PublishFail { .. })), 3);
    assert_eq!(publishes(&outs), 2, "two retries");
    assert_eq!(hangup_reason(&outs), Some(end_reason::PUBLISH_ERROR));
    // A retry that succeeds keeps the call.
    let mut b = callee(true, 2);
    b.sfu(joined(Vec::new(), 1));
    b.take();
    let outs = fail_publishes(&mut b, 1);
    assert_eq!(publishes(&outs), 1);
    let outs = publish_ok(&mut b);
    assert_eq!(hangup_reason(&outs), None);
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);
}

/// `isAllowPublishRetry` / `isAllowSubscribeRetry`: a failed join request is retried after a
/// pause (~1 s, then ~2 s, jittered), not at once — a retry at once fails again
/// while the server moves the call off a dead Janus; each failure still fires its event, and
/// the last one still ends the call (9 / 10).
#[test]
fn failed_join_requests_are_retried_after_a_growing_pause() {
    let mut b = callee(true, 2);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let mut sub = last_subscribe(&b.take()).unwrap().request_id;
    for failures in 1..=2u8 {
        // The publish fails: its event at once, the next attempt only after the pause.
        b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "local-offer".into() });
        let rid = last_publish(&b.take()).expect("SfuPublish sent");
        b.sfu(failed(rid, sfu_pc::PUBLISHER));
        let outs = b.take();
        assert_eq!(count(&outs, |e| matches!(e, CallEvent::PublishFail { .. })), 1);
        assert_eq!(publishes(&outs), 0, "not at once (failure {failures})");
        let pause = retry_delay(b.now, failures);
        let base = RETRY_BACKOFF_MS[failures as usize - 1];
        assert!((base * 4 / 5..=base * 6 / 5).contains(&pause), "{pause}");
        b.advance(pause - 20);
        assert_eq!(publishes(&b.take()), 0, "not before the pause");
        b.advance(30);
        assert_eq!(publishes(&b.take()), 1, "retried after {pause} ms");
        // The first subscription likewise; a feed change meanwhile does not ask at once.
        b.sfu(failed(sub, sfu_pc::SUBSCRIBER));
        let outs = b.take();
        assert_eq!(count(&outs, |e| matches!(e, CallEvent::SubscribeFail { .. })), 1);
        assert!(last_subscribe(&outs).is_none(), "not at once");
        let pause = retry_delay(b.now, failures);
        b.advance(pause - 20);
        b.sfu(feeds(vec![feed("alice", true), feed("carol", true)]));
        assert!(last_subscribe(&b.take()).is_none(), "not before the pause");
        b.advance(30);
        sub = last_subscribe(&b.take()).expect("retried after the pause").request_id;
    }
    // The third failure is the last (two retries): the call ends with 9.
    b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "local-offer".into() });
    let rid = last_publish(&b.take()).expect("SfuPublish sent");
    b.sfu(failed(rid, sfu_pc::PUBLISHER));
    assert_eq!(hangup_reason(&b.take()), Some(end_reason::PUBLISH_ERROR));
    // Devices whose failures arrive 1 ms apart spread out.
    let pauses: std::collections::BTreeSet<i64> = (0..20).map(|i| retry_delay(1_000_000 + i, 1)).collect();
    assert!(pauses.len() > 10, "{pauses:?}");
    assert!(pauses.iter().all(|p| (800..=1200).contains(p)), "{pauses:?}");
}

#[test]
fn a_failed_join_subscription_is_retried_then_ends_with_10_and_later_ones_are_dropped() {
    // Retries allowed: the first subscription fails twice, then works.
    let mut b = callee(true, 2);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let mut rid = last_subscribe(&b.take()).unwrap().request_id;
    let mut fails = 0;
    for _ in 0..2 {
        b.sfu(failed(rid, sfu_pc::SUBSCRIBER));
        let mut outs = b.take();
        fails += count(&outs, |e| matches!(e, CallEvent::SubscribeFail { code: 53004, .. }));
        b.advance(PAST_BACKOFF_MS);
        outs.extend(b.take());
        rid = last_subscribe(&outs).expect("subscribes again").request_id;
    }
    assert_eq!(fails, 2);
    b.sfu(offer(rid, &["alice"]));
    b.take();
    // A later update failing fires nothing and ends nothing; the next change subscribes again.
    b.sfu(feeds(vec![feed("alice", true), feed("carol", true)]));
    let rid = last_subscribe(&b.take()).unwrap().request_id;
    b.sfu(failed(rid, sfu_pc::SUBSCRIBER));
    let outs = b.take();
    assert!(events(&outs).is_empty(), "{outs:?}");
    b.sfu(feeds(vec![feed("alice", true), feed("carol", false)]));
    assert!(last_subscribe(&b.take()).is_some());
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);

    // No retries: one failure ends the call with SUBSCRIBE_ERROR.
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let rid = last_subscribe(&b.take()).unwrap().request_id;
    b.sfu(failed(rid, sfu_pc::SUBSCRIBER));
    let outs = b.take();
    assert_eq!(count(&outs, |e| matches!(e, CallEvent::SubscribeFail { .. })), 1);
    assert_eq!(hangup_reason(&outs), Some(end_reason::SUBSCRIBE_ERROR));
}

#[test]
fn after_an_sfu_restart_the_device_republishes_and_resubscribes_without_hangup() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let rid = last_subscribe(&b.take()).unwrap().request_id;
    publish_ok(&mut b);
    b.sfu(offer(rid, &["alice"]));
    b.media(SfuEvent::Track { call_id: CALL.into(), mid: "v-alice".into() });
    b.take();
    b.sfu(SfuInput::Restart(proto::SfuRestart { call_id: CALL.into(), generation: 2 }));
    let outs = b.take();
    let acts = sfu_actions(&outs);
    assert_eq!(acts[0], &SfuAction::Reset { call_id: CALL.into() });
    assert_eq!(publishes(&outs), 1);
    // The new generation's feeds (new ids) are subscribed afresh.
    let mut f = feed("alice", true);
    f.feed = "feed-alice-2".into();
    b.sfu(joined(vec![f], 2));
    let outs = b.take();
    assert_eq!(publishes(&outs), 0, "already publishing");
    let sub = last_subscribe(&outs).expect("resubscribes").clone();
    assert_eq!(sub.want[0].feed, "feed-alice-2");
    b.sfu(offer(sub.request_id, &["alice"]));
    b.media(SfuEvent::Track { call_id: CALL.into(), mid: "v-alice".into() });
    let outs = b.take();
    // The new remote track is announced again; no hangup, no close, no failure event.
    let evs = events(&outs);
    assert!(matches!(evs[..], [CallEvent::TrackReady { .. }]), "{evs:?}");
    assert_eq!(hangup_reason(&outs), None);
    // SfuJoined with a newer generation is a restart too.
    b.sfu(joined(Vec::new(), 3));
    let outs = b.take();
    assert!(sfu_actions(&outs).contains(&&SfuAction::Reset { call_id: CALL.into() }));
    assert_eq!(publishes(&outs), 1);
    assert!(events(&outs).is_empty());
}

#[test]
fn many_remote_videos_ask_for_the_low_layer() {
    let mut b = callee(true, 0);
    let users = ["alice", "carol", "dave", "erin"];
    b.sfu(joined(users.iter().map(|u| feed(u, true)).collect(), 1));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    assert!(sub.want.iter().all(|w| w.substream == -1), "4 tiles: the server picks");
    b.sfu(offer(sub.request_id, &users));
    b.take();
    let mut five: Vec<_> = users.iter().map(|u| feed(u, true)).collect();
    five.push(feed("frank", true));
    b.sfu(feeds(five));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    let layers: Vec<i32> = sub.want.iter().map(|w| w.substream).collect();
    assert_eq!(layers, [-1, 0].repeat(5), "audio: any; 5 videos: low");
}

#[test]
fn an_audio_only_call_subscribes_to_no_video() {
    let mut a = caller(true, 0, MediaType::Audio);
    a.sfu(joined(Vec::new(), 1));
    let outs = a.take();
    assert_eq!(sfu_actions(&outs), vec![&SfuAction::Publish { call_id: CALL.into(), video: false }]);
    a.signal("bob", conversation_type::GROUP, Body::Accept(proto::Accept { media_type: 1 }));
    a.sfu(feeds(vec![feed("bob", true)]));
    let sub = last_subscribe(&a.take()).unwrap().clone();
    assert_eq!(sub.want.len(), 1);
    assert_eq!(sub.want[0].mid, "0");
}

#[test]
fn downgrading_to_audio_drops_video_from_the_subscription_and_a_member_leaving_changes_nothing_else() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true), feed("carol", true)], 1));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    assert_eq!(sub.want.len(), 4);
    b.sfu(offer(sub.request_id, &["alice", "carol"]));
    b.take();
    b.command(Command::DescendAbility { call_id: CALL.into() });
    let outs = b.settle();
    assert!(outs.iter().any(|o| matches!(o, Output::Media(MediaAction::DropVideo { .. }))), "{outs:?}");
    let sub = last_subscribe(&outs).expect("resubscribes without video").clone();
    assert!(sub.want.iter().all(|w| w.mid == "0"), "{:?}", sub.want);
    b.sfu(offer(sub.request_id, &["alice", "carol"]));
    b.take();
    // carol hangs up: the usual onHungup, no mesh teardown; the server's new feed list
    // shrinks the subscription.
    b.signal("carol", conversation_type::GROUP, Body::Hangup(proto::Hangup { reason: end_reason::HANGUP }));
    let outs = b.take();
    assert!(events(&outs).iter().any(|e| matches!(e, CallEvent::Hungup { sender, .. } if sender.user_id == "carol")));
    assert!(!outs.iter().any(|o| matches!(o, Output::Media(MediaAction::Disconnect { .. } | MediaAction::Leave { .. }))), "{outs:?}");
    b.sfu(feeds(vec![feed("alice", true)]));
    let sub = last_subscribe(&b.take()).expect("resubscribes").clone();
    assert_eq!(sub.want.iter().map(|w| w.feed.as_str()).collect::<Vec<_>>(), ["feed-alice"]);
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);
}

#[test]
fn requests_written_while_the_socket_was_down_go_again_when_it_is_back() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let first_sub = last_subscribe(&b.take()).unwrap().clone();
    let now = b.now;
    b.input(Input::LinkDown { since: now });
    b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "local-offer".into() });
    let lost = last_publish(&b.take()).expect("written (and lost: the socket is down)");
    b.input(Input::LinkUp);
    let outs = b.take();
    let again = frames(&outs)
        .into_iter()
        .find_map(|f| match f {
            Frame::SfuPublish(p) => Some(p.clone()),
            _ => None,
        })
        .expect("the publish goes again");
    assert_eq!(again.sdp_offer, "local-offer", "same offer: the connection still waits for its answer");
    assert_ne!(again.request_id, lost);
    let sub = last_subscribe(&outs).expect("the subscription goes again");
    assert_eq!(sub.want, first_sub.want);
    assert_ne!(sub.request_id, first_sub.request_id);
    // Only the latest requests count: a late answer to the lost one is ignored.
    b.sfu(SfuInput::Answer(proto::SfuAnswer { request_id: lost, call_id: CALL.into(), sdp: "stale".into() }));
    assert!(sfu_actions(&b.take()).is_empty());
    b.sfu(SfuInput::Answer(proto::SfuAnswer { request_id: again.request_id, call_id: CALL.into(), sdp: "janus-answer".into() }));
    assert!(sfu_actions(&b.take()).contains(&&SfuAction::PublishAnswer { call_id: CALL.into(), sdp: "janus-answer".into() }));
    // Once answered, a reconnect sends nothing again.
    let now = b.now;
    b.input(Input::LinkDown { since: now });
    b.input(Input::LinkUp);
    assert!(last_publish(&b.take()).is_none());
}

/// `Subscribe` actions (sdp, request id of the offer) in order.
fn subscribes(outs: &[Output]) -> Vec<String> {
    sfu_actions(outs)
        .into_iter()
        .filter_map(|a| match a {
            SfuAction::Subscribe { sdp, .. } => Some(sdp.clone()),
            _ => None,
        })
        .collect()
}

fn sfu_answers(outs: &[Output]) -> Vec<(u32, String)> {
    frames(outs)
        .into_iter()
        .filter_map(|f| match f {
            Frame::SfuAnswer(a) => Some((a.request_id, a.sdp.clone())),
            _ => None,
        })
        .collect()
}

fn versioned_offer(request_id: u32, users: &[&str], sdp: &str, version: u32) -> SfuInput {
    let SfuInput::Offer(mut o) = offer(request_id, users) else { unreachable!() };
    o.sdp = sdp.into();
    o.version = version;
    SfuInput::Offer(o)
}

#[test]
fn back_to_back_offers_are_applied_one_at_a_time_in_order() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let rid = last_subscribe(&b.take()).unwrap().request_id;
    // The answer to our subscription, and right behind it an offer the server made by itself
    // (a feed went away), before the browser applied the first.
    b.sfu(versioned_offer(rid, &["alice"], "offer-1", 1));
    b.sfu(versioned_offer(0, &["alice"], "offer-2", 2));
    let outs = b.take();
    assert_eq!(subscribes(&outs), ["offer-1"], "the second waits for the first one's answer: {outs:?}");
    b.subscribe_answer("answer-1");
    let outs = b.take();
    assert_eq!(sfu_answers(&outs), [(rid, "answer-1".to_string())], "answered under the first offer's request id");
    assert_eq!(subscribes(&outs), ["offer-2"]);
    b.subscribe_answer("answer-2");
    let outs = b.take();
    assert_eq!(sfu_answers(&outs), [(0, "answer-2".to_string())]);
    assert!(subscribes(&outs).is_empty());
    // A stray answer (nothing being applied) sends nothing.
    b.subscribe_answer("answer-3");
    assert!(sfu_answers(&b.take()).is_empty());
}

#[test]
fn after_a_reconnect_the_subscription_says_which_offer_it_last_got() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let first = last_subscribe(&b.take()).unwrap().clone();
    assert_eq!(first.offer_version, Some(0));
    b.sfu(versioned_offer(first.request_id, &["alice"], "offer-1", 1));
    b.subscribe_answer("answer-1");
    b.take();
    // The socket drops; the server's own offer 2 (a renegotiation) is lost meanwhile. Back
    // up, the device asks for the same subscription again, saying it got offer 1: the server
    // sees it is behind and sends its current offer again.
    let now = b.now;
    b.input(Input::LinkDown { since: now });
    b.input(Input::LinkUp);
    let outs = b.take();
    let sub = last_subscribe(&outs).expect("the answered subscription is asked for again").clone();
    assert_eq!(sub.want, first.want);
    assert_eq!(sub.offer_version, Some(1));
    assert!(!sub.restart);
    b.sfu(versioned_offer(sub.request_id, &["alice"], "offer-2", 2));
    assert_eq!(subscribes(&b.take()), ["offer-2"]);
}

impl Dev {
    /// Lets `ms` pass on the virtual clock (the engine's timers fire).
    fn advance(&mut self, ms: i64) {
        self.now += ms - 10;
        self.input(Input::Timeout);
    }

    fn state(&mut self, pc: u32, state: rtc_core::engine::LinkState) {
        self.media(SfuEvent::State { call_id: CALL.into(), pc, state });
    }
}

fn republishes(outs: &[Output]) -> Vec<(bool, bool)> {
    sfu_actions(outs)
        .into_iter()
        .filter_map(|a| match a {
            SfuAction::Republish { video, ice_restart, .. } => Some((*video, *ice_restart)),
            _ => None,
        })
        .collect()
}

/// bob in the call, publishing (answered) and subscribed to alice (offer answered); both
/// connections up.
fn connected_callee() -> Dev {
    use rtc_core::engine::LinkState::Connected;
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let rid = last_subscribe(&b.take()).unwrap().request_id;
    publish_ok(&mut b);
    b.sfu(versioned_offer(rid, &["alice"], "offer-1", 1));
    b.subscribe_answer("answer-1");
    b.state(sfu_pc::PUBLISHER, Connected);
    b.state(sfu_pc::SUBSCRIBER, Connected);
    b.take();
    b
}

#[test]
fn a_lost_sfu_connection_is_restarted_in_place_without_hangup() {
    use rtc_core::engine::LinkState::{Connected, Disconnected, Failed};
    let mut b = connected_callee();
    // The publisher's transport drops: it gets the grace to come back by itself, then makes an
    // ICE-restart offer on the same connection, which goes to the SFU as a renegotiation.
    b.state(sfu_pc::PUBLISHER, Disconnected);
    b.advance(1_000);
    assert!(republishes(&b.take()).is_empty(), "within the grace");
    b.advance(1_500);
    let outs = b.take();
    assert_eq!(republishes(&outs), [(true, true)]);
    b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "restart-offer".into() });
    let outs = b.take();
    let p = frames(&outs)
        .into_iter()
        .find_map(|f| match f {
            Frame::SfuPublish(p) => Some(p.clone()),
            _ => None,
        })
        .expect("the restart offer goes to the SFU");
    assert_eq!(p.sdp_offer, "restart-offer");
    // Still down (the network is not back yet): restarted again every few seconds.
    b.advance(5_000);
    assert_eq!(republishes(&b.take()), [(true, true)]);
    b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "restart-offer-2".into() });
    let rid = last_publish(&b.take()).unwrap();
    b.sfu(SfuInput::Answer(proto::SfuAnswer { request_id: rid, call_id: CALL.into(), sdp: "janus-answer-2".into() }));
    assert!(sfu_actions(&b.take()).contains(&&SfuAction::PublishAnswer { call_id: CALL.into(), sdp: "janus-answer-2".into() }));
    b.state(sfu_pc::PUBLISHER, Connected);
    b.advance(20_000);
    assert!(republishes(&b.take()).is_empty(), "back up: no more restarts");
    // The subscriber fails: at once, the SFU is asked for an ICE-restart offer (only it offers
    // on that connection), for the same streams.
    b.state(sfu_pc::SUBSCRIBER, Failed);
    let outs = b.take();
    let sub = last_subscribe(&outs).expect("a restart subscription").clone();
    assert!(sub.restart);
    assert_eq!(sub.want.len(), 2);
    b.sfu(versioned_offer(sub.request_id, &["alice"], "restart-offer", 2));
    assert_eq!(subscribes(&b.take()), ["restart-offer"]);
    b.subscribe_answer("answer-2");
    b.state(sfu_pc::SUBSCRIBER, Connected);
    b.advance(20_000);
    let outs = b.take();
    assert!(last_subscribe(&outs).is_none());
    assert!(events(&outs).is_empty(), "no app event: {outs:?}");
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);
}

/// The call's Janus died: the publisher's ICE-restart offer fails on the server (53004) until
/// it moves the call to another Janus (10 s). Each failure is one more turn of the restart loop,
/// not a failed join: no hangup (before, the first one ended the call with 9), then the
/// server's `SfuRestart` sets everything up again.
#[test]
fn a_restart_offer_the_sfu_fails_is_retried_and_not_a_failed_join() {
    use rtc_core::engine::LinkState::Disconnected;
    let mut b = connected_callee();
    b.state(sfu_pc::PUBLISHER, Disconnected);
    b.advance(2_500);
    for turn in 0..3 {
        assert_eq!(republishes(&b.take()), [(true, true)], "turn {turn}");
        b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "restart-offer".into() });
        let request_id = last_publish(&b.take()).expect("the restart offer goes to the SFU");
        b.sfu(SfuInput::Failed(proto::SfuFailed {
            request_id,
            call_id: CALL.into(),
            pc: sfu_pc::PUBLISHER,
            code: proto::error_code::SFU_REQUEST_FAILED,
            reason: "Janus at … is unreachable".into(),
            answer: false,
        }));
        let outs = b.take();
        assert_eq!(hangup_reason(&outs), None, "turn {turn}");
        assert!(events(&outs).is_empty(), "no app event: {outs:?}");
        b.advance(5_000);
    }
    b.take();
    // The server moved the call: set up again, no hangup.
    b.sfu(SfuInput::Restart(proto::SfuRestart { call_id: CALL.into(), generation: 2 }));
    let outs = b.take();
    assert_eq!(sfu_actions(&outs)[0], &SfuAction::Reset { call_id: CALL.into() });
    assert_eq!(publishes(&outs), 1);
    publish_ok(&mut b);
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);
}

#[test]
fn a_connection_that_stays_down_gives_up_as_a_failed_join() {
    use rtc_core::engine::LinkState::Failed;
    let mut b = connected_callee();
    b.state(sfu_pc::PUBLISHER, Failed);
    let mut restarts = republishes(&b.take()).len();
    for _ in 0..30 {
        b.advance(5_000);
        let outs = b.take();
        restarts += republishes(&outs).len();
        if hangup_reason(&outs).is_some() {
            assert_eq!(count(&outs, |e| matches!(e, CallEvent::PublishFail { .. })), 1);
            assert_eq!(hangup_reason(&outs), Some(end_reason::PUBLISH_ERROR));
            assert_eq!(restarts, rtc_core::engine::SFU_RESTARTS as usize);
            return;
        }
        // The restart offer is made and sent each time (the SFU never gets through).
        b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "restart-offer".into() });
    }
    panic!("never gave up");
}

#[test]
fn a_member_that_joined_without_a_camera_publishes_video_when_it_turns_it_on() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    b.take();
    publish_ok(&mut b);
    // Camera-off mode (the default): enableVideoTrack() captures a new camera, and the
    // publishing connection is renegotiated to carry it (it may have no video sender: the
    // member joined without a camera, isAllowDemotionGetStream).
    b.command(Command::MuteTrack { call_id: CALL.into(), kind: TrackKind::Video, muted: true });
    b.settle();
    b.command(Command::MuteTrack { call_id: CALL.into(), kind: TrackKind::Video, muted: false });
    let outs = b.take();
    assert!(outs.iter().any(|o| matches!(o, Output::Media(MediaAction::CaptureCamera { .. }))), "{outs:?}");
    b.input(Input::Media(MediaEvent::Captured { call_id: CALL.into(), result: Ok(vec![TrackKind::Video]) }));
    let outs = b.settle();
    assert_eq!(republishes(&outs), [(true, false)]);
    b.media(SfuEvent::PublishOffer { call_id: CALL.into(), sdp: "offer-with-video".into() });
    let rid = last_publish(&b.take()).expect("the renegotiation goes to the SFU");
    b.sfu(SfuInput::Answer(proto::SfuAnswer { request_id: rid, call_id: CALL.into(), sdp: "answer-with-video".into() }));
    assert!(sfu_actions(&b.take()).contains(&&SfuAction::PublishAnswer { call_id: CALL.into(), sdp: "answer-with-video".into() }));
}

#[test]
fn the_server_saying_which_layers_anyone_receives_pauses_or_resumes_the_cameras_encodings() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    publish_ok(&mut b);
    b.take();
    let layers = |n| SfuInput::PublisherLayers(proto::SfuPublisherLayers { call_id: CALL.into(), max_substream: n });
    b.sfu(layers(0));
    let outs = b.take();
    assert_eq!(sfu_actions(&outs), [&SfuAction::Layers { call_id: CALL.into(), max_substream: 0 }], "only the low layer");
    b.sfu(layers(2));
    let outs = b.take();
    assert_eq!(sfu_actions(&outs), [&SfuAction::Layers { call_id: CALL.into(), max_substream: 2 }], "every layer again");
    // Another call's (or a call we are not in): nothing to do.
    b.sfu(SfuInput::PublisherLayers(proto::SfuPublisherLayers { call_id: "other".into(), max_substream: 0 }));
    assert!(sfu_actions(&b.take()).is_empty());
}

#[test]
fn a_member_that_joined_without_a_camera_turns_one_on_without_turning_it_off_first() {
    // Mesh and SFU alike: camera-off mode captures a new camera on enableVideoTrack() (spec:
    // "capture a NEW camera track"); the member never had one to release.
    for sfu in [false, true] {
        let mut dev = Dev::new("bob", sfu, 0);
        dev.camera = false;
        let mut b = callee_with(dev);
        b.take();
        b.command(Command::MuteTrack { call_id: CALL.into(), kind: TrackKind::Video, muted: false });
        let outs = b.take();
        assert!(outs.iter().any(|o| matches!(o, Output::Media(MediaAction::CaptureCamera { .. }))), "sfu {sfu}: {outs:?}");
        b.input(Input::Media(MediaEvent::Captured { call_id: CALL.into(), result: Ok(vec![TrackKind::Video]) }));
        let outs = b.settle();
        let local_video =
            events(&outs).iter().any(|e| matches!(e, CallEvent::TrackReady { track, .. } if track.local && track.kind == TrackKind::Video));
        assert!(local_video, "sfu {sfu}: the new camera's onTrackReady: {outs:?}");
        // Now it has one: a second enableVideoTrack() captures nothing more.
        b.command(Command::MuteTrack { call_id: CALL.into(), kind: TrackKind::Video, muted: false });
        assert!(!b.take().iter().any(|o| matches!(o, Output::Media(MediaAction::CaptureCamera { .. }))), "sfu {sfu}");
    }
}

#[test]
fn switching_video_without_a_local_video_track_is_53309() {
    // Spec A.5: disableVideoTrack() without a local video track → 53309, and so is
    // enableVideoTrack() when the camera is not re-captured (camera-off mode false).
    use rtc_core::types::error_code::{MISSING_VIDEO_TRACK_ERROR, SUCCESS};
    let video = |muted| Command::MuteTrack { call_id: CALL.into(), kind: TrackKind::Video, muted };
    for sfu in [false, true] {
        for camera_off in [true, false] {
            // A member that joined without a camera (isAllowDemotionGetStream).
            let mut dev = Dev::configured("bob", sfu, |c| c.camera_off_when_video_disabled = camera_off);
            dev.camera = false;
            let mut b = callee_with(dev);
            b.take();
            let off = b.command(video(true));
            let outs = b.take();
            assert_eq!(done(&outs, off), Some(MISSING_VIDEO_TRACK_ERROR), "sfu {sfu}, camera-off {camera_off}: disable");
            assert!(!outs.iter().any(|o| matches!(o, Output::Media(MediaAction::DropVideo { .. }) | Output::Send(_))), "nothing sent");
            if !camera_off {
                let on = b.command(video(false));
                assert_eq!(done(&b.take(), on), Some(MISSING_VIDEO_TRACK_ERROR), "sfu {sfu}: enable without camera-off mode");
            }
        }
        // Camera-off mode released the camera: a second disableVideoTrack() has none to disable.
        let mut b = callee(sfu, 0);
        b.take();
        let off = b.command(video(true));
        assert_eq!(done(&b.settle(), off), Some(SUCCESS), "sfu {sfu}");
        let again = b.command(video(true));
        assert_eq!(done(&b.take(), again), Some(MISSING_VIDEO_TRACK_ERROR), "sfu {sfu}: disable twice");
        // The call is over: no room, no camera (it was PARAM_ERROR).
        let mut b = callee(sfu, 0);
        b.command(Command::Hangup { call_id: CALL.into() });
        b.settle();
        for muted in [true, false] {
            let after = b.command(video(muted));
            assert_eq!(done(&b.take(), after), Some(MISSING_VIDEO_TRACK_ERROR), "sfu {sfu}: muted {muted} after the hangup");
        }
    }
}

#[test]
fn sfu_publisher_layers_survives_the_wire() {
    use prost::Message as _;
    let f = proto::ServerFrame {
        server_time: 1,
        body: Some(proto::server_frame::Body::SfuPublisherLayers(proto::SfuPublisherLayers { call_id: CALL.into(), max_substream: 1 })),
    };
    let back = proto::ServerFrame::decode(&*f.encode_to_vec()).unwrap();
    assert_eq!(back.body, f.body, "the oneof knows tag 17");
}

/// The result code of the last command that finished.
fn done_code(outs: &[Output]) -> Option<i32> {
    outs.iter().rev().find_map(|o| match o {
        Output::Done { code, .. } => Some(*code),
        _ => None,
    })
}

fn layers_sent(outs: &[Output]) -> Vec<&proto::SfuLayers> {
    frames(outs)
        .into_iter()
        .filter_map(|f| match f {
            Frame::SfuLayers(l) => Some(l),
            _ => None,
        })
        .collect()
}

/// (feed, substream) of each video asked for.
fn video_layers(sub: &proto::SfuSubscribe) -> Vec<(String, i32)> {
    sub.want.iter().filter(|w| w.mid == "1").map(|w| (w.feed.clone(), w.substream)).collect()
}

fn set_layer(dev: &mut Dev, user: &str, layer: VideoLayer) -> Vec<Output> {
    dev.command(Command::RemoteVideoLayer { call_id: CALL.into(), user_id: user.into(), layer });
    dev.take()
}

#[test]
fn the_apps_layer_for_a_user_is_sent_at_once_and_kept_for_later_subscriptions() {
    let mut b = callee(true, 0);
    let mut users = vec!["alice", "carol", "dave", "erin", "frank"];
    b.sfu(joined(users.iter().map(|u| feed(u, true)).collect(), 1));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    assert!(video_layers(&sub).iter().all(|(_, l)| *l == 0), "5 videos: low");
    b.sfu(offer(sub.request_id, &users));
    b.take();

    // High for alice: one SfuLayers for her video, no new subscription.
    let outs = set_layer(&mut b, "alice", VideoLayer::High);
    assert_eq!(done_code(&outs), Some(error_code::SUCCESS));
    let sent = layers_sent(&outs);
    assert_eq!(sent.len(), 1, "{outs:?}");
    assert_eq!(sent[0].want, [proto::SfuWant { feed: "feed-alice".into(), mid: "1".into(), substream: 2 }]);
    assert!(last_subscribe(&outs).is_none());
    // Asking again changes nothing.
    assert!(layers_sent(&set_layer(&mut b, "alice", VideoLayer::High)).is_empty());

    // A new member's subscription keeps alice high, the rest on the tile default.
    users.push("grace");
    b.sfu(feeds(users.iter().map(|u| feed(u, true)).collect()));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    for (f, l) in video_layers(&sub) {
        assert_eq!(l, if f == "feed-alice" { 2 } else { 0 }, "{f}");
    }
    b.sfu(offer(sub.request_id, &users));
    b.take();

    // After an SFU restart the new generation's subscription keeps it too.
    b.sfu(SfuInput::Restart(proto::SfuRestart { call_id: CALL.into(), generation: 2 }));
    b.take();
    b.sfu(joined(users.iter().map(|u| feed(u, true)).collect(), 2));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    assert!(video_layers(&sub).contains(&("feed-alice".into(), 2)), "{sub:?}");
    b.sfu(offer(sub.request_id, &users));
    b.take();

    // Low for carol, then back to auto for alice: the tile default (low at 6 videos).
    let outs = set_layer(&mut b, "carol", VideoLayer::Low);
    assert!(layers_sent(&outs).is_empty(), "already low by the tile count");
    let outs = set_layer(&mut b, "alice", VideoLayer::Auto);
    assert_eq!(layers_sent(&outs)[0].want, [proto::SfuWant { feed: "feed-alice".into(), mid: "1".into(), substream: 0 }]);
    // Few tiles: auto is the server's pick, low stays low.
    b.sfu(feeds(vec![feed("alice", true), feed("carol", true)]));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    assert_eq!(video_layers(&sub), [("feed-alice".into(), -1), ("feed-carol".into(), 0)]);
}

#[test]
fn a_layer_asked_before_subscribing_is_used_by_the_first_subscription() {
    let mut b = callee(true, 0);
    assert_eq!(done_code(&set_layer(&mut b, "alice", VideoLayer::High)), Some(error_code::SUCCESS));
    b.sfu(joined(vec![feed("alice", true), feed("carol", true)], 1));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    assert_eq!(video_layers(&sub), [("feed-alice".into(), 2), ("feed-carol".into(), -1)]);
}

#[test]
fn a_layer_for_someone_not_in_the_call_is_a_parameter_error_and_a_mesh_call_ignores_it() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true)], 1));
    b.take();
    for user in ["zoe", "bob"] {
        let outs = set_layer(&mut b, user, VideoLayer::High);
        assert_eq!(done_code(&outs), Some(error_code::PARAM_ERROR), "{user}");
        assert!(layers_sent(&outs).is_empty());
    }
    b.command(Command::RemoteVideoLayer { call_id: "other".into(), user_id: "alice".into(), layer: VideoLayer::High });
    assert_eq!(done_code(&b.take()), Some(error_code::PARAM_ERROR), "unknown call");
    // Mesh: each link carries one layer; nothing to pick, and the app cannot tell the path.
    let mut m = callee(false, 0);
    m.take();
    let outs = set_layer(&mut m, "alice", VideoLayer::High);
    assert_eq!(done_code(&outs), Some(error_code::SUCCESS));
    assert!(sfu_actions(&outs).is_empty());
    // Once the call is over it is gone.
    m.command(Command::Hangup { call_id: CALL.into() });
    m.settle();
    assert_eq!(done_code(&set_layer(&mut m, "alice", VideoLayer::High)), Some(error_code::PARAM_ERROR));
}

#[test]
fn a_layer_asked_while_a_subscription_is_under_way_follows_its_offer() {
    let mut b = callee(true, 0);
    b.sfu(joined(vec![feed("alice", true), feed("carol", true)], 1));
    let sub = last_subscribe(&b.take()).unwrap().clone();
    let outs = set_layer(&mut b, "alice", VideoLayer::High);
    assert!(layers_sent(&outs).is_empty() && last_subscribe(&outs).is_none(), "waits for the offer: {outs:?}");
    b.sfu(offer(sub.request_id, &["alice", "carol"]));
    let outs = b.take();
    assert!(last_subscribe(&outs).is_none(), "no renegotiation for a layer");
    assert_eq!(layers_sent(&outs)[0].want, [proto::SfuWant { feed: "feed-alice".into(), mid: "1".into(), substream: 2 }]);
}

fn answer_refused(request_id: u32) -> SfuInput {
    SfuInput::Failed(proto::SfuFailed {
        request_id,
        call_id: CALL.into(),
        pc: sfu_pc::SUBSCRIBER,
        code: proto::error_code::SFU_REQUEST_FAILED,
        reason: "start: Error parsing SDP?".into(),
        answer: true,
    })
}

/// The SFU refuses the answer to the join's subscription (Janus's `start` fails; the server
/// drops the subscription): a failed join subscription as a refused `SfuSubscribe` is —
/// `onTrackSubscribeFail(53004)` once, subscribed afresh after the pause with
/// `isAllowSubscribeRetry`, else the call ends with 10. Before, the subscription was `Up` since
/// its offer and the failure was dropped: no event, no retry, no end, no media.
#[test]
fn a_join_subscription_whose_answer_the_sfu_refuses_fails_and_is_retried_or_ends_with_10() {
    let mut b = callee(true, 2);
    b.sfu(joined(vec![feed("alice", true)], 1));
    let first = last_subscribe(&b.take()).unwrap().clone();
    b.sfu(versioned_offer(first.request_id, &["alice"], "offer-1", 1));
    b.subscribe_answer("answer-1");
    assert_eq!(sfu_answers(&b.take()), [(first.request_id, "answer-1".to_string())]);
    // (In Chromium the receiving connection's ICE connects before the refusal comes: Janus
    // answers checks without having the answer. It says nothing about the subscription.)
    b.state(sfu_pc::SUBSCRIBER, rtc_core::engine::LinkState::Connected);
    b.sfu(answer_refused(first.request_id));
    let outs = b.take();
    let fails: Vec<_> = events(&outs).into_iter().filter(|e| matches!(e, CallEvent::SubscribeFail { .. })).collect();
    assert_eq!(fails, [&CallEvent::SubscribeFail { call_id: CALL.into(), code: 53004 }]);
    assert_eq!(hangup_reason(&outs), None);
    assert!(last_subscribe(&outs).is_none(), "not at once");
    b.advance(PAST_BACKOFF_MS);
    let outs = b.take();
    let again = last_subscribe(&outs).expect("subscribed afresh after the pause").clone();
    assert_eq!(again.want, first.want);
    assert!(!again.restart);
    // The fresh subscription's offer is applied and answered; the call goes on, no more events.
    b.sfu(versioned_offer(again.request_id, &["alice"], "offer-2", 2));
    assert_eq!(subscribes(&b.take()), ["offer-2"]);
    b.subscribe_answer("answer-2");
    let outs = b.take();
    assert_eq!(sfu_answers(&outs), [(again.request_id, "answer-2".to_string())]);
    assert!(events(&outs).is_empty(), "{outs:?}");
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);

    // Without retries: the refusal ends the call with SUBSCRIBE_ERROR, after one event.
    let mut c = callee(true, 0);
    c.sfu(joined(vec![feed("alice", true)], 1));
    let rid = last_subscribe(&c.take()).unwrap().request_id;
    c.sfu(versioned_offer(rid, &["alice"], "offer-1", 1));
    c.subscribe_answer("answer-1");
    c.take();
    c.sfu(answer_refused(rid));
    let outs = c.take();
    assert_eq!(count(&outs, |e| matches!(e, CallEvent::SubscribeFail { code: 53004, .. })), 1);
    assert_eq!(hangup_reason(&outs), Some(end_reason::SUBSCRIBE_ERROR));
}

/// A later answer refused (here to the server's own offer, on a subscription that was up; the
/// server dropped the subscription): no app event, subscribed afresh at once (an ICE-restart
/// subscription, which the server serves with a new subscriber), the call goes on.
#[test]
fn a_later_answer_the_sfu_refuses_resubscribes_at_once_without_app_event() {
    let mut b = connected_callee();
    b.sfu(versioned_offer(0, &["alice"], "offer-2", 2));
    b.subscribe_answer("answer-2");
    assert_eq!(sfu_answers(&b.take()), [(0, "answer-2".to_string())]);
    b.sfu(answer_refused(0));
    let outs = b.take();
    assert!(events(&outs).is_empty(), "no app event: {outs:?}");
    assert_eq!(hangup_reason(&outs), None);
    let sub = last_subscribe(&outs).expect("subscribed afresh at once").clone();
    assert_eq!(sub.want.len(), 2);
    b.sfu(versioned_offer(sub.request_id, &["alice"], "offer-3", 3));
    assert_eq!(subscribes(&b.take()), ["offer-3"]);
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);
    // An SFU refusing every later answer: given up after SFU_RESTARTS of them, as a failed join.
    let limit = rtc_core::engine::SFU_RESTARTS as u32;
    let mut rid = sub.request_id;
    for n in 2..=limit + 1 {
        b.subscribe_answer(format!("answer-{n}"));
        b.take();
        b.sfu(answer_refused(rid));
        let outs = b.take();
        if n <= limit {
            assert!(events(&outs).is_empty(), "refusal {n}: {outs:?}");
            rid = last_subscribe(&outs).expect("subscribed afresh").request_id;
            b.sfu(versioned_offer(rid, &["alice"], &format!("offer-{}", n + 2), n + 2));
        } else {
            assert_eq!(count(&outs, |e| matches!(e, CallEvent::SubscribeFail { .. })), 1);
            assert_eq!(hangup_reason(&outs), Some(end_reason::SUBSCRIBE_ERROR));
        }
    }
}

/// Two answers refused in a row: the device answered the server's next offer before the first
/// refusal came back, and the server, its subscription already dropped, refuses that one too
/// (marked `answer`, request id 0). The second refusal is stale: the fresh subscription asked
/// for after the first goes on, no app event, no second subscription.
#[test]
fn a_stale_refused_answer_leaves_the_fresh_subscription_alone() {
    let mut b = connected_callee();
    b.sfu(versioned_offer(0, &["alice"], "offer-2", 2));
    b.subscribe_answer("answer-2");
    b.take();
    b.sfu(answer_refused(0));
    let sub = last_subscribe(&b.take()).expect("subscribed afresh at once").clone();
    b.sfu(answer_refused(0));
    let outs = b.take();
    assert!(events(&outs).is_empty(), "no app event: {outs:?}");
    assert!(last_subscribe(&outs).is_none(), "the fresh subscription is still under way: {outs:?}");
    b.sfu(versioned_offer(sub.request_id, &["alice"], "offer-3", 3));
    assert_eq!(subscribes(&b.take()), ["offer-3"]);
    b.subscribe_answer("answer-3");
    assert_eq!(sfu_answers(&b.take()), [(sub.request_id, "answer-3".to_string())]);
    assert_eq!(b.engine.session(CALL).unwrap().state, SessionState::Keeping);
}
