//! Muting microphone and camera (`disable/enableAudioTrack`, `disable/enableVideoTrack`) and
//! telling the others (`onAudioMuteChange` / `onVideoMuteChange`).
//!
//! CallLib relied on RTCLib's room to carry mute state; peer-to-peer we carry it ourselves in
//! `RCall:Mute`, sent to everyone in the call and again to each member who joins later.

use super::call::Pending;
use super::{CallEvent, CaptureError, CommandId, Engine, MediaAction, SendPurpose, TrackKind};
use crate::proto::{self, call_content::Body};
use crate::types::{error_code, MediaType};

impl Engine {
    pub(super) fn mute_track(&mut self, id: CommandId, call_id: &str, kind: TrackKind, muted: bool) {
        let me = self.cfg.self_id.clone();
        let camera_off = self.cfg.camera_off_when_video_disabled;
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.has_session()) else {
            // An ended session has no room and no local video track (spec A.5: 53309).
            let code = if kind == TrackKind::Video { error_code::MISSING_VIDEO_TRACK_ERROR } else { error_code::PARAM_ERROR };
            return self.done(id, code, None);
        };
        if kind == TrackKind::Video {
            // No camera in this call (audio call, or downgraded), or not in the call yet.
            if call.media_type == MediaType::Audio || !call.joined() || !call.idle() {
                return self.done(id, error_code::MISSING_VIDEO_TRACK_ERROR, None);
            }
            // No local video track: released by an earlier disableVideoTrack() in camera-off
            // mode, or never captured (a member that joined without a camera).
            let no_track = call.camera_released() || call.no_camera;
            if (muted && no_track) || (!camera_off && call.no_camera) {
                return self.done(id, error_code::MISSING_VIDEO_TRACK_ERROR, None);
            }
            if camera_off {
                if !muted && !no_track {
                    // Already has a camera.
                    return self.done(id, error_code::SUCCESS, None);
                }
                if !muted {
                    // A new camera track; announced once it is captured and sent (D.3).
                    call.set_pending(Pending::CameraCapture(id));
                    return self.media(MediaAction::CaptureCamera { call_id: call_id.to_string() });
                }
                call.set_camera_released(true);
                call.muted.video = true;
                self.media(MediaAction::DropVideo { call_id: call_id.to_string() });
                return self.send_mute(call_id, true, true, Some(id));
            }
            call.muted.video = muted;
        } else {
            call.muted.audio = muted;
        }
        let joined = call.joined() && call.self_in(&me);
        self.media(MediaAction::SetEnabled { call_id: call_id.to_string(), kind, enabled: !muted });
        if joined {
            self.send_mute(call_id, kind == TrackKind::Video, muted, Some(id));
        } else {
            self.done(id, error_code::SUCCESS, None);
        }
    }

    /// The new camera track of `enableVideoTrack()` was captured (or not).
    pub(super) fn camera_captured(&mut self, call_id: &str, command: CommandId, result: Result<Vec<TrackKind>, CaptureError>) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        call.set_pending(Pending::None);
        if result.is_err() || !call.is_live() {
            return self.done(command, error_code::GET_LOCAL_VIDEO_TRACK_ERROR, None);
        }
        call.set_camera_released(false);
        call.muted.video = false;
        self.media(MediaAction::Attach { call_id: call_id.to_string(), peer: None });
        self.sfu_camera_added(call_id);
        self.local_track_ready(call_id, TrackKind::Video, true);
        self.send_mute(call_id, true, false, Some(command));
    }

    /// `changeAudioDevice()`: only in a call we are in (there is a microphone to replace).
    pub(super) fn change_microphone(&mut self, id: CommandId, call_id: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.self_in(&me) && c.idle()) else {
            return self.done(id, error_code::PARAM_ERROR, None);
        };
        call.set_pending(Pending::MicCapture(id));
        self.media(MediaAction::CaptureMicrophone { call_id: call_id.to_string() });
    }

    pub(super) fn microphone_captured(&mut self, call_id: &str, command: CommandId, result: Result<Vec<TrackKind>, CaptureError>) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        call.set_pending(Pending::None);
        if result.is_err() || !call.is_live() {
            return self.done(command, error_code::GET_LOCAL_AUDIO_TRACK_ERROR, None);
        }
        let muted = call.muted.audio;
        if muted {
            self.media(MediaAction::SetEnabled { call_id: call_id.to_string(), kind: TrackKind::Audio, enabled: false });
        }
        // CallLib announces the new microphone before publishing it (D.3).
        self.local_track_ready(call_id, TrackKind::Audio, true);
        self.media(MediaAction::Attach { call_id: call_id.to_string(), peer: None });
        self.done(command, error_code::SUCCESS, None);
    }

    fn send_mute(&mut self, call_id: &str, video: bool, muted: bool, command: Option<CommandId>) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id) else { return };
        let recipients = call.remote_ids(&me);
        let body = Body::Mute(proto::MuteState { video, muted });
        self.send(call_id, body, recipients, None, SendPurpose::Mute { command });
    }

    /// Tells `to` (someone who just joined) what we have muted.
    pub(super) fn announce_mute_state(&mut self, call_id: &str, to: Vec<String>) {
        let Some(call) = self.calls.get(call_id) else { return };
        let states = [(false, call.muted.audio), (true, call.muted.video)];
        for (video, muted) in states {
            if muted && !to.is_empty() {
                let body = Body::Mute(proto::MuteState { video, muted });
                self.send(call_id, body, to.clone(), None, SendPurpose::Mute { command: None });
            }
        }
    }

    /// RCall:Mute from another participant.
    pub(super) fn remote_mute(&mut self, call_id: &str, user_id: &str, state: proto::MuteState) {
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.is_live()) else { return };
        let Some(m) = call.users.get_mut(user_id) else { return };
        let kind = if state.video { TrackKind::Video } else { TrackKind::Audio };
        let slot = m.muted.of(state.video);
        if *slot == state.muted {
            return;
        }
        *slot = state.muted;
        let track_id = super::track_id(user_id, kind);
        self.emit(CallEvent::MuteChange { call_id: call_id.to_string(), user_id: user_id.to_string(), kind, muted: state.muted, track_id });
    }
}
