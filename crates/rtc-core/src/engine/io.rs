//! What goes into the engine and what comes out of it.

use super::event::CallEvent;
use super::media::{MediaAction, MediaEvent};
use crate::proto::{CallContent, PushConfig, PushOptions, SendMessage, UserProfile};
use crate::types::MediaType;

/// Milliseconds since the Unix epoch, on the local clock unless named otherwise.
pub type Millis = i64;

/// Identifies an app command so its asynchronous result ([`Output::Done`]) can be matched.
pub type CommandId = u64;

/// One input to [`super::Engine::handle_input`].
#[allow(clippy::large_enum_variant)] // short-lived values, moved once
#[derive(Debug, Clone)]
pub enum Input {
    /// The app asked for something.
    Command(CommandId, Command),
    /// A call message arrived from the server.
    Signal(Received),
    /// The server answered one of our [`OutgoingSignal`]s: `Ok(sent_time)` or `Err(IM code)`.
    SendResult { request_id: u32, server_time: Millis, result: Result<Millis, i32> },
    /// The shell could not hand one of our [`OutgoingSignal`]s to the server (not logged in, or
    /// its queue is full): handled like a refusal with IM `code`. No server time comes with it,
    /// so the engine's server-clock offset (ring timers, offline window) is left as it was.
    SendFailed { request_id: u32, code: i32 },
    /// The media layer reports something.
    Media(MediaEvent),
    /// The deadline given by [`Output::Wait`] has passed (extra calls are harmless).
    Timeout,
    /// The server finished delivering what was stored while we were offline: the offline
    /// batch is turned into live calls and offline records (spec B.7, C.12).
    SyncDone,
    /// The server removed this user from `call_id` (operator kick): end it with
    /// KICKED_BY_SERVER (23) and tell the others (they see 33).
    Kicked { call_id: String },
    /// The connection to the server is gone; `since` is when the client last heard from the
    /// server (local clock). What the engine sends meanwhile is queued by the shell
    /// ([`crate::link::ClientLink`]). Live calls end with NETWORK_ERROR (7) at
    /// `since + SELF_CUTOFF_MS` unless [`Input::LinkUp`] comes first.
    LinkDown { since: Millis },
    /// The connection is authenticated again (after [`Input::LinkDown`]). Until
    /// [`Input::SyncDone`] the server replays what we missed: messages of calls the engine does
    /// not know are held with the offline batch, so a call that began and ended meanwhile does
    /// not ring.
    LinkUp,
    /// SFU mode: the login's verdict and the server's SFU frames (see `sfu`).
    Sfu(super::SfuInput),
}

/// App commands (the CallLib API, already validated for shape by the SDK).
#[derive(Debug, Clone)]
pub enum Command {
    /// `call()` / `callInGroup()`.
    Call(CallRequest),
    /// `session.accept()`.
    Accept { call_id: String },
    /// `session.hungup()`.
    Hangup { call_id: String },
    /// `registerUserInfo()`: the profile embedded as `content.user` in every message we send.
    RegisterUserInfo(UserProfile),
    /// `session.invite(userIds, options)`: add members to a group call (spec C.9).
    Invite { call_id: String, user_ids: Vec<String>, extra: String, push_title: Option<String>, push_content: Option<String> },
    /// `session.descendAbility()`: downgrade the call to audio only.
    DescendAbility { call_id: String },
    /// `setPushConfig(callPushConfig, hungupPushConfig)`.
    SetPushConfig { call: PushTexts, hangup: PushTexts },
    /// `disableAudioTrack()` / `enableAudioTrack()` / `disableVideoTrack()` / `enableVideoTrack()`.
    MuteTrack { call_id: String, kind: super::TrackKind, muted: bool },
    /// `session.changeAudioDevice()`: capture another microphone and send it instead.
    ChangeMicrophone { call_id: String },
    /// `session.setRemoteVideoLayer(userId, layer)` (rcall extension): the simulcast layer to
    /// receive of a user's video in an SFU call.
    RemoteVideoLayer { call_id: String, user_id: String, layer: super::VideoLayer },
}

