//! Client ↔ server frames. One `ClientFrame` or `ServerFrame` per binary WebSocket message.
//!
//! Flow: the client's first frame is `Authenticate`; the server answers `AuthResult`
//! (code 0 = ok, else an IMLib connect code such as 31004) and closes on failure.
//! Then the client `Send`s messages and gets one `SendResult` per request id; the server
//! `Deliver`s messages to every connected device of each recipient (and to the sender's
//! other devices), in order, each with the server's `sent_time` and a per-recipient `seq`.

use prost::Message as _;

/// A frame from a client to the server.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientFrame {
    #[prost(oneof = "client_frame::Body", tags = "1, 2, 3, 4")]
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
}

/// Push notification data attached to invite-type messages (spec B.5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushConfig {
    #[prost(string, tag = "1")]
    pub push_title: String,
    #[prost(string, tag = "2")]
    pub push_content: String,
    #[prost(string, tag = "3")]
    pub push_data: String,
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
    #[prost(oneof = "server_frame::Body", tags = "2, 3, 4, 5, 6, 7")]
    pub body: Option<server_frame::Body>,
}

pub mod server_frame {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        #[prost(message, tag = "2")]
        AuthResult(super::AuthResult),
        #[prost(message, tag = "3")]
        Deliver(super::Delivered),
        #[prost(message, tag = "4")]
        SendResult(super::SendResult),
        #[prost(message, tag = "5")]
        Error(super::ErrorFrame),
        #[prost(message, tag = "6")]
        Pong(super::Pong),
        #[prost(message, tag = "7")]
        SyncDone(super::SyncDone),
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
}

/// One message delivered to this device.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Delivered {
    /// Per-recipient sequence number, strictly increasing.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(string, tag = "2")]
    pub message_uid: String,
    #[prost(string, tag = "3")]
    pub sender_user_id: String,
    #[prost(string, tag = "4")]
    pub sender_device_id: String,
    #[prost(int32, tag = "5")]
    pub conversation_type: i32,
    /// For PRIVATE: the other party from the recipient's view (the sender, or for the sender's
    /// own other devices the original target). For GROUP: the group id.
    #[prost(string, tag = "6")]
    pub target_id: String,
    #[prost(string, tag = "7")]
    pub channel_id: String,
    #[prost(string, tag = "8")]
    pub message_type: String,
    #[prost(bytes = "vec", tag = "9")]
    pub content: Vec<u8>,
    /// Server time (ms) when the server accepted the message.
    #[prost(int64, tag = "10")]
    pub sent_time: i64,
    /// Stored while the recipient was offline and delivered on connect.
    #[prost(bool, tag = "11")]
    pub offline: bool,
}

/// Answer to `SendMessage`. `code` 0 = accepted (and `sent_time` is set); otherwise an IMLib code
/// (405 blacklisted, 22406 not in group, …) and nothing was delivered.
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
}

/// Every message stored for this device while it was offline has been delivered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SyncDone {}

/// Connection-level error codes carried by [`ErrorFrame`].
pub mod error_code {
    /// A frame that does not decode as a `ClientFrame`.
    pub const MALFORMED_FRAME: i32 = 40001;
    /// A frame larger than the server's limit.
    pub const FRAME_TOO_LARGE: i32 = 40002;
    /// Something other than `Authenticate` sent before authenticating.
    pub const NOT_AUTHENTICATED: i32 = 40003;
    /// Text frames are not part of the protocol.
    pub const TEXT_FRAME: i32 = 40004;
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
