//! Offline push through the app's webhook.
//!
//! RongCloud pushes a call invite (and, after `setPushConfig`, a hangup) to a callee's phone
//! when none of its devices is connected. rcall has no APNs/FCM credentials of its own, so it
//! hands the push to the app's backend instead: when an invite-type message or a hangup that
//! carries a [`PushConfig`] is accepted for recipients with no online device, the server POSTs
//! one JSON document per message ([`webhook_body`]) to the app's `push_webhook_url`, signed like
//! RongCloud's server callbacks.
//!
//! Routing never waits for it: [`Pusher::enqueue`] only takes a slot of a bounded queue (full:
//! the push is dropped, counted in `rcall_push_dropped_total` and logged) and a background task
//! posts, retrying with exponential backoff. Pushes are best effort and in memory: what is
//! queued when the server stops is lost (the message itself is stored and replayed as usual).

use std::sync::Arc;
use std::time::Duration;

use rtc_core::proto::{call_content::Body, CallContent, PushConfig, PushOptions};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::hub::AppId;
use crate::metrics::Metrics;

/// Webhook requests in flight at once, over all apps: a slow backend cannot make the server
/// open connections without bound.
pub const CONCURRENCY: usize = 16;
/// Longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How pushes are queued and retried (from [`crate::Config`]).
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Pushes waiting or being retried at most; past it new ones are dropped.
    pub queue_max: usize,
    /// Attempts per push, the first included.
    pub max_attempts: u32,
    /// Pause after the first failed attempt; doubles after each further one.
    pub retry_base: Duration,
    /// Time one request may take.
    pub timeout: Duration,
}

/// Where one app's pushes go.
struct Hook {
    key: String,
    secret: String,
    url: reqwest::Url,
}

/// One push to post.
struct Job {
    app: AppId,
    /// The message's `messageUId`: the same on every retry (header `X-Rcall-Push-Id`), so a
    /// backend can drop a repeat whose first answer was lost.
    id: String,
    body: String,
}

