//! Offline push through the app's webhook: a local HTTP receiver on 127.0.0.1 checks the
//! RongCloud-style signature and the body; online recipients get no push; failures are retried
//! with backoff; a dead or hanging receiver never slows routing down.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use rtc_core::proto::call_content::Body as CallBody;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{
    object_name, AndroidPushConfig, CallContent, Hangup, HarmonyOsPushConfig, Invite,
    IosPushConfig, PushConfig, PushOptions, SendMessage, UserProfile,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// One request the receiver got.
#[derive(Debug)]
struct Hit {
    headers: HeaderMap,
    query: Vec<(String, String)>,
    body: Value,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn query(&self, name: &str) -> &str {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The signature a receiver checks: hex SHA1(appSecret + Nonce + Timestamp), in the headers
    /// and, as RongCloud's callbacks do, in the query.
    fn assert_signed(&self, app_key: &str, secret: &str) {
        let (nonce, ts) = (self.header("Nonce"), self.header("Timestamp"));
        assert!(!nonce.is_empty() && !ts.is_empty(), "{self:?}");
        assert_eq!(self.header("App-Key"), app_key);
        assert_eq!(self.header("Signature"), signature(secret, nonce, ts));
        let age = now_ms() - ts.parse::<i64>().expect("Timestamp in ms");
        assert!((0..60_000).contains(&age), "fresh timestamp, got age {age}");
        assert_eq!(
            (
                self.query("appKey"),
                self.query("nonce"),
                self.query("timestamp"),
                self.query("signature")
            ),
            (app_key, nonce, ts, self.header("Signature"))
        );
        assert!(self.header("Content-Type").starts_with("application/json"));
    }
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Never answer.
    Hang,
}

struct Receiver {
    url: String,
    hits: mpsc::UnboundedReceiver<Hit>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Self {
        #[derive(Clone)]
        struct St {
            tx: mpsc::UnboundedSender<Hit>,
            seen: Arc<AtomicUsize>,
            behaviour: Behaviour,
        }
        async fn handle(
            State(st): State<St>,
            RawQuery(q): RawQuery,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            let query = serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap();
            let body = serde_json::from_str(&body).expect("JSON body");
            let _ = st.tx.send(Hit {
                headers,
                query,
                body,
            });
            let n = st.seen.fetch_add(1, Ordering::SeqCst);
            match st.behaviour {
                Behaviour::FailFirst(k) if n < k => StatusCode::INTERNAL_SERVER_ERROR,
                Behaviour::FailFirst(_) => StatusCode::OK,
                Behaviour::Hang => std::future::pending().await,
            }
        }
        let (tx, hits) = mpsc::unbounded_channel();
        let st = St {
            tx,
            seen: Arc::default(),
            behaviour,
        };
        let app = axum::Router::new()
            .route("/push", post(handle))
            .with_state(st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/push?tenant=t1"),
            hits,
        }
    }

    async fn next(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.hits.recv())
            .await
            .expect("a push within the wait")
            .expect("receiver alive")
    }

    /// Nothing (more) arrives within `d`.
    async fn assert_quiet(&mut self, d: Duration) {
        if let Ok(Some(hit)) = tokio::time::timeout(d, self.hits.recv()).await {
            panic!("unexpected push: {hit:?}");
        }
    }
}

