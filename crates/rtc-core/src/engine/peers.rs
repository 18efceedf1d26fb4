//! The engine's view of peer connections: who connects to whom and when, pre-connecting while
//! a device rings, attaching tracks once both sides are in, and surfacing remote tracks only
//! then (no media of either side reaches the other before `accept()`).

use super::call::Link;
use super::{CallEvent, Engine, MediaAction, Peer, SendPurpose, TrackInfo, TrackKind};
use crate::proto::{self, call_content::Body, media_signal};
use crate::types::MediaType;

impl Engine {
    /// A participant device rang: if we are in the call, pre-connect to it.
    pub(super) fn peer_ringing(&mut self, call_id: &str, peer: Peer) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id) else { return };
        if call.self_in(&me) && call.users.contains_key(&peer.user_id) && !call.has_link(&peer) {
            self.connect_peer(call_id, peer, true, false);
        }
    }

    /// A participant device accepted while we are in: attach to its pre-connected link, or
    /// connect with tracks; links to that user's other devices are closed (they will not join).
    pub(super) fn peer_joined(&mut self, call_id: &str, peer: Peer) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        let others: Vec<Peer> = call
            .peers
            .iter()
            .filter(|l| l.peer.user_id == peer.user_id && l.peer.device_id != peer.device_id)
            .map(|l| l.peer.clone())
            .collect();
        call.peers.retain(|l| !others.contains(&l.peer));
        call.early_tracks.retain(|(p, _)| !others.contains(p));
        for other in others {
            self.media(MediaAction::Disconnect { call_id: call_id.to_string(), peer: other });
        }
        let call = self.calls.get_mut(call_id).expect("checked above");
        match call.peers.iter_mut().find(|l| l.peer == peer) {
            Some(link) if !link.attached => {
                link.attached = true;
                self.media(MediaAction::RequestKeyFrames { call_id: call_id.to_string(), peer: Some(peer.clone()) });
                self.media(MediaAction::Attach { call_id: call_id.to_string(), peer: Some(peer.clone()) });
            }
            Some(_) => {}
            None => self.connect_peer(call_id, peer.clone(), true, true),
        }
        self.announce_mute_state(call_id, vec![peer.user_id]);
    }

    /// We just got in (our accept went through): attach our tracks to every pre-connected link.
    /// Puts our tracks on every pre-connected link of the call not yet carrying them.
    pub(super) fn attach_links(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        if call.peers.iter().any(|l| !l.attached) {
            call.peers.iter_mut().for_each(|l| l.attached = true);
            self.media(MediaAction::Attach { call_id: call_id.to_string(), peer: None });
        }
    }

    pub(super) fn self_joined(&mut self, call_id: &str) {
        self.attach_links(call_id);
        let me = self.cfg.self_id.clone();
        let everyone = self.calls.get(call_id).map(|c| c.remote_ids(&me)).unwrap_or_default();
        self.announce_mute_state(call_id, everyone);
        self.surface_tracks(call_id);
    }

    pub(super) fn connect_peer(&mut self, call_id: &str, peer: Peer, offerer: bool, attach: bool) {
        let setup_retries_left = self.cfg.setup_retries;
        let Some(call) = self.calls.get_mut(call_id) else { return };
        // SFU calls have no peer links (see `sfu`).
        if call.has_link(&peer) || call.sfu.is_some() {
            return;
        }
        call.peers.push(Link {
            peer: peer.clone(),
            attached: attach,
            offerer,
            restart_at: None,
            down: false,
            was_connected: false,
            setup_retries_left,
        });
        let video = call.media_type.has_video();
        self.media(MediaAction::Connect { call_id: call_id.to_string(), peer, offerer, attach, video });
    }

    /// An SDP or candidate from `peer`. An offer opens our side of the link: pre-connected while
    /// we ring, with our tracks once we are in.
    pub(super) fn apply_remote_media(&mut self, call_id: &str, peer: Peer, signal: media_signal::Kind) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id).filter(|c| c.is_live() && c.sfu.is_none()) else { return };
        if !call.has_link(&peer) {
            let offer = matches!(signal, media_signal::Kind::Offer(_));
            let Some(m) = call.users.get(&peer.user_id) else { return };
            if !offer || !call.users.contains_key(&me) {
                return;
            }
            if !call.user_in(&peer.user_id) {
                // Only a participant in the call makes offers: a member the ModifyMem that
                // brought us in listed as ringing may have accepted before it knew of us (its
                // Accept went to the others only). Without this we would ring it out while in.
                if !m.maybe_in {
                    return;
                }
                self.missed_accept(call_id, &peer);
            }
            let Some(call) = self.calls.get(call_id) else { return };
            let attach = call.self_in(&me);
            self.connect_peer(call_id, peer.clone(), false, attach);
        }
        self.media(MediaAction::Apply { call_id: call_id.to_string(), peer, signal });
    }

    /// `peer`'s user is in the call though we never got its Accept (see `apply_remote_media`).
    fn missed_accept(&mut self, call_id: &str, peer: &Peer) {
        let Some(m) = self.calls.get_mut(call_id).and_then(|c| c.users.get_mut(&peer.user_id)) else { return };
        m.state = crate::types::UserState::Keeping;
        m.ring_deadline = None;
        m.device_id = Some(peer.device_id.clone());
        let sender = super::Sender { user_id: peer.user_id.clone(), profile: m.profile.clone() };
        self.emit(CallEvent::Accept { call_id: call_id.to_string(), sender });
    }

    pub(super) fn local_media_signal(&mut self, call_id: &str, peer: Peer, signal: media_signal::Kind) {
        let Some(call) = self.calls.get(call_id) else { return };
        if !call.is_live() || !call.has_link(&peer) {
            return;
        }
        let body =
            Body::Media(proto::MediaSignal { to_user_id: peer.user_id.clone(), to_device_id: peer.device_id.clone(), kind: Some(signal) });
        self.send(call_id, body, vec![peer.user_id], None, SendPurpose::Other);
    }

    pub(super) fn remote_track(&mut self, call_id: &str, peer: Peer, kind: TrackKind) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        if !call.is_live() || !call.has_link(&peer) {
            return;
        }
        if !call.early_tracks.contains(&(peer.clone(), kind)) {
            call.early_tracks.push((peer, kind));
        }
        self.surface_tracks(call_id);
    }

    /// Announces the remote tracks whose sender and we are both in the call.
    pub(super) fn surface_tracks(&mut self, call_id: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get_mut(call_id) else { return };
        let joined = call.joined() && call.self_in(&me);
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut call.early_tracks).into_iter().partition(|(p, _)| joined && call.user_in(&p.user_id));
        call.early_tracks = waiting;
        let audio_only = call.media_type == MediaType::Audio;
        for (peer, kind) in ready {
            // Remote video is not surfaced while the session is audio-only (spec D.3).
            if kind == TrackKind::Video && audio_only {
                continue;
            }
            let track = TrackInfo {
                track_id: super::track_id(&peer.user_id, kind),
                user_id: peer.user_id,
                device_id: peer.device_id,
                kind,
                local: false,
            };
            self.emit(CallEvent::TrackReady { call_id: call_id.to_string(), track, with_session: true });
        }
    }
}
