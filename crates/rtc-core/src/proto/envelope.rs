//! Client ↔ server frames. One `ClientFrame` or `ServerFrame` per binary WebSocket message.
//!
//! Flow: the client's first frame is `Authenticate`; the server answers `AuthResult`
//! (code 0 = ok, else an IMLib connect code such as 31004) and closes on failure.
//! Then the client `Send`s messages and gets one `SendResult` per request id, unless it marked
//! the message `no_receipt` and the server accepted it (it may also ask
//! `GetIceServers` → `IceServers`, `GetJoinedUserInfo` → `JoinedUserInfo`); the server
//! `Deliver`s messages to every connected device of each recipient (and to the sender's
//! other devices), in order, each with the server's `sent_time` and a per-recipient `seq`.
//!
//! Delivery contract (server ≥ issue 5):
//! - `seq` is per recipient *user*: every device of the user sees the same `seq` for the same
//!   message, and each device sees strictly increasing values. They are NOT contiguous (a
//!   device never receives the messages it sent itself, and seqs are derived from the server's
//!   microsecond clock so they keep increasing across server restarts). Treat them as opaque
//!   ordered cursors.
//! - The client acks with `Ack { seq }` = the highest `seq` it has fully processed (cumulative;
//!   acking every message or only the last of a batch are both fine). On reconnect it sends that
//!   value as `Authenticate.resume_from`. The server also remembers each device's acks, and uses
//!   the larger of the two, so nothing acked is ever sent to that device again.
//! - After `AuthResult { code: 0 }` the server first replays, in `seq` order, every message for
//!   this user above the cursor that it still has — messages stored while the user had no
//!   connected device (`offline: true`, kept in SQLite for a TTL, default 7 days, capped per
//!   user, default 1000, oldest dropped first) and messages routed to the user's other devices
//!   in the last minute (`offline: false`, kept in memory, also across this device's brief
//!   disconnects) — then sends `SyncDone`, then live traffic. A message is `offline: true` iff no
//!   device of the recipient was connected when the server accepted it.
//! - Stored offline messages are deleted once any device acks them. A copy of a message the
//!   user sent from one device is stored (flagged `offline`) when none of the user's other
//!   devices is connected but one has connected before; it is never sent back to the device
//!   that sent it. A device id the server has never seen gets only stored messages on its first
//!   connect, not what the user's other devices received live before it existed.
//!
//! Exactly once (issue 10): a client numbers what it sends (`SendMessage.client_seq`, per
//! `Authenticate.instance`) and keeps every message until the server confirms it (`SendResult`,
//! `Pong.accepted_upto`, `AuthResult.accepted_upto`); while disconnected it queues. After a
//! reconnect it resends what is not confirmed, in order. The server accepts a `client_seq` at
//! most once per (device, instance) while it remembers the instance, and receivers drop a
//! message not above the last `client_seq` they processed from its `sender_instance`, which
//! covers a server restart in between. A repeat the server recognises is answered like the
//! original (`SendResult` code 0 unless `no_receipt`) and not delivered again: a client whose
//! `SendResult` was lost with its connection sends the message again to get it (a `call()`
//! waits for it), even when `AuthResult.accepted_upto` covers it. Confirmation means durable:
//! a message stored for an offline recipient is committed to SQLite before its
//! `SendResult`/`accepted_upto` says so.
//!
//! Codes the server uses (IMLib values where IMLib has one):
//! - `AuthResult.code`: 0 ok, 31004 token incorrect (bad signature, unknown app, malformed),
//!   31020 token expired (by its expiry or by `/user/token/expire.json`), 31009 user blocked
//!   (`/user/block.json`), 31003 server unavailable (the app's connection cap, or the user's
//!   (default 16) or the device's (default 4) connection cap is reached; the message says which),
//!   33003 invalid parameter (device id longer than 128 characters), 34001 already
//!   authenticated.
//! - `SendResult.code`: 0 accepted, 33003 invalid parameter (also: a PRIVATE target, group
//!   recipient or invitee id that is empty, longer than 64 characters or contains a control
//!   character; an invite that would leave more than 64 users ringing; a call message whose
//!   `CallContent` body is not of its `message_type`), 405 the PRIVATE target
//!   has blacklisted the sender (nothing delivered), 22406 GROUP message from a user who is not a
//!   member of the group (or the group does not exist), 20604 sending too fast (this connection
//!   or the user over all its connections went over its rate limit; nothing delivered, retry
//!   later), 40403 not in call (rcall: a
//!   call message for a call the server knows, from a user who is not one of its participants;
//!   nothing delivered), 40507 offline quota (rcall: the message needs a stored copy for an
//!   offline recipient and the sender already had its quota of messages stored for others in
//!   the current window; nothing delivered, retry later or wait for the recipient to connect),
//!   40508 offline storage full (rcall: the server's byte quota for stored messages is used up;
//!   nothing delivered), 40509 storage busy (rcall: the database write queue is full; nothing
//!   delivered, retry shortly). Messages to recipients who are online are never refused with
//!   40507–40509. GROUP messages go only to
//!   `directional_user_ids` that are members of the group; members who blacklisted the sender
//!   are skipped silently (the send still succeeds).
//! - `ErrorFrame.code` (the server closes the connection right after it): see [`error_code`];
//!   also 31009 when the user gets blocked while connected, and 31020 when
//!   `/user/token/expire.json` expires the token the connection authenticated with (WebSocket
//!   close code 1008). A frame larger than a few KB (4 KiB by default) before `AuthResult`
//!   gets 40002 (or the connection is cut): the post-auth frame limit applies only once
//!   authenticated.

