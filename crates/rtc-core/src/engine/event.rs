//! Listener events and the read-only views the SDK's getters return.

use super::io::Millis;
use super::media::TrackKind;
use crate::proto::UserProfile;
use crate::types::{MediaType, SessionState, UserState};

/// `ISenderInfo`: who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub user_id: String,
    pub profile: UserProfile,
}

/// A track announced by `onTrackReady`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub user_id: String,
    /// The sending device for a remote track (a user may ring on several); empty for ours.
    pub device_id: String,
    pub track_id: String,
    pub kind: TrackKind,
    pub local: bool,
}

/// `IEndSummary` (spec C.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndSummary {
    pub conversation_type: i32,
    pub channel_id: String,
    pub target_id: String,
    pub media_type: MediaType,
    pub begin_timestamp: Millis,
    pub end_timestamp: Millis,
    pub duration: Millis,
    pub end_reason: i32,
}

/// Everything the SDK turns into a listener or client callback.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// `onSession(session, extra)`: an incoming call; the app must register a listener now.
    Session { call_id: String, extra: String },
    /// `onRinging(sender)`.
    Ringing { call_id: String, sender: Sender },
    /// `onAccept(sender)`, with the sender's profile like the other events (CallLib gave only
    /// the user id; the seed types it `ISenderInfo`).
    Accept { call_id: String, sender: Sender },
    /// `onHungup(sender, reason)` with the reason in our perspective.
    Hungup { call_id: String, sender: Sender, reason: i32 },
    /// `onTrackReady(track, session?)`; `with_session` is false for the caller's own tracks
    /// announced inside `call()` (CallLib passes no session there).
    TrackReady { call_id: String, track: TrackInfo, with_session: bool },
    /// `onSessionClose(session, summary)`: exactly once per session handed to the app.
    SessionClosed { call_id: String, summary: EndSummary },
    /// `onMemberModify(sender, invitedUsers)`: someone invited more members.
    MemberModify { call_id: String, sender: Sender, invited: Vec<Sender> },
    /// `onMediaModify(sender, mediaType)`: the call was downgraded.
    MediaModify { call_id: String, sender: Sender, media_type: MediaType },
    /// `onAudioMuteChange` / `onVideoMuteChange` (`IMuteUser`): a participant muted or unmuted.
    MuteChange { call_id: String, user_id: String, kind: TrackKind, muted: bool, track_id: String },
    /// `onOfflineRecord(record)`: a call that happened while this client was offline.
    OfflineRecord(OfflineRecord),
    /// Our outgoing call `from` crossed the peer's call `into` and was merged into it: the app's
    /// session object for `from` now stands for `into` (rcall extension; see the engine docs).
    Merged { from: String, into: String },
    /// `onTrackPublishFail(rtcCode)`: a publish of the call's join through the SFU failed.
    PublishFail { call_id: String, code: i32 },
    /// `onTrackSubscribeFail(rtcCode)`: a subscribe of the call's join through the SFU failed.
    SubscribeFail { call_id: String, code: i32 },
}

/// `IOfflineRecord` (spec C.12). Timestamps are server times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineRecord {
    pub channel_id: String,
    pub conversation_type: i32,
    pub target_id: String,
    pub call_id: String,
    pub inviter_id: String,
    pub media_type: MediaType,
    pub end_reason: i32,
    pub begin_timestamp: Millis,
    pub end_timestamp: Millis,
    pub duration: Millis,
}

/// One entry of `getRemoteUsers()` (`IUserData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub user_id: String,
    pub state: UserState,
    pub is_caller: bool,
    pub is_remote: bool,
    pub profile: UserProfile,
    /// Publisher-side mute state (RCTrack's `isOwnerMuted`).
    pub audio_muted: bool,
    pub video_muted: bool,
}

/// What the session getters read.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub call_id: String,
    pub target_id: String,
    pub conversation_type: i32,
    pub channel_id: String,
    pub media_type: MediaType,
    pub caller_id: String,
    pub inviter_id: String,
    pub state: SessionState,
    /// Every tracked user, self included.
    pub users: Vec<UserView>,
}