/// The webhook sender: per-app hooks, the bounded queue and its worker.
pub struct Pusher {
    hooks: Vec<Option<Hook>>,
    tx: mpsc::UnboundedSender<(Job, OwnedSemaphorePermit)>,
    /// One permit per queued or retrying push: bounds memory whatever the backend does.
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Pusher {
    /// Starts the worker. `apps` are `(key, secret, webhook URL)` in `AppId` order; URLs were
    /// checked by [`crate::Config::validate`] (an unparsable one disables that app's pushes).
    pub fn start(
        apps: Vec<(String, String, Option<String>)>,
        settings: PushSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let hooks = apps
            .into_iter()
            .map(|(key, secret, url)| {
                let url = reqwest::Url::parse(url.as_deref()?).ok()?;
                Some(Hook { key, secret, url })
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let pusher = Arc::new(Self {
            hooks,
            tx,
            slots: Arc::new(Semaphore::new(settings.queue_max)),
            metrics,
        });
        tokio::spawn(worker(pusher.clone(), rx, settings, shutdown));
        pusher
    }

    /// `app` has a webhook: worth collecting offline recipients for.
    pub fn wants(&self, app: AppId) -> bool {
        self.hooks.get(app).is_some_and(Option::is_some)
    }

    /// Queues the push of an accepted message for `offline` recipients, without waiting. Does
    /// nothing for messages that are not call invites, member invites or hangups.
    pub fn enqueue(&self, app: AppId, msg: PushedMessage<'_>) {
        let Some(hook) = self.hooks.get(app).and_then(Option::as_ref) else {
            return;
        };
        let Some(body) = webhook_body(&hook.key, &msg) else {
            return;
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            Metrics::inc(&self.metrics.push_dropped);
            tracing::warn!(app = %hook.key, "push queue full: offline push dropped");
            return;
        };
        let job = Job {
            app,
            id: msg.message_uid.to_owned(),
            body: body.to_string(),
        };
        Metrics::inc(&self.metrics.push_enqueued);
        let _ = self.tx.send((job, permit));
    }
}

/// What [`webhook_body`] needs of one accepted message.
pub struct PushedMessage<'a> {
    pub message_type: &'a str,
    pub message_uid: &'a str,
    pub from_user_id: &'a str,
    pub conversation_type: i32,
    /// As the sender addressed it: the peer (PRIVATE) or the group.
    pub target_id: &'a str,
    pub channel_id: &'a str,
    pub content: &'a [u8],
    pub push: &'a PushConfig,
    /// Recipients with no online device.
    pub offline: &'a [String],
    pub sent_time: i64,
}

/// The JSON document posted for `msg`, or `None` when there is nothing to push (not an invite,
/// member invite or hangup; a member invite whose new members are all online).
pub fn webhook_body(app_key: &str, msg: &PushedMessage<'_>) -> Option<Value> {
    use prost::Message as _;
    let content = CallContent::decode(msg.content).ok()?;
    let mut to: Vec<&String> = msg.offline.iter().collect();
    let mut doc = Map::new();
    let event = match content.body? {
        Body::Invite(i) => {
            doc.insert("callerId".into(), msg.from_user_id.into());
            doc.insert("mediaType".into(), i.media_type.into());
            "invite"
        }
        Body::ModifyMem(m) => {
            // Members already in the call are recipients too; only the new ones (the push
            // data's `userIdList`) are being invited.
            if let Some(new) = push_data_user_ids(&msg.push.push_data) {
                to.retain(|u| new.contains(u));
            }
            doc.insert("callerId".into(), m.caller.into());
            doc.insert("mediaType".into(), m.media_type.into());
            "invite"
        }
        Body::Hangup(h) => {
            doc.insert("reason".into(), h.reason.into());
            "hangup"
        }
        _ => return None,
    };
    if to.is_empty() {
        return None;
    }
    doc.insert("event".into(), event.into());
    doc.insert("messageType".into(), msg.message_type.into());
    doc.insert("messageUId".into(), msg.message_uid.into());
    doc.insert("appKey".into(), app_key.into());
    doc.insert("toUserIds".into(), json!(to));
    doc.insert("fromUserId".into(), msg.from_user_id.into());
    if let Some(u) = content.user {
        let mut user = Map::new();
        for (k, v) in [
            ("name", u.name),
            ("portraitUri", u.portrait_uri),
            ("extra", u.extra),
        ] {
            if let Some(v) = v {
                user.insert(k.into(), v.into());
            }
        }
        doc.insert("fromUser".into(), user.into());
    }
    doc.insert("callId".into(), content.call_id.into());
    doc.insert("conversationType".into(), msg.conversation_type.into());
    doc.insert("targetId".into(), msg.target_id.into());
    doc.insert("channelId".into(), msg.channel_id.into());
    doc.insert("sentTime".into(), msg.sent_time.into());
    doc.insert("pushTitle".into(), msg.push.push_title.as_str().into());
    doc.insert("pushContent".into(), msg.push.push_content.as_str().into());
    doc.insert("pushData".into(), msg.push.push_data.as_str().into());
    doc.insert("pushConfig".into(), push_config_json(msg.push));
    Some(Value::Object(doc))
}

/// `userIdList` of an invite's push data (`{"mediaType","userIdList","callId"}`, spec B.5).
fn push_data_user_ids(data: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(data).ok()?;
    let list = v.get("userIdList")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect(),
    )
}

/// The app's `IPushConfig` as CallLib names its keys, unknown keys merged back in.
pub fn push_config_json(push: &PushConfig) -> Value {
    let mut doc = Map::new();
    doc.insert("pushTitle".into(), push.push_title.as_str().into());
    doc.insert("pushContent".into(), push.push_content.as_str().into());
    let default = PushOptions::default();
    let o = push.options.as_deref().unwrap_or(&default);
    let data = o.push_data.as_deref().unwrap_or(&push.push_data);
    doc.insert("pushData".into(), data.into());
    if let Some(i) = &o.ios_config {
        let mut m = extra(&i.extra_json);
        put(&mut m, "threadId", &i.thread_id);
        put(&mut m, "apnsCollapseId", &i.apns_collapse_id);
        put(&mut m, "category", &i.category);
        put(&mut m, "richMediaUri", &i.rich_media_uri);
        put(&mut m, "interruptionLevel", &i.interruption_level);
        doc.insert("iOSConfig".into(), m.into());
    }
    if let Some(a) = &o.android_config {
        let mut m = extra(&a.extra_json);
        put(&mut m, "notificationId", &a.notification_id);
        put(&mut m, "channelIdMi", &a.channel_id_mi);
        put(&mut m, "miLargeIconUrl", &a.mi_large_icon_url);
        put(&mut m, "channelIdHW", &a.channel_id_hw);
        put(&mut m, "categoryHW", &a.category_hw);
        put(&mut m, "importanceHW", &a.importance_hw);
        put(&mut m, "imageUrlHW", &a.image_url_hw);
        put(&mut m, "channelIdOPPO", &a.channel_id_oppo);
        put(&mut m, "typeVivo", &a.type_vivo);
        put(&mut m, "categoryVivo", &a.category_vivo);
        if let Some(g) = &a.google_config_json {
            let g = serde_json::from_str(g).unwrap_or(Value::Null);
            m.insert("googleConfig".into(), g);
        }
        put(&mut m, "importanceHonor", &a.importance_honor);
        put(&mut m, "imageUrlHonor", &a.image_url_honor);
        doc.insert("androidConfig".into(), m.into());
    }
    if let Some(h) = &o.harmony_os_config {
        let mut m = extra(&h.extra_json);
        put(&mut m, "imageUrl", &h.image_url);
        put(&mut m, "category", &h.category);
        doc.insert("harmonyOSConfig".into(), m.into());
    }
    if let Some(b) = o.disable_push_title {
        doc.insert("disablePushTitle".into(), b.into());
    }
    if let Some(b) = o.force_show_detail_content {
        doc.insert("forceShowDetailContent".into(), b.into());
    }
    put(&mut doc, "templateId", &o.template_id);
    // Unknown top-level keys never shadow the known ones.
    for (k, v) in extra(&o.extra_json) {
        doc.entry(k).or_insert(v);
    }
    Value::Object(doc)
}

fn put(m: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(key.into(), v.as_str().into());
    }
}