use prost::Message as _;

/// A frame from a client to the server.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientFrame {
    #[prost(oneof = "client_frame::Body", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11")]
    pub body: Option<client_frame::Body>,
}

pub mod client_frame {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        #[prost(message, tag = "1")]
        Authenticate(super::Authenticate),
        #[prost(message, tag = "2")]
        Send(super::SendMessage),
        #[prost(message, tag = "3")]
        Ack(super::Ack),
        #[prost(message, tag = "4")]
        Ping(super::Ping),
        /// Asks for fresh ICE servers (TURN credentials expire); answered by `IceServers`.
        #[prost(message, tag = "5")]
        GetIceServers(super::GetIceServers),
        /// Which calls a user's devices are in (`RCCallClient.getJoinedUserInfo`); answered by
        /// `JoinedUserInfo`.
        #[prost(message, tag = "6")]
        GetJoinedUserInfo(super::GetJoinedUserInfo),
        /// SFU mode (docs/sfu.md): publish or renegotiate this device's one sending peer
        /// connection of a GROUP call; answered by `SfuAnswer` or `SfuFailed`.
        #[prost(message, tag = "7")]
        SfuPublish(super::SfuPublish),
        /// SFU mode: subscribe this device's one receiving peer connection to these streams;
        /// answered by `SfuOffer` or `SfuFailed`.
        #[prost(message, tag = "8")]
        SfuSubscribe(super::SfuSubscribe),
        /// SFU mode: the device's answer to the server's `SfuOffer` (subscriber connection).
        #[prost(message, tag = "9")]
        SfuAnswer(super::SfuAnswer),
        /// SFU mode: a trickled ICE candidate of one of the device's two SFU connections.
        #[prost(message, tag = "10")]
        SfuTrickle(super::SfuTrickle),
        /// SFU mode: which simulcast layer to receive of which streams.
        #[prost(message, tag = "11")]
        SfuLayers(super::SfuLayers),
    }
}

/// First frame of every connection.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Authenticate {
    /// Token from the Server API (`/user/getToken.json`).
    #[prost(string, tag = "1")]
    pub token: String,
    /// Stable per-browser device id (CallLib's `RCCallDeviceId`), to tell a user's devices apart.
    #[prost(string, tag = "2")]
    pub device_id: String,
    /// Highest `seq` this device has processed, to resume after a reconnect (0 = fresh).
    #[prost(uint64, tag = "3")]
    pub resume_from: u64,
    /// Random id of this SDK instance (one per page load; tabs of one browser share a device
    /// id). With `SendMessage.client_seq` it names each message the client sends, so a resend
    /// after a reconnect is recognised (see "Exactly once" in the module docs). 0 = untracked.
    #[prost(uint64, tag = "4")]
    pub instance: u64,
}

/// Send one IM message to a user (PRIVATE) or to a group (GROUP, restricted to `directional_user_ids`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SendMessage {
    /// Client-chosen id echoed in the matching `SendResult`.
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(int32, tag = "2")]
    pub conversation_type: i32,
    /// Peer user id (PRIVATE) or group id (GROUP).
    #[prost(string, tag = "3")]
    pub target_id: String,
    #[prost(string, tag = "4")]
    pub channel_id: String,
    /// Recipients of a group message; for PRIVATE the recipient is `target_id`.
    #[prost(string, repeated, tag = "5")]
    pub directional_user_ids: Vec<String>,
    /// IM object name, e.g. `RC:VCInvite`.
    #[prost(string, tag = "6")]
    pub message_type: String,
    /// Encoded content (for call messages: a [`crate::proto::CallContent`]).
    #[prost(bytes = "vec", tag = "7")]
    pub content: Vec<u8>,
    #[prost(message, optional, tag = "8")]
    pub push: Option<PushConfig>,
    /// Fire-and-forget: no `SendResult` when the message is accepted (a refusal is still
    /// answered). For messages whose sender does not wait for the outcome (ringing, ICE
    /// candidates, SDP): one frame and one socket write fewer per message on the server.
    #[prost(bool, tag = "9")]
    pub no_receipt: bool,
    /// Position of this message in its sender instance's stream (1, 2, 3 … per
    /// `Authenticate.instance`, across reconnects). 0 = untracked (never deduplicated).
    #[prost(uint64, tag = "10")]
    pub client_seq: u64,
}

/// Push notification data attached to invite-type messages and, after `setPushConfig`, to
/// hangups (spec B.5). The server hands it to the app's push webhook for recipients with no
/// online device.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushConfig {
    #[prost(string, tag = "1")]
    pub push_title: String,
    #[prost(string, tag = "2")]
    pub push_content: String,
    /// The call's data for mobile CallLibs: `{"mediaType","userIdList","callId"}` (invites) or
    /// `{"callId","reason"}` (hangups).
    #[prost(string, tag = "3")]
    pub push_data: String,
    /// The rest of the app's `IPushConfig` (5.2.4: per OS and vendor channel); absent when the
    /// app set none.
    /// Boxed: most messages carry none, and frames stay small.
    #[prost(message, optional, boxed, tag = "4")]
    pub options: Option<Box<PushOptions>>,
}

