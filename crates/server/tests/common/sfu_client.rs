//! SFU test clients: the SDK's SFU messages over a WebSocket client, and call messages of a
//! group call (`g`), for `sfu_relay.rs` and `sfu_cluster.rs`.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::janus_server::{TestJanus, ADMIN_KEY, API_SECRET};
use super::{Client, TestServer};
use rcall_server::sfu::JanusSettings;
use rtc_core::proto::call_content::Body as CallBody;
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{SendMessage, SfuPublish, SfuSubscribe, SfuWant};

pub fn settings(j: &TestJanus) -> JanusSettings {
    settings_at(j.url())
}

/// [`settings`] for a Janus at `url` (a proxy in front of a test Janus).
pub fn settings_at(url: String) -> JanusSettings {
    let mut s = JanusSettings::new(url);
    s.api_secret = Some(API_SECRET.into());
    s.admin_key = Some(ADMIN_KEY.into());
    s
}

/// A browser-like offer: Opus audio and VP8 video with three simulcast rids, sendonly (Janus
/// answers with its own, fake-free ICE credentials and fingerprint; no media flows).
pub fn offer() -> String {
    let fp = (0..32u32)
        .map(|i| format!("{:02X}", i * 7 % 256))
        .collect::<Vec<_>>()
        .join(":");
    let common = format!(
        "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n\
         a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\n"
    );
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0 1\r\na=msid-semantic: WMS s\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{common}a=mid:0\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendonly\r\na=msid:s a0\r\n\
         a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
         a=ssrc:1111 cname:c\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\n{common}a=mid:1\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\na=sendonly\r\n\
         a=msid:s v0\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:96 VP8/90000\r\n\
         a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\n\
         a=rid:h send\r\na=rid:m send\r\na=rid:l send\r\na=simulcast:send h;m;l\r\n"
    )
}

/// A client with the SFU frames it received while waiting for something else.
pub struct Dev {
    pub c: Client,
    pub sfu: VecDeque<S>,
}

pub fn is_sfu(b: &S) -> bool {
    matches!(
        b,
        S::SfuJoined(_)
            | S::SfuFeeds(_)
            | S::SfuOffer(_)
            | S::SfuAnswer(_)
            | S::SfuFailed(_)
            | S::SfuRestart(_)
    )
}

impl Dev {
    /// Logs `user` in on `ts` (the test app); returns `AuthResult.sfu` too.
    pub async fn login(ts: &TestServer, user: &str, device: &str) -> (Dev, bool) {
        Self::login_at(ts.addr, &ts.token(user), device).await
    }

    pub async fn login_at(addr: SocketAddr, token: &str, device: &str) -> (Dev, bool) {
        let (c, auth, _) = Client::login_instance(addr, token, device, 0, 1).await;
        (
            Dev {
                c,
                sfu: VecDeque::new(),
            },
            auth.sfu,
        )
    }

    /// Sends a call message and waits for its SendResult (code 0).
    pub async fn send_ok(&mut self, request_id: u32, msg: SendMessage) {
        self.c.send_message(request_id, msg).await;
        loop {
            match self.c.recv().await.body.unwrap() {
                S::SendResult(r) => {
                    assert_eq!(
                        (r.request_id, r.code),
                        (request_id, 0),
                        "{}",
                        self.c.device_id
                    );
                    return;
                }
                b if is_sfu(&b) => self.sfu.push_back(b),
                _ => continue,
            }
        }
    }

    /// The next SFU frame (deliveries skipped).
    pub async fn next_sfu(&mut self) -> S {
        if let Some(b) = self.sfu.pop_front() {
            return b;
        }
        loop {
            let b = self.c.recv().await.body.unwrap();
            if is_sfu(&b) {
                return b;
            }
        }
    }

    /// The next `SfuPublisherLayers`' `max_substream` (SFU frames met meanwhile are kept for
    /// [`Self::next_sfu`]). Other readers skip these frames: dynacast tells every publisher
    /// nobody subscribes to that it may pause (after `LAYERS_HOLD`), which most tests ignore.
    pub async fn next_publisher_layers(&mut self, call_id: &str) -> u32 {
        loop {
            match self.c.recv().await.body.unwrap() {
                S::SfuPublisherLayers(l) => {
                    assert_eq!(l.call_id, call_id);
                    return l.max_substream;
                }
                b if is_sfu(&b) => self.sfu.push_back(b),
                _ => continue,
            }
        }
    }

