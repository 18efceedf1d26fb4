//! The data of one call (spec C.1) and the small queries the flows need.

use crate::small_map::SmallMap;

use super::event::{EndSummary, SessionView, UserView};
use super::io::{CommandId, Millis};
use super::media::Peer;
use crate::proto::UserProfile;
use crate::types::{MediaType, SessionState, UserState};

/// One participant as this device tracks it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub state: UserState,
    pub profile: UserProfile,
    /// Local time at which this user's ringing times out.
    pub ring_deadline: Option<Millis>,
    /// The device that answered (known from its Accept), for media.
    pub device_id: Option<String>,
    /// Publisher-side mute state, as the member announced it (`isOwnerMuted`).
    pub audio_muted: bool,
    pub video_muted: bool,
    /// Listed as ringing by the ModifyMem that brought us into the call: it may have accepted
    /// before it knew of us (see `Engine::apply_remote_media`).
    pub maybe_in: bool,
}

/// An outgoing call being set up. rcall sends the invite while the camera starts (CallLib
/// captured first), so the callee rings ~150 ms sooner; `call()` settles once both are done.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallStart {
    pub captured: Option<Result<Vec<super::TrackKind>, super::CaptureError>>,
    pub sent: Option<Result<super::Millis, i32>>,
    pub held: Vec<super::Received>,
}

/// One peer connection as the engine tracks it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Link {
    pub peer: Peer,
    /// Our local tracks are attached (before that the link is only pre-connected).
    pub attached: bool,
    /// We made the link's offers, so we are the side that restarts ICE.
    pub offerer: bool,
    /// When to restart ICE next, while the link has lost its transport.
    pub restart_at: Option<Millis>,
    /// The transport was lost (`disconnected`/`failed`) and is not back yet.
    pub down: bool,
    /// The link has been connected at least once (only such a link is restarted: before that
    /// its first negotiation may still be under way, and a new offer would cross its answer).
    pub was_connected: bool,
    /// How many more times a link that failed before it ever connected is re-negotiated (ICE
    /// restart from its offerer): CallLib's publish/subscribe retries (see `recovery`).
    pub setup_retries_left: u8,
}

/// Where an outgoing call or an accept stands while the media layer or server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    None,
    /// `call()`: capturing and inviting at once; see [`Call::start`].
    CallStart(CommandId),
    /// `accept()`: capturing, and the Accept already on its way (see `Engine::accept`).
    Accepting(CommandId),
    /// `accept()`: the server took our Accept; waiting for capture.
    AcceptCapture(CommandId),
    /// `accept()`: captured; the Accept is still on its way.
    AcceptSend(CommandId),
    /// A crossing call was merged into this one: our Accept is on its way.
    MergeAccept,
    /// Merged while our `call()` was still capturing: accept once the camera is up.
    MergeCapture(CommandId),
    /// `enableVideoTrack()` with the camera released: waiting for the new camera track.
    CameraCapture(CommandId),
    /// `changeAudioDevice()`: waiting for the new microphone track.
    MicCapture(CommandId),
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub id: String,
    pub conversation_type: i32,
    pub target_id: String,
    pub channel_id: String,
    pub media_type: MediaType,
    pub caller_id: String,
    pub inviter_id: String,
    /// `None` until the invite went out (outgoing) — `getState()` then reports END.
    pub state: Option<SessionState>,
    pub users: SmallMap<String, Member>,
    pub begin: Millis,
    pub end: Millis,
    pub end_reason: Option<i32>,
    /// The session object was handed to the app (so it is owed one `onSessionClose`).
    pub announced: bool,
    /// Media is up for this call (the "room" is joined): peers may connect.
    pub joined: bool,
    /// Local media is captured (or being captured) for this call.
    pub has_local_media: bool,
    /// Peer connections of this call.
    pub peers: Vec<Link>,
    /// Remote tracks that arrived before their sender and we were both in the call: surfaced
    /// once we are (pre-connected links negotiate while ringing).
    pub early_tracks: Vec<(Peer, super::TrackKind)>,
    pub pending: Pending,
    /// `extra` of the invite (outgoing: ours; incoming: the inviter's).
    pub extra: String,
    pub push_title: Option<String>,
    pub push_content: Option<String>,
    /// While `call()` runs: how capture and invite went, and messages for the call that arrived
    /// before both finished (replayed afterwards, so the app sees CallLib's order).
    pub start: Option<Box<CallStart>>,
    /// The app already got `onTrackReady` for our local tracks (merged calls reuse them).
    pub local_announced: bool,
    /// Our own mute state, announced to everyone who joins.
    pub audio_muted: bool,
    pub video_muted: bool,
    /// The camera was released by `disableVideoTrack()` (camera-off mode).
    pub camera_released: bool,
    /// Users our ring timer gave up on, and users no longer tracked (left, timed out, or the
    /// call ended): a late Accept from one of them is handled by `Engine::late_accept`.
    pub timed_out: Vec<String>,
    pub left: Vec<String>,
    /// Late accepters already told that this device is out of the call.
    pub told_gone: Vec<String>,
    /// A GROUP call started in SFU mode: its media goes through the SFU, never the mesh.
    pub sfu: Option<Box<super::sfu::SfuCall>>,
}