/// `IPushConfig` minus title and content (`setPushConfig`, 5.1.2 / 5.1.3 / 5.2.4). Typed where
/// CallLib's engine types it; keys it does not know travel as JSON so a newer app's vendor
/// fields still reach its push backend.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushOptions {
    /// The app's own `pushData` (the call's data stays in [`PushConfig::push_data`], which
    /// mobile CallLibs read).
    #[prost(string, optional, tag = "1")]
    pub push_data: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub ios_config: Option<IosPushConfig>,
    #[prost(message, optional, tag = "3")]
    pub android_config: Option<AndroidPushConfig>,
    #[prost(message, optional, tag = "4")]
    pub harmony_os_config: Option<HarmonyOsPushConfig>,
    #[prost(bool, optional, tag = "5")]
    pub disable_push_title: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub force_show_detail_content: Option<bool>,
    #[prost(string, optional, tag = "7")]
    pub template_id: Option<String>,
    /// Other top-level keys: a JSON object (empty = none).
    #[prost(string, tag = "15")]
    pub extra_json: String,
}

/// `IPushConfig.iOSConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IosPushConfig {
    #[prost(string, optional, tag = "1")]
    pub thread_id: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub apns_collapse_id: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub category: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub rich_media_uri: Option<String>,
    /// `passive` | `active` | `time-sensitive` | `critical`.
    #[prost(string, optional, tag = "5")]
    pub interruption_level: Option<String>,
    /// Other keys: a JSON object (empty = none).
    #[prost(string, tag = "15")]
    pub extra_json: String,
}

/// `IPushConfig.androidConfig`: one field per vendor channel.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AndroidPushConfig {
    #[prost(string, optional, tag = "1")]
    pub notification_id: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub channel_id_mi: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub mi_large_icon_url: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub channel_id_hw: Option<String>,
    /// Huawei message category (5.1.2).
    #[prost(string, optional, tag = "5")]
    pub category_hw: Option<String>,
    /// `NORMAL` | `LOW`.
    #[prost(string, optional, tag = "6")]
    pub importance_hw: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub image_url_hw: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub channel_id_oppo: Option<String>,
    /// vivo: `"0"` operational, `"1"` system message.
    #[prost(string, optional, tag = "9")]
    pub type_vivo: Option<String>,
    /// vivo message category (5.1.3).
    #[prost(string, optional, tag = "10")]
    pub category_vivo: Option<String>,
    /// FCM (`googleConfig`): a JSON object, passed through (its keys vary by version).
    #[prost(string, optional, tag = "11")]
    pub google_config_json: Option<String>,
    /// `NORMAL` | `LOW`.
    #[prost(string, optional, tag = "12")]
    pub importance_honor: Option<String>,
    #[prost(string, optional, tag = "13")]
    pub image_url_honor: Option<String>,
    /// Other keys: a JSON object (empty = none).
    #[prost(string, tag = "15")]
    pub extra_json: String,
}

/// `IPushConfig.harmonyOSConfig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HarmonyOsPushConfig {
    #[prost(string, optional, tag = "1")]
    pub image_url: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub category: Option<String>,
    /// Other keys: a JSON object (empty = none).
    #[prost(string, tag = "15")]
    pub extra_json: String,
}

/// The client has processed every delivered message up to and including `seq`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ack {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(uint32, tag = "1")]
    pub nonce: u32,
}

/// A frame from the server to a client.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerFrame {
    /// The server's clock (ms since epoch) when it wrote this frame; clients derive their offset from it.
    #[prost(int64, tag = "1")]
    pub server_time: i64,
    #[prost(oneof = "server_frame::Body", tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17")]
    pub body: Option<server_frame::Body>,
}

pub mod server_frame {
    crate::proto::oneof::message_oneof! {
        pub enum Body {
            AuthResult(super::AuthResult) = 2,
            Deliver(super::Delivered) = 3,
            SendResult(super::SendResult) = 4,
            Error(super::ErrorFrame) = 5,
            Pong(super::Pong) = 6,
            SyncDone(super::SyncDone) = 7,
            /// The operator removed this user from a call (`POST /rtc/user/kick.json`).
            Kicked(super::Kicked) = 8,
            /// Answer to `GetIceServers`.
            IceServers(super::IceServers) = 9,
            /// Answer to `GetJoinedUserInfo`.
            JoinedUserInfo(super::JoinedUserInfo) = 10,
            /// SFU mode: this device is a member of a GROUP call whose media runs through the SFU
            /// (sent when it becomes a member, and again after the SFU restarted).
            SfuJoined(super::SfuJoined) = 11,
            /// SFU mode: the call's set of published streams changed.
            SfuFeeds(super::SfuFeeds) = 12,
            /// SFU mode: the SFU's offer for the device's receiving connection (answer to
            /// `SfuSubscribe`, or a renegotiation the server starts).
            SfuOffer(super::SfuOffer) = 13,
            /// SFU mode: the SFU's answer to `SfuPublish`.
            SfuAnswer(super::SfuAnswer) = 14,
            /// SFU mode: a publish or subscribe failed (`onTrackPublishFail` / `onTrackSubscribeFail`).
            SfuFailed(super::SfuFailed) = 15,
            /// SFU mode: the SFU lost this device's connections (it restarted): publish and
            /// subscribe again, without ending the call.
            SfuRestart(super::SfuRestart) = 16,
            /// SFU mode: which simulcast layers of this device's camera anyone receives (the
            /// others are paused, saving the encoder's CPU).
            SfuPublisherLayers(super::SfuPublisherLayers) = 17,
        }
    }
}