    /// Asserts no SFU frame is queued for this device now (a Ping's Pong comes first).
    pub async fn no_sfu(&mut self, nonce: u32) {
        assert!(self.sfu.is_empty(), "{}: {:?}", self.c.device_id, self.sfu);
        self.c.send(C::Ping(rtc_core::proto::Ping { nonce })).await;
        loop {
            match self.c.recv().await.body.unwrap() {
                S::Pong(p) if p.nonce == nonce => return,
                b if is_sfu(&b) => panic!("{}: unexpected {b:?}", self.c.device_id),
                _ => continue,
            }
        }
    }

    pub async fn publish(&mut self, request_id: u32, call_id: &str) -> S {
        self.c
            .send(C::SfuPublish(SfuPublish {
                request_id,
                call_id: call_id.into(),
                sdp_offer: offer(),
            }))
            .await;
        self.next_sfu().await
    }

    /// [`Self::publish`], its reply read past `SfuJoined`s of `generation` (a call the device
    /// was already told of): a reconnecting device may be told again, by the server's sync and
    /// by its own login both, and the SDK ignores a generation it has.
    #[allow(dead_code)] // (not every test binary uses it)
    pub async fn publish_told(&mut self, request_id: u32, call_id: &str, generation: u32) -> S {
        let mut reply = self.publish(request_id, call_id).await;
        while let S::SfuJoined(j) = &reply {
            assert_eq!(
                (j.call_id.as_str(), j.generation),
                (call_id, generation),
                "{}: only the same SfuJoined again",
                self.c.device_id
            );
            reply = self.next_sfu().await;
        }
        reply
    }

    pub async fn subscribe(&mut self, request_id: u32, call_id: &str, feeds: &[&str]) -> S {
        let want = feeds
            .iter()
            .map(|f| SfuWant {
                feed: f.to_string(),
                mid: String::new(),
                substream: -1,
            })
            .collect();
        self.c
            .send(C::SfuSubscribe(SfuSubscribe {
                request_id,
                call_id: call_id.into(),
                want,
                ..Default::default()
            }))
            .await;
        self.next_sfu().await
    }
}

#[allow(unused_imports)] // each SFU test uses its part
pub use super::calls::{accept, content, hangup, invite};

/// A GROUP call message from `device` to `recipients` of group `g`.
pub fn gcall(device: &str, recipients: &[&str], call_id: &str, body: CallBody) -> SendMessage {
    super::calls::group_call(device, "g", recipients, call_id, body)
}

/// alice (a1) invites bob to group call `call` and he accepts (b1); each gets its SfuJoined.
/// Returns the generations alice and bob were told (the same room: equal, also across nodes).
pub async fn two_in_call(a: &mut Dev, b: &mut Dev, call: &str) -> (u32, u32) {
    a.send_ok(1, gcall("a1", &["bob"], call, invite(&["bob"])))
        .await;
    let generation = joined(a.next_sfu().await, call);
    b.send_ok(1, gcall("b1", &["alice"], call, accept())).await;
    (generation, joined(b.next_sfu().await, call))
}

/// alice (a1) and bob (b1) log in to `ts` and start group call `call` ([`two_in_call`]);
/// returns them and the generation they were told.
#[allow(dead_code)] // (not every test binary uses it)
pub async fn pair_in_call(ts: &TestServer, call: &str) -> (Dev, Dev, u32) {
    let (mut a, _) = Dev::login(ts, "alice", "a1").await;
    let (mut b, _) = Dev::login(ts, "bob", "b1").await;
    let (generation, _) = two_in_call(&mut a, &mut b, call).await;
    (a, b, generation)
}

/// alice (a1) invites bob and carol to group call `call` and both accept (b1, c1); each gets
/// its SfuJoined.
pub async fn three_in_call(a: &mut Dev, b: &mut Dev, c: &mut Dev, call: &str) {
    a.send_ok(
        1,
        gcall("a1", &["bob", "carol"], call, invite(&["bob", "carol"])),
    )
    .await;
    joined(a.next_sfu().await, call);
    b.send_ok(1, gcall("b1", &["alice", "carol"], call, accept()))
        .await;
    joined(b.next_sfu().await, call);
    c.send_ok(1, gcall("c1", &["alice", "bob"], call, accept()))
        .await;
    joined(c.next_sfu().await, call);
}

pub fn joined(b: S, call: &str) -> u32 {
    match b {
        S::SfuJoined(j) => {
            assert_eq!(j.call_id, call);
            j.generation
        }
        other => panic!("expected SfuJoined, got {other:?}"),
    }
}

pub fn failed(b: S, request_id: u32, pc: u32, code: i32) -> String {
    match b {
        S::SfuFailed(f) => {
            assert_eq!(
                (f.request_id, f.pc, f.code),
                (request_id, pc, code),
                "{}",
                f.reason
            );
            f.reason
        }
        other => panic!("expected SfuFailed({request_id}), got {other:?}"),
    }
}