/// A JSON object string as a map (anything else: empty).
fn extra(json: &str) -> Map<String, Value> {
    match serde_json::from_str(json) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

async fn worker(
    pusher: Arc<Pusher>,
    mut rx: mpsc::UnboundedReceiver<(Job, OwnedSemaphorePermit)>,
    settings: PushSettings,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "push webhook client could not be built: pushes disabled");
            return;
        }
    };
    let running = Arc::new(Semaphore::new(CONCURRENCY));
    loop {
        let (job, slot) = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = rx.recv() => match next {
                Some(j) => j,
                None => return,
            },
        };
        let (pusher, client, running, settings, shutdown) = (
            pusher.clone(),
            client.clone(),
            running.clone(),
            settings.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = deliver(&pusher, &client, &running, &settings, job) => {}
            }
            drop(slot);
        });
    }
}

/// Posts one push until it is taken (2xx), refused for good (4xx other than 408/429) or out of
/// attempts; pauses `retry_base × 2ⁿ` (±20 %, at most [`MAX_BACKOFF`]) in between.
async fn deliver(
    pusher: &Pusher,
    client: &reqwest::Client,
    running: &Semaphore,
    settings: &PushSettings,
    job: Job,
) {
    let Some(hook) = pusher.hooks.get(job.app).and_then(Option::as_ref) else {
        return;
    };
    let attempts = settings.max_attempts.max(1);
    for attempt in 1..=attempts {
        let outcome = {
            let Ok(_permit) = running.acquire().await else {
                return;
            };
            post(client, hook, &job).await
        };
        match outcome {
            Ok(()) => {
                Metrics::inc(&pusher.metrics.push_delivered);
                return;
            }
            Err(Failure::Permanent(status)) => {
                Metrics::inc(&pusher.metrics.push_failed);
                tracing::warn!(app = %hook.key, %status, "push webhook refused the push; not retried");
                return;
            }
            Err(Failure::Transient(why)) if attempt == attempts => {
                Metrics::inc(&pusher.metrics.push_failed);
                tracing::warn!(app = %hook.key, attempts, error = %why, "push webhook failed; push given up");
                return;
            }
            Err(Failure::Transient(why)) => {
                Metrics::inc(&pusher.metrics.push_retries);
                tracing::debug!(app = %hook.key, attempt, error = %why, "push webhook failed; retrying");
                tokio::time::sleep(backoff(settings.retry_base, attempt)).await;
            }
        }
    }
}