/// Answer to `Authenticate`. `code` 0 = connected; otherwise an IMLib `ErrorCode` (31004 bad token, …).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthResult {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub user_id: String,
    #[prost(string, tag = "3")]
    pub message: String,
    /// On success: the ICE servers to use for calls (STUN, and TURN with time-limited
    /// credentials). Empty when the server has none configured (then use the app's own).
    #[prost(message, repeated, tag = "4")]
    pub ice_servers: Vec<IceServer>,
    /// On success: the highest `client_seq` of this device's `instance` the server has accepted
    /// (durably, where the message was stored). The client drops those from its resend queue
    /// and sends the rest again, in order. 0 when the server knows none (e.g. after a restart).
    #[prost(uint64, tag = "5")]
    pub accepted_upto: u64,
    /// On success: the name and portrait registered for this user with the Server API
    /// (`/user/getToken.json`, `/user/refresh.json`), read when it connected; `None` when the
    /// server has none. The client sends them as its `CallContent.user` wherever
    /// `registerUserInfo()` did not set the field, so peers get a profile for users whose app
    /// registers them only on the backend (the seed's `ISenderInfo`).
    #[prost(message, optional, tag = "6")]
    pub profile: Option<super::UserProfile>,
    /// On success: GROUP calls' media go through the server's SFU (`--janus`; docs/sfu.md)
    /// instead of a peer-to-peer mesh. Known at login so a group call never starts a mesh it
    /// would have to tear down. 1:1 calls stay peer-to-peer either way.
    #[prost(bool, tag = "7")]
    pub sfu: bool,
    /// On `SERVER_UNAVAILABLE` (31003) only: the node is busy (its logins in progress are at
    /// their bound, e.g. every client of a failed node logging in again at once) and asks the
    /// client to come back in about this many ms, a turn it computed from its own login rate
    /// and the clients it already told to come back (a client does not know that rate). 0 with
    /// 31003: a connection limit (app, user, device) refused the login: retrying does not help
    /// until a connection closes. (An SDK that ignores this field treats both as busy.)
    #[prost(uint32, tag = "8")]
    pub retry_after_ms: u32,
}

/// One `RTCIceServer`. TURN credentials follow the TURN REST scheme (coturn
/// `use-auth-secret`): `username` = `"<unix expiry seconds>:<userId>"`, `credential` =
/// base64(HMAC-SHA1(shared secret, username)); they stop working at that expiry, so fetch fresh
/// ones with `GetIceServers` before a call on a long-lived connection. STUN entries have empty
/// `username` and `credential`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IceServer {
    #[prost(string, repeated, tag = "1")]
    pub urls: Vec<String>,
    #[prost(string, tag = "2")]
    pub username: String,
    #[prost(string, tag = "3")]
    pub credential: String,
}

/// Request for fresh ICE servers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetIceServers {}

/// Fresh ICE servers (same content as `AuthResult.ice_servers`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct IceServers {
    #[prost(message, repeated, tag = "1")]
    pub ice_servers: Vec<IceServer>,
}

/// Asks which calls the devices of `user_id` (same app) are in.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetJoinedUserInfo {
    /// Echoed in the answer.
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(string, tag = "2")]
    pub user_id: String,
}

/// Answer to [`GetJoinedUserInfo`]: one entry per device of the user that is in a call.
///
/// rcall has no media server rooms: the server follows the call messages it routes (rules in
/// rcall-server's `rooms` module). Call and device ids are only told to the user itself and to
/// participants of the same call; anyone else gets one entry per device in a call with empty
/// `device_id` and `call_id` (and the real `join_time`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinedUserInfo {
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    /// 0 = ok (possibly no devices); otherwise an IMLib code and no devices.
    #[prost(int32, tag = "2")]
    pub code: i32,
    #[prost(message, repeated, tag = "3")]
    pub devices: Vec<JoinedDevice>,
}

/// One device in a call (CallLib's `{deviceId, roomId, joinTime}`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinedDevice {
    #[prost(string, tag = "1")]
    pub device_id: String,
    /// The call id (CallLib's RTC room id is the call id).
    #[prost(string, tag = "2")]
    pub call_id: String,
    /// Server time (ms) when the device joined.
    #[prost(int64, tag = "3")]
    pub join_time: i64,
}

/// The server (operator) removed this user from the call `call_id`: the client ends that call
/// with KICKED_BY_SERVER (23) and sends its hangup, so the other participants see 33. Sent to
/// every connected device of the user; not stored for offline devices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Kicked {
    #[prost(string, tag = "1")]
    pub call_id: String,
}