/// An `SfuRestart` of `call`; returns its generation.
pub fn restarted(b: S, call: &str) -> u32 {
    match b {
        S::SfuRestart(r) => {
            assert_eq!(r.call_id, call);
            r.generation
        }
        other => panic!("expected SfuRestart, got {other:?}"),
    }
}

/// How many handles have joined the room of `call` on the (first) Janus of `ts`'s SFU.
#[allow(dead_code)] // (not every test binary uses it)
pub async fn participants(ts: &TestServer, call: &str) -> usize {
    let sfu = ts.server.state().sfu.clone().unwrap();
    let room = rcall_server::sfu::room_id(&ts.config.app_key, call);
    sfu.janus().participants(&room).await.unwrap().len()
}

/// The feed id the SFU tells the others for `user`'s `device` in `call` on `ts`.
#[allow(dead_code)] // (not every test binary uses it)
pub async fn feed_of(ts: &TestServer, call: &str, user: &str, device: &str) -> String {
    let sfu = ts.server.state().sfu.clone().unwrap();
    sfu.peer_feed(&ts.config.app_key, call, user, device)
        .await
        .unwrap()
}

/// `dev`'s publish (request `request_id`) and subscription to `feed` (the next request) in
/// `call` both fail with `code`; returns their reasons.
async fn publish_and_subscribe_refused(
    dev: &mut Dev,
    call: &str,
    request_id: u32,
    feed: &str,
    code: i32,
) -> (String, String) {
    use rtc_core::proto::sfu_pc;
    let publish = failed(
        dev.publish(request_id, call).await,
        request_id,
        sfu_pc::PUBLISHER,
        code,
    );
    let subscribe = failed(
        dev.subscribe(request_id + 1, call, &[feed]).await,
        request_id + 1,
        sfu_pc::SUBSCRIBER,
        code,
    );
    (publish, subscribe)
}

/// `a`'s publish (request 2) and subscription to `feed` (request 3) in call `gc` both fail
/// with `SFU_REQUEST_FAILED`; returns their reasons.
#[allow(dead_code)] // (not every test binary uses it)
pub async fn publish_and_subscribe_fail(a: &mut Dev, feed: &str) -> (String, String) {
    use rtc_core::proto::error_code::SFU_REQUEST_FAILED;
    publish_and_subscribe_refused(a, "gc", 2, feed, SFU_REQUEST_FAILED).await
}

/// `ringing` (invited, not accepted yet) may neither publish (request 1) nor subscribe (2) in
/// `call`, nor may `outsider` (in no call) publish (1): `NOT_IN_CALL` each. Returns the reason
/// given to `ringing`'s publish.
#[allow(dead_code)] // (not every test binary uses it)
pub async fn refused_until_member(ringing: &mut Dev, outsider: &mut Dev, call: &str) -> String {
    use rtc_core::proto::{error_code::NOT_IN_CALL, sfu_pc};
    let (reason, _) = publish_and_subscribe_refused(ringing, call, 1, "x", NOT_IN_CALL).await;
    failed(
        outsider.publish(1, call).await,
        1,
        sfu_pc::PUBLISHER,
        NOT_IN_CALL,
    );
    reason
}

pub fn answer(b: S, request_id: u32) -> String {
    match b {
        S::SfuAnswer(a) => {
            assert_eq!(a.request_id, request_id);
            a.sdp
        }
        other => panic!("expected SfuAnswer({request_id}), got {other:?}"),
    }
}

/// A recvonly answer to Janus's subscriber offer, as a browser would make it (no media flows).
#[allow(dead_code)] // (not every test binary uses it)
pub fn answer_to(offer: &str) -> String {
    let fp = (0..32u32)
        .map(|i| format!("{:02X}", i * 11 % 256))
        .collect::<Vec<_>>()
        .join(":");
    offer
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .filter(|l| {
            !["a=candidate", "a=end-of-candidates", "a=ssrc", "a=msid:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| match l {
            "a=sendonly" => "a=recvonly".to_owned(),
            "a=setup:actpass" => "a=setup:active".to_owned(),
            l if l.starts_with("a=ice-ufrag:") => "a=ice-ufrag:wxyz".to_owned(),
            l if l.starts_with("a=ice-pwd:") => "a=ice-pwd:zyxwvutsrqponmlkjihgfedc".to_owned(),
            l if l.starts_with("a=fingerprint:") => format!("a=fingerprint:sha-256 {fp}"),
            l => l.to_owned(),
        })
        .map(|l| l + "\r\n")
        .collect()
}