enum Failure {
    Permanent(reqwest::StatusCode),
    Transient(String),
}

/// One signed POST. A fresh nonce and timestamp per attempt: a receiver that refuses repeated
/// nonces (as rcall's own Server API does) still accepts the retry.
async fn post(client: &reqwest::Client, hook: &Hook, job: &Job) -> Result<(), Failure> {
    let nonce = nonce();
    let timestamp = crate::clock::now_ms().to_string();
    let signature = crate::server_api::request_signature(&hook.secret, &nonce, &timestamp);
    let mut url = hook.url.clone();
    url.query_pairs_mut()
        .append_pair("appKey", &hook.key)
        .append_pair("nonce", &nonce)
        .append_pair("timestamp", &timestamp)
        .append_pair("signature", &signature);
    let res = client
        .post(url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("App-Key", &hook.key)
        .header("Nonce", &nonce)
        .header("Timestamp", &timestamp)
        .header("Signature", &signature)
        .header("X-Rcall-Push-Id", &job.id)
        .body(job.body.clone())
        .send()
        .await
        .map_err(|e| Failure::Transient(e.to_string()))?;
    let status = res.status();
    if status.is_success() {
        Ok(())
    } else if status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        Err(Failure::Permanent(status))
    } else {
        Err(Failure::Transient(format!("HTTP {status}")))
    }
}

/// Pause after failed attempt `n` (1-based).
fn backoff(base: Duration, n: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << (n - 1).min(16))
        .min(MAX_BACKOFF);
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    // ±20 %: many pushes failing together do not all come back at the same instant.
    let factor = 0.8 + 0.4 * f64::from(b[0]) / 255.0;
    exp.mul_f64(factor)
}