/// One message delivered to this device.
///
/// Its `prost::Message` is written by hand (below), not derived: the derive decodes the
/// `bytes` field `content` through `Buf::copy_to_bytes` into a `bytes::Bytes` and copies that
/// into the `Vec`, and in the browser SDK this one field is all that ships the `bytes` crate's
/// `Bytes`/`BytesMut` code (~3.5 KB of wasm). The wire format is the derive's (tests below compare
/// the two); the field tags are in `merge_field`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    /// Per-recipient sequence number, strictly increasing.
    pub seq: u64,
    pub message_uid: String,
    pub sender_user_id: String,
    pub sender_device_id: String,
    pub conversation_type: i32,
    /// For PRIVATE: the other party from the recipient's view (the sender, or for the sender's
    /// own other devices the original target). For GROUP: the group id.
    pub target_id: String,
    pub channel_id: String,
    pub message_type: String,
    pub content: Vec<u8>,
    /// Server time (ms) when the server accepted the message.
    pub sent_time: i64,
    /// Stored while the recipient was offline and delivered on connect.
    pub offline: bool,
    /// The sender's `Authenticate.instance` and the message's `SendMessage.client_seq`: a
    /// receiver drops a message whose `client_seq` is not above the last one it processed from
    /// that instance (a resend the server could not recognise, e.g. across its restart).
    /// 0 = untracked (e.g. messages the server itself sends).
    pub sender_instance: u64,
    pub client_seq: u64,
}