/// Push title and content an app chose (`None` keeps the default), and for `setPushConfig` the
/// rest of its `IPushConfig` (per OS / vendor channel).
#[derive(Debug, Default, PartialEq)]
pub struct PushTexts {
    pub title: Option<String>,
    pub content: Option<String>,
    pub options: Option<Box<PushOptions>>,
}

/// Field by field, the options through [`clone_options`]: the derive inlined a second copy of
/// the options' deep clone (~700 B of wasm).
impl Clone for PushTexts {
    fn clone(&self) -> Self {
        PushTexts { title: self.title.clone(), content: self.content.clone(), options: clone_options(&self.options) }
    }
}

/// A copy of an app's per-OS push options: one out-of-line body for every caller (the SDK's
/// copies of `setPushConfig`, each invite and hangup's push config).
#[inline(never)]
pub(crate) fn clone_options(options: &Option<Box<PushOptions>>) -> Option<Box<PushOptions>> {
    options.clone()
}

/// Parameters of an outgoing call.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Chosen by the shell (it owns randomness): `<22-char token>_<ms>_<0..999>` (spec C.1).
    pub call_id: String,
    /// 1 PRIVATE or 3 GROUP.
    pub conversation_type: i32,
    /// Peer user id (PRIVATE) or group id (GROUP).
    pub target_id: String,
    /// GROUP only: the invitees.
    pub user_ids: Vec<String>,
    pub media_type: MediaType,
    pub channel_id: String,
    pub extra: String,
    pub push_title: Option<String>,
    pub push_content: Option<String>,
}

/// A call message delivered by the server, decoded.
#[derive(Debug, Clone)]
pub struct Received {
    pub sender_user_id: String,
    pub sender_device_id: String,
    pub conversation_type: i32,
    /// PRIVATE: the other party from our view; GROUP: the group id.
    pub target_id: String,
    pub channel_id: String,
    /// Server time at which the server accepted the message.
    pub sent_time: Millis,
    /// Server time at which the server delivered it (keeps our server-clock offset fresh).
    pub server_time: Millis,
    /// Stored while we were offline.
    pub offline: bool,
    pub content: CallContent,
}

/// One output drained from [`super::Engine::poll_output`].
#[allow(clippy::large_enum_variant)] // short-lived values, moved once
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this message; answer with [`Input::SendResult`] carrying the same `request_id`.
    Send(OutgoingSignal),
    /// Call a listener.
    Event(CallEvent),
    /// Drive the media layer.
    Media(MediaAction),
    /// A command finished: `code` is an `RCCallErrorCode`; `call_id` names the new session of a
    /// successful `Call`.
    Done { command: CommandId, code: i32, call_id: Option<String> },
    /// Nothing more to do now; feed [`Input::Timeout`] at this local time (None: no timer).
    Wait(Option<Millis>),
}

/// A message to send through the server.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingSignal {
    pub request_id: u32,
    pub conversation_type: i32,
    pub target_id: String,
    pub channel_id: String,
    pub directional_user_ids: Vec<String>,
    pub content: CallContent,
    pub push: Option<PushConfig>,
    /// The engine waits for this message's `SendResult`; when false the server is asked to send
    /// one only for a refusal (`no_receipt`), and the engine ignores it.
    pub receipt: bool,
}

impl OutgoingSignal {
    /// The envelope message the shell writes to the WebSocket.
    pub fn to_send_message(&self) -> SendMessage {
        SendMessage {
            request_id: self.request_id,
            conversation_type: self.conversation_type,
            target_id: self.target_id.clone(),
            channel_id: self.channel_id.clone(),
            directional_user_ids: self.directional_user_ids.clone(),
            message_type: self.content.object_name().unwrap_or_default().to_string(),
            content: self.content.to_bytes(),
            push: self.push.clone(),
            no_receipt: !self.receipt,
            // Numbered by the client link (`crate::link`), which owns the stream.
            client_seq: 0,
        }
    }
}