/// 16 random hex characters.
fn nonce() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use rtc_core::proto::{
        AndroidPushConfig, Hangup, Invite, IosPushConfig, ModifyMem, UserProfile,
    };

    fn msg<'a>(
        content: &'a [u8],
        push: &'a PushConfig,
        offline: &'a [String],
    ) -> PushedMessage<'a> {
        PushedMessage {
            message_type: "RC:VCInvite",
            message_uid: "uid-1",
            from_user_id: "alice",
            conversation_type: 1,
            target_id: "bob",
            channel_id: "",
            content,
            push,
            offline,
            sent_time: 42,
        }
    }

    fn content(body: Body) -> Vec<u8> {
        CallContent {
            platform: "Web".into(),
            device_id: "d".into(),
            call_id: "c1".into(),
            user: Some(UserProfile {
                name: Some("Alice".into()),
                ..Default::default()
            }),
            body: Some(body),
        }
        .encode_to_vec()
    }

    #[test]
    fn invite_body_carries_texts_config_caller_call_and_media_type() {
        let push = PushConfig {
            push_title: "T".into(),
            push_content: "C".into(),
            push_data: "{\"callId\":\"c1\"}".into(),
            options: Some(Box::new(PushOptions {
                ios_config: Some(IosPushConfig {
                    thread_id: Some("th".into()),
                    ..Default::default()
                }),
                android_config: Some(AndroidPushConfig {
                    category_hw: Some("VOIP".into()),
                    google_config_json: Some("{\"collapseKey\":\"k\"}".into()),
                    extra_json: "{\"newVendor\":1,\"categoryHW\":\"shadowed\"}".into(),
                    ..Default::default()
                }),
                disable_push_title: Some(true),
                extra_json: "{\"futureKey\":[1]}".into(),
                ..Default::default()
            })),
        };
        let bytes = content(Body::Invite(Invite {
            media_type: 2,
            invite_user_ids: vec!["bob".into()],
            ..Default::default()
        }));
        let offline = vec!["bob".to_string()];
        let v = webhook_body("app", &msg(&bytes, &push, &offline)).unwrap();
        assert_eq!(v["event"], "invite");
        assert_eq!(v["toUserIds"], json!(["bob"]));
        assert_eq!(
            (v["callerId"].as_str(), v["callId"].as_str()),
            (Some("alice"), Some("c1"))
        );
        assert_eq!(v["mediaType"], 2);
        assert_eq!(v["fromUser"]["name"], "Alice");
        assert_eq!(
            (v["pushTitle"].as_str(), v["pushContent"].as_str()),
            (Some("T"), Some("C"))
        );
        let c = &v["pushConfig"];
        assert_eq!(c["iOSConfig"]["threadId"], "th");
        assert_eq!(
            c["androidConfig"]["categoryHW"], "VOIP",
            "known keys win over extra ones"
        );
        assert_eq!(c["androidConfig"]["newVendor"], 1);
        assert_eq!(c["androidConfig"]["googleConfig"]["collapseKey"], "k");
        assert_eq!(c["disablePushTitle"], true);
        assert_eq!(c["futureKey"], json!([1]));
        assert_eq!(c["pushData"], "{\"callId\":\"c1\"}");
        assert!(c.get("harmonyOSConfig").is_none());
    }

    #[test]
    fn member_invites_push_only_new_members_and_hangups_carry_the_reason() {
        let push = PushConfig {
            push_data: "{\"mediaType\":1,\"userIdList\":[\"carol\"],\"callId\":\"c1\"}".into(),
            ..Default::default()
        };
        let bytes = content(Body::ModifyMem(ModifyMem {
            caller: "zed".into(),
            media_type: 1,
            ..Default::default()
        }));
        let offline = vec!["bob".to_string(), "carol".to_string()];
        let v = webhook_body("app", &msg(&bytes, &push, &offline)).unwrap();
        assert_eq!(v["toUserIds"], json!(["carol"]));
        assert_eq!(v["callerId"], "zed");
        let only_old = vec!["bob".to_string()];
        assert!(webhook_body("app", &msg(&bytes, &push, &only_old)).is_none());

        let bytes = content(Body::Hangup(Hangup { reason: 1 }));
        let v = webhook_body("app", &msg(&bytes, &push, &offline)).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["reason"].as_i64()),
            (Some("hangup"), Some(1))
        );
        let bytes = content(Body::Accept(Default::default()));
        assert!(webhook_body("app", &msg(&bytes, &push, &offline)).is_none());
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        let b1 = backoff(base, 1);
        let b3 = backoff(base, 3);
        assert!(b1 >= Duration::from_millis(80) && b1 <= Duration::from_millis(120));
        assert!(b3 >= Duration::from_millis(320) && b3 <= Duration::from_millis(480));
        assert!(backoff(base, 40) <= MAX_BACKOFF.mul_f64(1.2));
    }
}