impl prost::Message for Delivered {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        use prost::encoding::{bool, bytes, int32, int64, string, uint64};
        if self.seq != 0 {
            uint64::encode(1, &self.seq, buf);
        }
        for (tag, s) in [(2, &self.message_uid), (3, &self.sender_user_id), (4, &self.sender_device_id)] {
            if !s.is_empty() {
                string::encode(tag, s, buf);
            }
        }
        if self.conversation_type != 0 {
            int32::encode(5, &self.conversation_type, buf);
        }
        for (tag, s) in [(6, &self.target_id), (7, &self.channel_id), (8, &self.message_type)] {
            if !s.is_empty() {
                string::encode(tag, s, buf);
            }
        }
        if !self.content.is_empty() {
            bytes::encode(9, &self.content, buf);
        }
        if self.sent_time != 0 {
            int64::encode(10, &self.sent_time, buf);
        }
        if self.offline {
            bool::encode(11, &self.offline, buf);
        }
        if self.sender_instance != 0 {
            uint64::encode(12, &self.sender_instance, buf);
        }
        if self.client_seq != 0 {
            uint64::encode(13, &self.client_seq, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        use prost::encoding::{bool, int32, int64, string, uint64};
        match tag {
            1 => uint64::merge(wire_type, &mut self.seq, buf, ctx),
            2 => string::merge(wire_type, &mut self.message_uid, buf, ctx),
            3 => string::merge(wire_type, &mut self.sender_user_id, buf, ctx),
            4 => string::merge(wire_type, &mut self.sender_device_id, buf, ctx),
            5 => int32::merge(wire_type, &mut self.conversation_type, buf, ctx),
            6 => string::merge(wire_type, &mut self.target_id, buf, ctx),
            7 => string::merge(wire_type, &mut self.channel_id, buf, ctx),
            8 => string::merge(wire_type, &mut self.message_type, buf, ctx),
            9 => merge_vec(wire_type, &mut self.content, buf),
            10 => int64::merge(wire_type, &mut self.sent_time, buf, ctx),
            11 => bool::merge(wire_type, &mut self.offline, buf, ctx),
            12 => uint64::merge(wire_type, &mut self.sender_instance, buf, ctx),
            13 => uint64::merge(wire_type, &mut self.client_seq, buf, ctx),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::{bool, bytes, int32, int64, string, uint64};
        let strings = [
            (2, &self.message_uid),
            (3, &self.sender_user_id),
            (4, &self.sender_device_id),
            (6, &self.target_id),
            (7, &self.channel_id),
            (8, &self.message_type),
        ];
        let strings: usize = strings.iter().filter(|(_, s)| !s.is_empty()).map(|(tag, s)| string::encoded_len(*tag, s)).sum();
        strings
            + if self.seq != 0 { uint64::encoded_len(1, &self.seq) } else { 0 }
            + if self.conversation_type != 0 { int32::encoded_len(5, &self.conversation_type) } else { 0 }
            + if self.content.is_empty() { 0 } else { bytes::encoded_len(9, &self.content) }
            + if self.sent_time != 0 { int64::encoded_len(10, &self.sent_time) } else { 0 }
            + if self.offline { bool::encoded_len(11, &self.offline) } else { 0 }
            + if self.sender_instance != 0 { uint64::encoded_len(12, &self.sender_instance) } else { 0 }
            + if self.client_seq != 0 { uint64::encoded_len(13, &self.client_seq) } else { 0 }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A length-delimited field into a `Vec<u8>`, copied once straight from the buffer (prost's
/// `bytes::merge` goes through a `bytes::Bytes`, see [`Delivered`]). The last occurrence wins,
/// as in prost.
fn merge_vec(
    wire_type: prost::encoding::WireType,
    value: &mut Vec<u8>,
    buf: &mut impl prost::bytes::Buf,
) -> Result<(), prost::DecodeError> {
    prost::encoding::check_wire_type(prost::encoding::WireType::LengthDelimited, wire_type)?;
    let len = prost::encoding::decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(super::oneof::error("buffer underflow"));
    }
    value.clear();
    value.resize(len as usize, 0);
    buf.copy_to_slice(value);
    Ok(())
}

/// Answer to `SendMessage`. `code` 0 = accepted (and `sent_time` is set); otherwise an IMLib code
/// (405 blacklisted, 22406 not in group, …) and nothing was delivered. A resend the server
/// recognised (see "Exactly once") is answered code 0 with the server's current `sent_time` and
/// an empty `message_uid` (the original ones are not kept); nothing is delivered again.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SendResult {
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(int32, tag = "2")]
    pub code: i32,
    #[prost(int64, tag = "3")]
    pub sent_time: i64,
    #[prost(string, tag = "4")]
    pub message_uid: String,
}

/// A connection-level error; the server closes the connection after sending it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorFrame {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Pong {
    #[prost(uint32, tag = "1")]
    pub nonce: u32,
    /// Like `AuthResult.accepted_upto`: every message of this connection's instance up to this
    /// `client_seq` is accepted (and durable where stored), so the client can forget them. The
    /// server sends the Pong once that holds, in order with the connection's other frames.
    #[prost(uint64, tag = "2")]
    pub accepted_upto: u64,
}

/// Every message stored for this device while it was offline has been delivered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SyncDone {}

/// Every code the server answers with — in an [`ErrorFrame`], `AuthResult.code` or
/// `SendResult.code` — in one place for the server and the SDK. IMLib's where IMLib has one;
/// rcall's own are 4xxxx.
pub mod error_code {
    /// A frame that does not decode as a `ClientFrame`.
    pub const MALFORMED_FRAME: i32 = 40001;
    /// A frame larger than the server's limit.
    pub const FRAME_TOO_LARGE: i32 = 40002;
    /// Something other than `Authenticate` sent before authenticating.
    pub const NOT_AUTHENTICATED: i32 = 40003;
    /// Text frames are not part of the protocol.
    pub const TEXT_FRAME: i32 = 40004;
    /// The connection kept sending after its rate limit refused frames (more than the burst
    /// size in debt); sends over the limit first get `SendResult.code` 20604.
    pub const RATE_LIMITED: i32 = 40005;
    /// The client did not read its frames fast enough (its server-side queue overflowed); it
    /// may reconnect and resume.
    pub const SLOW_CONSUMER: i32 = 40006;
    /// IMLib `RC_CONN_USER_BLOCKED`: the user was blocked while connected
    /// (`/user/block.json`); reconnecting fails with `AuthResult.code` 31009 until unblocked.
    pub const USER_BLOCKED: i32 = 31009;
    /// IMLib `RC_CONN_SERVER_UNAVAILABLE`: a connection cap was reached, or the node is busy or
    /// shutting down (then `AuthResult.retry_after_ms` says when to come back).
    pub const SERVER_UNAVAILABLE: i32 = 31003;
    /// IMLib `RC_CONN_TOKEN_INCORRECT`: the token does not verify for this app key.
    pub const TOKEN_INCORRECT: i32 = 31004;
    /// IMLib `RC_CONN_TOKEN_EXPIRED`: past its expiry, or expired by the operator.
    pub const TOKEN_EXPIRED: i32 = 31020;
    /// IMLib `BIZ_ERROR_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: i32 = 33003;
    /// IMLib `RC_CONNECTION_EXIST`: `Authenticate` on an authenticated connection.
    pub const CONNECTION_EXIST: i32 = 34001;
    /// IMLib `REJECTED_BY_BLACKLIST`: the recipient blacklisted the sender.
    pub const REJECTED_BY_BLACKLIST: i32 = 405;
    /// IMLib `NOT_IN_GROUP`: the sender is not a member of the group.
    pub const NOT_IN_GROUP: i32 = 22406;
    /// RongCloud "send frequency too fast" (the user's rate over all its connections).
    pub const SEND_TOO_FAST: i32 = 20604;
    /// A call message for a call the sender is not a participant of (IMLib has no such code;
    /// 404-like so it cannot be mistaken for one of its codes).
    pub const NOT_IN_CALL: i32 = 40403;
    /// The message needs a stored copy for an offline recipient and the sender used up its
    /// quota of messages stored for others in the current window (nothing delivered).
    pub const OFFLINE_QUOTA: i32 = 40507;
    /// The byte quota of all stored offline messages is used up (nothing delivered).
    pub const OFFLINE_FULL: i32 = 40508;
    /// The database write queue is full: a message that needs a stored copy is refused rather
    /// than queued without bound (nothing delivered; retry shortly).
    pub const STORE_BUSY: i32 = 40509;
    /// RCRTCCode `REQUEST_FAILED`: the SFU (Janus) refused or did not answer an SFU request
    /// (`SfuFailed.code`; the reason says what failed).
    pub const SFU_REQUEST_FAILED: i32 = 53004;
}

impl ClientFrame {
    pub fn new(body: client_frame::Body) -> Self {
        Self { body: Some(body) }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        Self::decode(bytes)
    }
}

impl ServerFrame {
    pub fn new(server_time: i64, body: server_frame::Body) -> Self {
        Self { server_time, body: Some(body) }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        Self::decode(bytes)
    }
}

// ---- SFU mode (issue 12, docs/sfu.md) ----------------------------------------------------------
// The server is the SFU's (Janus's) only client: it maps these onto the device's publisher and
// subscriber handles. Clients see opaque feed ids, never Janus's own ids. `request_id` pairs an
// answer with its request; `call_id` names the GROUP call.

/// Which of a device's two SFU peer connections a message is about.
pub mod sfu_pc {
    /// The sending connection (`SfuPublish`).
    pub const PUBLISHER: u32 = 0;
    /// The receiving, multistream connection (`SfuSubscribe`).
    pub const SUBSCRIBER: u32 = 1;
}

/// Server → client: this device is in a GROUP call that runs through the SFU.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuJoined {
    #[prost(string, tag = "1")]
    pub call_id: String,
    /// What the call's other members publish now.
    #[prost(message, repeated, tag = "2")]
    pub feeds: Vec<SfuFeed>,
    /// Increases when the SFU restarted (the device must publish and subscribe again).
    #[prost(uint32, tag = "3")]
    pub generation: u32,
}