fn full_push() -> PushConfig {
    PushConfig {
        push_title: "Alice is calling".into(),
        push_content: "Tap to answer".into(),
        push_data: r#"{"mediaType":2,"userIdList":["bob"],"callId":"call-1"}"#.into(),
        options: Some(Box::new(PushOptions {
            push_data: Some("app-data".into()),
            ios_config: Some(IosPushConfig {
                thread_id: Some("calls".into()),
                apns_collapse_id: Some("c1".into()),
                interruption_level: Some("time-sensitive".into()),
                ..Default::default()
            }),
            android_config: Some(AndroidPushConfig {
                channel_id_hw: Some("hw-ch".into()),
                category_hw: Some("VOIP".into()),
                importance_hw: Some("NORMAL".into()),
                type_vivo: Some("1".into()),
                category_vivo: Some("IM".into()),
                google_config_json: Some(r#"{"collapseKey":"k","priority":"high"}"#.into()),
                extra_json: r#"{"channelIdNewVendor":"nv"}"#.into(),
                ..Default::default()
            }),
            harmony_os_config: Some(HarmonyOsPushConfig {
                category: Some("VOIP".into()),
                ..Default::default()
            }),
            template_id: Some("tpl-1".into()),
            ..Default::default()
        })),
    }
}

fn call_msg(target: &str, call_id: &str, body: CallBody, push: Option<PushConfig>) -> SendMessage {
    let content = CallContent {
        platform: "Web".into(),
        device_id: "a1".into(),
        call_id: call_id.into(),
        user: Some(UserProfile {
            name: Some("Alice".into()),
            ..Default::default()
        }),
        body: Some(body),
    };
    SendMessage {
        message_type: content.object_name().unwrap().into(),
        push,
        ..private(target, &content.to_bytes())
    }
}

fn invite(users: &[&str]) -> CallBody {
    CallBody::Invite(Invite {
        media_type: 2,
        invite_user_ids: users.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

/// Sends and waits for its SendResult `code`, skipping deliveries; returns how long it took.
/// `a` invites bob to call `call-1` (request 1) with the full push config; it is routed.
async fn invite_bob_with_push(a: &mut Client) {
    let msg = call_msg("bob", "call-1", invite(&["bob"]), Some(full_push()));
    send(a, 1, msg, 0).await;
}

/// Invites `u1`…`u5` to calls `c1`…`c5` (requests 1 to 5), each with a push: every invite is
/// routed at once (< 500 ms), whatever the push receiver does.
async fn invite_five_without_waiting(a: &mut Client) {
    for i in 1..=5u32 {
        let (user, call) = (format!("u{i}"), format!("c{i}"));
        let msg = call_msg(&user, &call, invite(&[&user]), Some(full_push()));
        let took = send(a, i, msg, 0).await;
        assert!(took < Duration::from_millis(500), "routing waited {took:?}");
    }
}

async fn send(c: &mut Client, request_id: u32, msg: SendMessage, code: i32) -> Duration {
    let t0 = Instant::now();
    c.send_message(request_id, msg).await;
    loop {
        match c.recv().await.body {
            Some(S::SendResult(r)) => {
                assert_eq!((r.request_id, r.code), (request_id, code));
                return t0.elapsed();
            }
            Some(S::Deliver(_)) => continue,
            other => panic!("expected SendResult, got {other:?}"),
        }
    }
}

async fn server_with(url: &str, tweak: impl FnOnce(&mut rcall_server::Config)) -> TestServer {
    let url = url.to_owned();
    TestServer::start_with(move |c| {
        c.push_webhook_url = Some(url);
        c.push_retry_base = Duration::from_millis(50);
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn an_invite_and_a_hangup_for_an_offline_user_are_posted_signed_with_the_full_config() {
    let mut rx = Receiver::start(Behaviour::FailFirst(0)).await;
    let ts = server_with(&rx.url, |_| {}).await;
    let mut a = ts.client("alice", "a1").await;
    invite_bob_with_push(&mut a).await;

    let hit = rx.next().await;
    hit.assert_signed(APP_KEY, APP_SECRET);
    assert_eq!(hit.query("tenant"), "t1", "the configured query is kept");
    assert!(!hit.header("X-Rcall-Push-Id").is_empty());
    let b = &hit.body;
    assert_eq!(b["event"], "invite");
    assert_eq!(b["messageType"], object_name::INVITE);
    assert_eq!(b["appKey"], APP_KEY);
    assert_eq!(b["toUserIds"], serde_json::json!(["bob"]));
    assert_eq!(
        (b["fromUserId"].as_str(), b["callerId"].as_str()),
        (Some("alice"), Some("alice"))
    );
    assert_eq!(b["fromUser"]["name"], "Alice");
    assert_eq!(
        (b["callId"].as_str(), b["mediaType"].as_i64()),
        (Some("call-1"), Some(2))
    );
    assert_eq!(
        (b["conversationType"].as_i64(), b["targetId"].as_str()),
        (Some(1), Some("bob"))
    );
    assert_eq!(b["pushTitle"], "Alice is calling");
    assert_eq!(b["pushContent"], "Tap to answer");
    assert!(b["pushData"]
        .as_str()
        .unwrap()
        .contains("\"callId\":\"call-1\""));
    assert!(b["sentTime"].as_i64().unwrap() > 0);
    assert_eq!(
        hit.header("X-Rcall-Push-Id"),
        b["messageUId"].as_str().unwrap()
    );
    let c = &b["pushConfig"];
    assert_eq!(c["pushTitle"], "Alice is calling");
    assert_eq!(c["pushData"], "app-data", "the app's own pushData");
    assert_eq!(c["iOSConfig"]["threadId"], "calls");
    assert_eq!(c["iOSConfig"]["apnsCollapseId"], "c1");
    assert_eq!(c["iOSConfig"]["interruptionLevel"], "time-sensitive");
    assert_eq!(c["androidConfig"]["channelIdHW"], "hw-ch");
    assert_eq!(c["androidConfig"]["categoryHW"], "VOIP");
    assert_eq!(c["androidConfig"]["importanceHW"], "NORMAL");
    assert_eq!(c["androidConfig"]["typeVivo"], "1");
    assert_eq!(c["androidConfig"]["categoryVivo"], "IM");
    assert_eq!(c["androidConfig"]["googleConfig"]["priority"], "high");
    assert_eq!(c["androidConfig"]["channelIdNewVendor"], "nv");
    assert_eq!(c["harmonyOSConfig"]["category"], "VOIP");
    assert_eq!(c["templateId"], "tpl-1");
    rx.assert_quiet(Duration::from_millis(300)).await;

    // Alice cancels: a hangup that carries a push config is pushed too, with its reason.
    let hangup_push = PushConfig {
        push_title: "Missed call".into(),
        ..Default::default()
    };
    let hangup = CallBody::Hangup(Hangup { reason: 1 });
    send(
        &mut a,
        2,
        call_msg("bob", "call-1", hangup, Some(hangup_push)),
        0,
    )
    .await;
    let hit = rx.next().await;
    hit.assert_signed(APP_KEY, APP_SECRET);
    assert_eq!(hit.body["event"], "hangup");
    assert_eq!(hit.body["reason"], 1);
    assert_eq!(hit.body["pushTitle"], "Missed call");
    assert_eq!(hit.body["toUserIds"], serde_json::json!(["bob"]));
    // A message without a push config (legacy hangups, ringing, accept) is never pushed.
    send(
        &mut a,
        3,
        call_msg("bob", "call-2", invite(&["bob"]), None),
        0,
    )
    .await;
    rx.assert_quiet(Duration::from_millis(300)).await;
    // Bob still gets everything stored when he connects.
    let (_b, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    assert_eq!(replay.len(), 3);
    let m = &ts.server.state().metrics;
    assert_eq!(m.push_delivered.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn online_recipients_get_no_push_and_group_invites_list_only_the_offline_ones() {
    let mut rx = Receiver::start(Behaviour::FailFirst(0)).await;
    let ts = server_with(&rx.url, |_| {}).await;
    let mut a = ts.client("alice", "a1").await;
    let mut b = ts.client("bob", "b1").await;
    invite_bob_with_push(&mut a).await;
    assert_eq!(b.recv_delivered().await.message_type, object_name::INVITE);
    rx.assert_quiet(Duration::from_millis(500)).await;

    // A group call to bob (online) and carol and dave (never connected): one POST, for the two.
    create_group(&ts, "g1", &["alice", "bob", "carol", "dave"]).await;
    let content = CallContent {
        platform: "Web".into(),
        device_id: "a1".into(),
        call_id: "call-g".into(),
        body: Some(invite(&["bob", "carol", "dave"])),
        ..Default::default()
    };
    let msg = SendMessage {
        push: Some(full_push()),
        ..group("g1", &["bob", "carol", "dave"], &content.to_bytes())
    };
    send(&mut a, 2, msg, 0).await;
    let hit = rx.next().await;
    assert_eq!(hit.body["toUserIds"], serde_json::json!(["carol", "dave"]));
    assert_eq!(
        (
            hit.body["conversationType"].as_i64(),
            hit.body["targetId"].as_str()
        ),
        (Some(3), Some("g1"))
    );
    rx.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_under_the_same_push_id() {
    let mut rx = Receiver::start(Behaviour::FailFirst(2)).await;
    let ts = server_with(&rx.url, |_| {}).await;
    let mut a = ts.client("alice", "a1").await;
    invite_bob_with_push(&mut a).await;
    let (h1, h2, h3) = (rx.next().await, rx.next().await, rx.next().await);
    for h in [&h1, &h2, &h3] {
        h.assert_signed(APP_KEY, APP_SECRET);
        assert_eq!(h.header("X-Rcall-Push-Id"), h1.header("X-Rcall-Push-Id"));
        assert_eq!(h.body, h1.body);
    }
    assert_ne!(
        h1.header("Nonce"),
        h2.header("Nonce"),
        "each attempt is signed afresh"
    );
    rx.assert_quiet(Duration::from_millis(500)).await;
    let m = &ts.server.state().metrics;
    assert_eq!(m.push_retries.load(Ordering::Relaxed), 2);
    assert_eq!(m.push_delivered.load(Ordering::Relaxed), 1);
    assert_eq!(m.push_failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_dead_or_hanging_receiver_never_slows_routing_and_a_full_queue_drops() {
    // Dead: nothing listens on the port.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/push", l.local_addr().unwrap())
    };
    let ts = server_with(&dead, |c| {
        c.push_max_attempts = 3;
        c.push_retry_base = Duration::from_millis(20);
    })
    .await;
    let mut a = ts.client("alice", "a1").await;
    invite_five_without_waiting(&mut a).await;
    let (_u1, replay) = Client::login_resume(ts.addr, &ts.token("u1"), "d", 0).await;
    assert_eq!(
        replay.len(),
        1,
        "the invite itself is stored and replayed as usual"
    );
    let m = ts.server.state().metrics.clone();
    let deadline = Instant::now() + WAIT;
    while m.push_failed.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        m.push_failed.load(Ordering::Relaxed),
        5,
        "each given up after its attempts"
    );
    assert_eq!(m.push_retries.load(Ordering::Relaxed), 10);

    // Hanging: the receiver takes the request and never answers; the queue holds 2.
    let mut rx = Receiver::start(Behaviour::Hang).await;
    let ts = server_with(&rx.url, |c| {
        c.push_queue_max = 2;
        c.push_timeout = Duration::from_secs(30);
    })
    .await;
    let mut a = ts.client("alice", "a1").await;
    invite_five_without_waiting(&mut a).await;
    let (h1, h2) = (rx.next().await, rx.next().await);
    assert_ne!(h1.body["callId"], h2.body["callId"]);
    rx.assert_quiet(Duration::from_millis(300)).await;
    let m = &ts.server.state().metrics;
    assert_eq!(m.push_enqueued.load(Ordering::Relaxed), 2);
    assert_eq!(
        m.push_dropped.load(Ordering::Relaxed),
        3,
        "past the queue's size pushes are dropped"
    );
    // Live routing still works while the pushes hang.
    let mut b = ts.client("bob", "b1").await;
    send(
        &mut a,
        9,
        call_msg("bob", "c9", invite(&["bob"]), Some(full_push())),
        0,
    )
    .await;
    assert_eq!(b.recv_delivered().await.message_type, object_name::INVITE);
}

#[tokio::test]
async fn each_app_has_its_own_webhook_and_secret() {
    let mut rx1 = Receiver::start(Behaviour::FailFirst(0)).await;
    let mut rx2 = Receiver::start(Behaviour::FailFirst(0)).await;
    let url2 = rx2.url.clone();
    let ts = server_with(&rx1.url, move |c| {
        with_second_app(c);
        c.extra_apps[0].push_webhook_url = Some(url2);
    })
    .await;
    let mut a = Client::login(ts.addr, &app2_token("alice"), "a1").await;
    invite_bob_with_push(&mut a).await;
    let hit = rx2.next().await;
    hit.assert_signed(APP2_KEY, APP2_SECRET);
    assert_eq!(hit.body["appKey"], APP2_KEY);
    rx1.assert_quiet(Duration::from_millis(300)).await;

    // An app without a webhook: nothing is posted anywhere.
    let mut rx = Receiver::start(Behaviour::FailFirst(0)).await;
    let ts = server_with(&rx.url, with_second_app).await;
    let mut a = Client::login(ts.addr, &app2_token("alice"), "a1").await;
    invite_bob_with_push(&mut a).await;
    rx.assert_quiet(Duration::from_millis(500)).await;
}

/// Cluster mode: a route that timed out behind a slow Redis ran there meanwhile; its resend
/// (after the `PING`) is a duplicate. The push for the recipients the run found offline is
/// still made, once, under the uid the message was routed with.
#[tokio::test]
async fn a_route_resent_after_a_timeout_pushes_once_to_the_offline_recipients() {
    let mut rx = Receiver::start(Behaviour::FailFirst(0)).await;
    let redis = redis_server::TestRedis::start();
    let url = rcall_server::cluster::RedisUrl::parse(&redis.url()).unwrap();
    let ts = server_with(&rx.url, |c| {
        c.redis = Some(url);
        short_redis_timings(c);
    })
    .await;
    let (mut a, _, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, 5).await;
    // (The route script loaded and alice's device announced to the rooms.)
    let warm_up = call_msg("bob", "call-0", invite(&["bob"]), None);
    send(
        &mut a,
        1,
        SendMessage {
            client_seq: 1,
            ..warm_up
        },
        0,
    )
    .await;

    // The node's main Redis connection waits behind a blocked command (until `unblock`).
    let blocked = block_main_lane(&redis, &ts, "test:block:push", 40).await;
    let msg = call_msg("bob", "call-1", invite(&["bob"]), Some(full_push()));
    a.send_message(
        2,
        SendMessage {
            client_seq: 2,
            ..msg
        },
    )
    .await;
    // Past a response timeout: the route is resent once the stall ends.
    tokio::time::sleep(SHORT_RESPONSE_TIMEOUT + Duration::from_secs(2)).await;
    unblock(&redis, "test:block:push").await;
    blocked.await.unwrap();
    let r = a.recv_send_result().await;
    assert_eq!((r.request_id, r.code), (2, 0));
    let hit = rx.next().await;
    assert_eq!(hit.body["toUserIds"], serde_json::json!(["bob"]));
    // The uid bob's copy carries (the run's, not the resend's).
    let (_b, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    let invite_uid = &replay.last().expect("bob's invites").message_uid;
    assert_eq!(hit.body["messageUId"].as_str(), Some(invite_uid.as_str()));
    rx.assert_quiet(Duration::from_secs(1)).await;
}