/// Who a call is between, for [`Call::new`].
pub(crate) struct CallParties {
    pub id: String,
    pub conversation_type: i32,
    pub target_id: String,
    pub channel_id: String,
    pub media_type: MediaType,
    pub caller_id: String,
    pub inviter_id: String,
    pub users: SmallMap<String, Member>,
}

impl Call {
    /// A call in WAITING, already handed to the app, with nothing else going on yet; each flow
    /// adjusts what differs (an outgoing call starts unannounced and without a state).
    pub fn new(p: CallParties) -> Self {
        Call {
            id: p.id,
            conversation_type: p.conversation_type,
            target_id: p.target_id,
            channel_id: p.channel_id,
            media_type: p.media_type,
            caller_id: p.caller_id,
            inviter_id: p.inviter_id,
            state: Some(SessionState::Waiting),
            users: p.users,
            begin: 0,
            end: 0,
            end_reason: None,
            announced: true,
            joined: false,
            has_local_media: false,
            peers: Vec::new(),
            early_tracks: Vec::new(),
            pending: Pending::None,
            extra: String::new(),
            push_title: None,
            push_content: None,
            start: None,
            local_announced: false,
            audio_muted: false,
            video_muted: false,
            camera_released: false,
            timed_out: Vec::new(),
            left: Vec::new(),
            told_gone: Vec::new(),
            sfu: None,
        }
    }

    pub fn is_live(&self) -> bool {
        self.state != Some(SessionState::End) && !(self.state.is_none() && self.pending == Pending::None)
    }

    pub fn is_group(&self) -> bool {
        self.conversation_type == crate::proto::conversation_type::GROUP
    }

    pub fn user_state(&self, user_id: &str) -> UserState {
        self.users.get(user_id).map_or(UserState::None, |m| m.state)
    }

    /// Tracked users other than `self_id`.
    pub fn remote_ids(&self, self_id: &str) -> Vec<String> {
        self.users.keys().filter(|u| u.as_str() != self_id).cloned().collect()
    }

    pub fn summary(&self) -> EndSummary {
        let duration = if self.begin != 0 && self.end > self.begin { self.end - self.begin } else { 0 };
        EndSummary {
            conversation_type: self.conversation_type,
            channel_id: self.channel_id.clone(),
            target_id: self.target_id.clone(),
            media_type: self.media_type,
            begin_timestamp: self.begin,
            end_timestamp: self.end,
            duration,
            end_reason: self.end_reason.unwrap_or(0),
        }
    }

    pub fn view(&self, self_id: &str) -> SessionView {
        SessionView {
            call_id: self.id.clone(),
            target_id: self.target_id.clone(),
            conversation_type: self.conversation_type,
            channel_id: self.channel_id.clone(),
            media_type: self.media_type,
            caller_id: self.caller_id.clone(),
            inviter_id: self.inviter_id.clone(),
            state: self.state.unwrap_or(SessionState::End),
            users: self
                .users
                .iter()
                .map(|(id, m)| UserView {
                    user_id: id.clone(),
                    state: m.state,
                    is_caller: *id == self.caller_id,
                    is_remote: id != self_id,
                    profile: m.profile.clone(),
                    audio_muted: if id == self_id { self.audio_muted } else { m.audio_muted },
                    video_muted: if id == self_id { self.video_muted } else { m.video_muted },
                })
                .collect(),
        }
    }

    pub fn has_link(&self, peer: &Peer) -> bool {
        self.peers.iter().any(|l| l.peer == *peer)
    }

    /// Whether this device takes part in the call now: it placed it, or it accepted.
    pub fn self_in(&self, self_id: &str) -> bool {
        self.is_live() && self.user_in(self_id)
    }

    /// Whether `user` is being rung (has a ring timer running).
    pub fn ringing(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|m| m.state == UserState::Waiting && m.ring_deadline.is_some())
    }

    /// Whether `user` takes part in the call now, as far as this device knows: it accepted, or
    /// it is the caller and has not left (a caller invited back after leaving rings again).
    pub fn user_in(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|m| m.state == UserState::Keeping || (user == self.caller_id && m.ring_deadline.is_none()))
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        if !self.is_live() {
            return None;
        }
        let rings = self.users.values().filter_map(|m| m.ring_deadline);
        rings.chain(self.peers.iter().filter_map(|l| l.restart_at)).min()
    }
}
