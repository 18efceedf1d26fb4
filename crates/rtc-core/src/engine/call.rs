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
    pub muted: Muted,
    /// Listed as ringing by the ModifyMem that brought us into the call: it may have accepted
    /// before it knew of us (see `Engine::apply_remote_media`).
    pub maybe_in: bool,
}

/// Which of a user's tracks are muted (`RCall:Mute`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Muted {
    pub audio: bool,
    pub video: bool,
}

impl Muted {
    /// The video or the audio flag.
    pub fn of(&mut self, video: bool) -> &mut bool {
        if video {
            &mut self.video
        } else {
            &mut self.audio
        }
    }
}

/// An outgoing call being set up. rcall sends the invite while the camera starts (CallLib
/// captured first), so the callee rings ~150 ms sooner; `call()` settles once both are done.
#[derive(Debug, Clone)]
pub(crate) struct CallStart {
    /// The `call()` command, settled once capture and invite are both done.
    pub command: CommandId,
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

/// Where a call stands. Each phase carries what only it has, so a call cannot be, say, joined
/// while ringing, or hold `call()`'s start data after it resolved.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// `call()` runs: capturing and inviting at once, messages for the call held until both are
    /// done. No session for the app yet (`getState()` says END; ending it closes nothing).
    Starting(Box<CallStart>),
    /// A session the app holds, WAITING: this device rings, or rings the others.
    /// `captured`: local media is captured or being captured for this call (the caller's, or an
    /// accept's).
    Waiting { pending: Pending, captured: bool },
    /// KEEPING: this device is in the call with its media captured; the "room" is joined, so
    /// peers may connect. `camera_released`: by `disableVideoTrack()` (camera-off mode).
    Keeping { pending: Pending, camera_released: bool },
    /// END, kept so getters answer after `onSessionClose`.
    Ended { reason: i32 },
}