/// Server → client: the call's publishers changed (the full current list).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuFeeds {
    #[prost(string, tag = "1")]
    pub call_id: String,
    #[prost(message, repeated, tag = "2")]
    pub feeds: Vec<SfuFeed>,
}

/// One member device's published streams.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuFeed {
    /// Opaque, unique within the call.
    #[prost(string, tag = "1")]
    pub feed: String,
    #[prost(string, tag = "2")]
    pub user_id: String,
    #[prost(message, repeated, tag = "3")]
    pub streams: Vec<SfuStream>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuStream {
    /// The publisher's media id (`mid`) of this stream.
    #[prost(string, tag = "1")]
    pub mid: String,
    /// `"audio"` or `"video"`.
    #[prost(string, tag = "2")]
    pub kind: String,
    #[prost(bool, tag = "3")]
    pub simulcast: bool,
    #[prost(bool, tag = "4")]
    pub muted: bool,
}

/// Client → server: publish (or renegotiate) the device's sending connection.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuPublish {
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(string, tag = "2")]
    pub call_id: String,
    #[prost(string, tag = "3")]
    pub sdp_offer: String,
}

/// Client → server: subscribe the receiving connection to these streams (replaces the
/// previous set).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuSubscribe {
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(string, tag = "2")]
    pub call_id: String,
    #[prost(message, repeated, tag = "3")]
    pub want: Vec<SfuWant>,
    /// The highest `SfuOffer.version` the device received (unset: an older SDK). Lower than
    /// the server's: an offer was lost (written while the socket was down), and the server
    /// sends its current offer again, so the two sides converge.
    #[prost(uint32, optional, tag = "4")]
    pub offer_version: Option<u32>,
    /// The receiving connection lost its transport: the SFU makes a new offer with fresh ICE
    /// credentials (ICE restart; only the SFU offers on this connection).
    #[prost(bool, tag = "5")]
    pub restart: bool,
}

/// One stream to receive, and at which simulcast layer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuWant {
    #[prost(string, tag = "1")]
    pub feed: String,
    #[prost(string, tag = "2")]
    pub mid: String,
    /// Simulcast layer: 0 low … 2 high; -1 lets the server pick by the number of tiles.
    #[prost(int32, tag = "3")]
    pub substream: i32,
}

/// Server → client: the SFU's offer for the receiving connection.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuOffer {
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(string, tag = "2")]
    pub call_id: String,
    #[prost(string, tag = "3")]
    pub sdp: String,
    /// Which user's which stream each `mid` of the offer carries.
    #[prost(message, repeated, tag = "4")]
    pub mids: Vec<SfuMid>,
    /// The receiving connection's offer number: increases with each offer that has an SDP
    /// (0: none yet). The device reports the highest it got in `SfuSubscribe.offer_version`.
    #[prost(uint32, tag = "5")]
    pub version: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuMid {
    #[prost(string, tag = "1")]
    pub mid: String,
    #[prost(string, tag = "2")]
    pub feed: String,
    #[prost(string, tag = "3")]
    pub user_id: String,
    #[prost(string, tag = "4")]
    pub kind: String,
}

/// Both ways: the server's answer to `SfuPublish`; the client's answer to `SfuOffer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuAnswer {
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(string, tag = "2")]
    pub call_id: String,
    #[prost(string, tag = "3")]
    pub sdp: String,
}

/// Client → server: a trickled ICE candidate; an empty `candidate` means gathering completed.
/// (The SFU's own candidates come inside its SDP.)
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuTrickle {
    #[prost(string, tag = "1")]
    pub call_id: String,
    /// `sfu_pc::PUBLISHER` or `sfu_pc::SUBSCRIBER`.
    #[prost(uint32, tag = "2")]
    pub pc: u32,
    #[prost(string, tag = "3")]
    pub candidate: String,
    #[prost(string, tag = "4")]
    pub sdp_mid: String,
    #[prost(uint32, tag = "5")]
    pub sdp_mline_index: u32,
}

/// Client → server: receive these streams at these layers (the app asked for a user's high
/// layer, or the number of tiles changed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuLayers {
    #[prost(string, tag = "1")]
    pub call_id: String,
    #[prost(message, repeated, tag = "2")]
    pub want: Vec<SfuWant>,
}

/// Server → client: a publish or subscribe failed; the SDK fires `onTrackPublishFail`
/// (`pc` = publisher) or `onTrackSubscribeFail` (subscriber).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuFailed {
    /// The failed request's id; 0 when the server noticed the failure itself.
    #[prost(uint32, tag = "1")]
    pub request_id: u32,
    #[prost(string, tag = "2")]
    pub call_id: String,
    #[prost(uint32, tag = "3")]
    pub pc: u32,
    /// A CallLib error code (`proto::error_code`).
    #[prost(int32, tag = "4")]
    pub code: i32,
    #[prost(string, tag = "5")]
    pub reason: String,
    /// The failure is the SFU refusing the device's `SfuAnswer` (`request_id` is the answer's,
    /// i.e. its offer's): the server dropped the device's subscription, so a new `SfuSubscribe`
    /// starts a fresh one. (Added in session 15; older servers never set it.)
    #[prost(bool, tag = "6")]
    pub answer: bool,
}