/// What a session waits for from the media layer or the server (an accept, a merge, a new
/// camera or microphone).
///
/// One type for both session phases on purpose: [`Call::keep`] carries it from WAITING into
/// KEEPING, and both phases can hold more than their "own" kinds. `changeAudioDevice()` by a
/// caller still ringing the others is a `MicCapture` in WAITING; a caller who left, was invited
/// back and accepts is in the call again as soon as its ring timer stops (`Call::user_in`), so
/// another member's Accept arriving while its camera starts moves it to KEEPING with
/// `Accepting` (or `AcceptSend`/`AcceptCapture`) still pending. Only `CameraCapture` is
/// KEEPING's alone (`enableVideoTrack()` in camera-off mode needs a joined call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    None,
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
    pub phase: Phase,
    pub users: SmallMap<String, Member>,
    pub begin: Millis,
    pub end: Millis,
    /// Peer connections of this call.
    pub peers: Vec<Link>,
    /// Remote tracks that arrived before their sender and we were both in the call: surfaced
    /// once we are (pre-connected links negotiate while ringing).
    pub early_tracks: Vec<(Peer, super::TrackKind)>,
    /// `extra` of the invite (outgoing: ours; incoming: the inviter's).
    pub extra: String,
    pub push_title: Option<String>,
    pub push_content: Option<String>,
    /// The app already got `onTrackReady` for our local tracks (merged calls reuse them).
    pub local_announced: bool,
    /// Our own mute state, announced to everyone who joins.
    pub muted: Muted,
    /// Users our ring timer gave up on, and users no longer tracked (left, timed out, or the
    /// call ended): a late Accept from one of them is handled by `Engine::late_accept`.
    pub timed_out: Vec<String>,
    pub left: Vec<String>,
    /// Late accepters already told that this device is out of the call.
    pub told_gone: Vec<String>,
    /// A GROUP call started in SFU mode: its media goes through the SFU, never the mesh.
    pub sfu: Option<Box<super::sfu::SfuCall>>,
    /// The call's capture found no camera (`isAllowDemotionGetStream`): for
    /// `enableVideoTrack()` in camera-off mode that is a released camera (a new one is captured).
    pub no_camera: bool,
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
    /// adjusts what differs (an outgoing call starts in [`Phase::Starting`]).
    pub fn new(p: CallParties) -> Self {
        Call {
            id: p.id,
            conversation_type: p.conversation_type,
            target_id: p.target_id,
            channel_id: p.channel_id,
            media_type: p.media_type,
            caller_id: p.caller_id,
            inviter_id: p.inviter_id,
            phase: Phase::Waiting { pending: Pending::None, captured: false },
            users: p.users,
            begin: 0,
            end: 0,
            peers: Vec::new(),
            early_tracks: Vec::new(),
            extra: String::new(),
            push_title: None,
            push_content: None,
            local_announced: false,
            muted: Muted::default(),
            timed_out: Vec::new(),
            left: Vec::new(),
            told_gone: Vec::new(),
            sfu: None,
            no_camera: false,
        }
    }

    /// Not over yet (an outgoing call still being set up counts).
    pub fn is_live(&self) -> bool {
        !matches!(self.phase, Phase::Ended { .. })
    }

    /// A live session the app holds (WAITING or KEEPING).
    pub fn has_session(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. } | Phase::Keeping { .. })
    }

    /// Media is up for this call (the "room" is joined): peers may connect.
    pub fn joined(&self) -> bool {
        matches!(self.phase, Phase::Keeping { .. })
    }

    /// Local media is captured (or being captured) for this call.
    pub fn has_local_media(&self) -> bool {
        match self.phase {
            Phase::Starting(_) | Phase::Keeping { .. } => true,
            Phase::Waiting { captured, .. } => captured,
            Phase::Ended { .. } => false,
        }
    }

    /// Local media is captured and not being (re)captured for `call()`, an accept or a merge
    /// (a camera or microphone change counts as captured: the shell swaps the track).
    pub fn media_captured(&self) -> bool {
        self.has_local_media()
            && !matches!(self.pending(), Pending::Accepting(_) | Pending::AcceptCapture(_) | Pending::MergeCapture(_))
            && !matches!(self.phase, Phase::Starting(_))
    }

    /// What the session waits for; [`Pending::None`] outside a session too (`call()` still
    /// starting, or over): ask [`Call::idle`] for "a session waiting for nothing".
    pub fn pending(&self) -> Pending {
        match self.phase {
            Phase::Waiting { pending, .. } | Phase::Keeping { pending, .. } => pending,
            Phase::Starting(_) | Phase::Ended { .. } => Pending::None,
        }
    }

    /// Sets what the session waits for (nothing happens outside a session).
    pub fn set_pending(&mut self, to: Pending) {
        match &mut self.phase {
            Phase::Waiting { pending, .. } | Phase::Keeping { pending, .. } => *pending = to,
            Phase::Starting(_) | Phase::Ended { .. } => debug_assert_eq!(to, Pending::None, "no session to wait in"),
        }
    }

    /// A live session waiting for nothing.
    pub fn idle(&self) -> bool {
        self.has_session() && self.pending() == Pending::None
    }

    /// `call()`'s start data while it runs.
    pub fn start_mut(&mut self) -> Option<&mut CallStart> {
        match &mut self.phase {
            Phase::Starting(start) => Some(start),
            _ => None,
        }
    }

    /// This device is in: the session goes KEEPING (from WAITING, keeping what it waits for).
    pub fn keep(&mut self) {
        match self.phase {
            Phase::Waiting { pending, .. } => self.phase = Phase::Keeping { pending, camera_released: false },
            Phase::Keeping { .. } => {}
            Phase::Starting(_) | Phase::Ended { .. } => debug_assert!(false, "only a session is kept"),
        }
    }

    /// The camera was released by `disableVideoTrack()` (camera-off mode); only in the call.
    pub fn camera_released(&self) -> bool {
        matches!(self.phase, Phase::Keeping { camera_released: true, .. })
    }

    /// Notes that the camera was released or captured again (only in the call: nothing else has
    /// a camera to release).
    pub fn set_camera_released(&mut self, to: bool) {
        match &mut self.phase {
            Phase::Keeping { camera_released, .. } => *camera_released = to,
            _ => debug_assert!(false, "no camera outside the call"),
        }
    }

    /// `getState()`.
    pub fn session_state(&self) -> SessionState {
        match self.phase {
            Phase::Waiting { .. } => SessionState::Waiting,
            Phase::Keeping { .. } => SessionState::Keeping,
            Phase::Starting(_) | Phase::Ended { .. } => SessionState::End,
        }
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
            end_reason: if let Phase::Ended { reason } = self.phase { reason } else { 0 },
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
            state: self.session_state(),
            users: self
                .users
                .iter()
                .map(|(id, m)| UserView {
                    user_id: id.clone(),
                    state: m.state,
                    is_caller: *id == self.caller_id,
                    is_remote: id != self_id,
                    profile: m.profile.clone(),
                    audio_muted: if id == self_id { self.muted.audio } else { m.muted.audio },
                    video_muted: if id == self_id { self.muted.video } else { m.muted.video },
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
}