/// Server → client: the SFU lost this device's connections (restart): publish and subscribe
/// again; the call goes on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuRestart {
    #[prost(string, tag = "1")]
    pub call_id: String,
    #[prost(uint32, tag = "2")]
    pub generation: u32,
}

/// Server → client: the highest simulcast layer (0 low … 2 high, as `SfuWant.substream`) any
/// subscriber of this device's camera receives now. The sender keeps its encodings up to that
/// one active and pauses the ones above (the low layer always stays on). Raised at once,
/// lowered only after it held for a few seconds (docs/sfu.md, "Paused layers").
#[derive(Clone, PartialEq, prost::Message)]
pub struct SfuPublisherLayers {
    #[prost(string, tag = "1")]
    pub call_id: String,
    #[prost(uint32, tag = "2")]
    pub max_substream: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Delivered` as prost derives it: the hand-written codec must match it byte for byte.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Derived {
        #[prost(uint64, tag = "1")]
        seq: u64,
        #[prost(string, tag = "2")]
        message_uid: String,
        #[prost(string, tag = "3")]
        sender_user_id: String,
        #[prost(string, tag = "4")]
        sender_device_id: String,
        #[prost(int32, tag = "5")]
        conversation_type: i32,
        #[prost(string, tag = "6")]
        target_id: String,
        #[prost(string, tag = "7")]
        channel_id: String,
        #[prost(string, tag = "8")]
        message_type: String,
        #[prost(bytes = "vec", tag = "9")]
        content: Vec<u8>,
        #[prost(int64, tag = "10")]
        sent_time: i64,
        #[prost(bool, tag = "11")]
        offline: bool,
        #[prost(uint64, tag = "12")]
        sender_instance: u64,
        #[prost(uint64, tag = "13")]
        client_seq: u64,
    }

    fn full() -> (Delivered, Derived) {
        let d = Delivered {
            seq: 1 << 40,
            message_uid: "uid".into(),
            sender_user_id: "ann".into(),
            sender_device_id: "ann_1".into(),
            conversation_type: 3,
            target_id: "g1".into(),
            channel_id: "ch".into(),
            message_type: "RC:VCInvite".into(),
            content: vec![0, 1, 2, 255],
            sent_time: -5,
            offline: true,
            sender_instance: 7,
            client_seq: 300,
        };
        let e = Derived {
            seq: d.seq,
            message_uid: d.message_uid.clone(),
            sender_user_id: d.sender_user_id.clone(),
            sender_device_id: d.sender_device_id.clone(),
            conversation_type: d.conversation_type,
            target_id: d.target_id.clone(),
            channel_id: d.channel_id.clone(),
            message_type: d.message_type.clone(),
            content: d.content.clone(),
            sent_time: d.sent_time,
            offline: d.offline,
            sender_instance: d.sender_instance,
            client_seq: d.client_seq,
        };
        (d, e)
    }

    #[test]
    fn delivered_encodes_as_the_derive_does() {
        let (d, e) = full();
        assert_eq!(d.encode_to_vec(), e.encode_to_vec());
        assert_eq!(d.encoded_len(), e.encoded_len());
        assert_eq!(Delivered::default().encode_to_vec(), Derived::default().encode_to_vec());
        assert!(Delivered::default().encode_to_vec().is_empty());
    }

    #[test]
    fn delivered_decodes_what_the_derive_encodes() {
        let (d, e) = full();
        assert_eq!(Delivered::decode(e.encode_to_vec().as_slice()).unwrap(), d);
        // Inside the server frame, as the SDK receives it.
        let frame = ServerFrame { body: Some(server_frame::Body::Deliver(d.clone())), server_time: 9 };
        assert_eq!(ServerFrame::decode(frame.encode_to_vec().as_slice()).unwrap(), frame);
    }

    #[test]
    fn delivered_content_last_occurrence_wins_and_unknown_fields_are_skipped() {
        let (mut d, mut e) = full();
        let mut bytes = e.encode_to_vec();
        // A second `content` (tag 9, length-delimited) and an unknown varint field 99.
        bytes.extend_from_slice(&[9 << 3 | 2, 2, 7, 8]);
        bytes.extend_from_slice(&[0x98, 0x06, 1]);
        e.content = vec![7, 8];
        d.content = vec![7, 8];
        assert_eq!(Derived::decode(bytes.as_slice()).unwrap(), e);
        assert_eq!(Delivered::decode(bytes.as_slice()).unwrap(), d);
    }

    #[test]
    fn delivered_rejects_what_the_derive_rejects() {
        // `content` claims 5 bytes, 2 follow.
        let short = [9 << 3 | 2, 5, 1, 2];
        assert!(Derived::decode(&short[..]).is_err());
        assert_eq!(
            Delivered::decode(&short[..]).unwrap_err().to_string(),
            Derived::decode(&short[..]).unwrap_err().to_string().replace("Derived.content: ", "")
        );
        // `content` as a varint: a wire type mismatch.
        let wrong = [9 << 3, 1];
        assert!(Derived::decode(&wrong[..]).is_err());
        assert!(Delivered::decode(&wrong[..]).is_err());
    }
}
