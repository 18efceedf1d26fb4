//! Keeping calls alive through network changes: ICE restarts.
//!
//! CallLib left recovery to its media server; a P2P link whose network changed (Wi-Fi to LTE,
//! a VPN going down) stays `failed` for good unless someone restarts ICE, and the call would sit
//! silent until a user hangs up. So when a link's transport is lost, its offerer makes a new
//! offer with fresh ICE credentials ([`MediaAction::RestartIce`]), which travels like any other
//! offer; the answering side only answers, so restart offers never cross. Only links that
//! were connected once are restarted: before that the first negotiation may still be under way
//! (under heavy load a link can fail its first checks), and a new offer would cross its answer.
//! A `disconnected` link gets [`RESTART_GRACE_MS`] to come back by itself, a `failed` one is
//! restarted at once,
//! and the restart is repeated every [`RESTART_RETRY_MS`] until the link is connected again or
//! the call ends (the signalling connection may itself still be reconnecting). When it is back,
//! both sides ask for a keyframe: the decoder lost its references during the outage and would
//! otherwise show a frozen picture until the browser's own recovery (~3 s in Chromium).
//!
//! A link that fails before it ever connected is left alone by default, as CallLib gave up on
//! a failed publish or subscribe; with `isAllowPublishRetry` or `isAllowSubscribeRetry` its
//! offerer re-negotiates it up to [`super::EngineConfig::setup_retries`] more times.

use super::{Engine, LinkState, MediaAction, Peer, RESTART_GRACE_MS, RESTART_RETRY_MS};

impl Engine {
    pub(super) fn link_state(&mut self, call_id: &str, peer: &Peer, state: LinkState) {
        let now = self.now;
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.is_live()) else { return };
        let Some(link) = call.peers.iter_mut().find(|l| l.peer == *peer) else { return };
        let connected = state == LinkState::Connected;
        link.was_connected |= connected;
        if !link.was_connected {
            // Still setting up: its first negotiation is not to be disturbed, unless it has
            // failed for good and the app allowed retries (CallLib's publish/subscribe retries,
            // which re-published or re-subscribed to its media server up to twice). A `failed`
            // link has finished its offer/answer (ICE checks need both), so a restart offer
            // cannot cross the first answer. Only the offerer acts, as for any restart.
            if state == LinkState::Failed && link.offerer && link.setup_retries_left > 0 {
                link.setup_retries_left -= 1;
                self.media(MediaAction::RestartIce { call_id: call_id.to_string(), peer: peer.clone() });
            }
            return;
        }
        let back = std::mem::replace(&mut link.down, !connected) && connected;
        // The answering side waits for the offerer's new offer.
        if link.offerer {
            link.restart_at = match state {
                LinkState::Connected => None,
                LinkState::Disconnected => Some(link.restart_at.unwrap_or(now + RESTART_GRACE_MS)),
                LinkState::Failed => Some(link.restart_at.map_or(now, |t| t.min(now))),
            };
        }
        if back {
            self.media(MediaAction::RequestKeyFrames { call_id: call_id.to_string(), peer: Some(peer.clone()) });
        }
        self.restart_due_links();
    }

    /// Restarts every link whose time has come, and schedules the next attempt.
    pub(super) fn restart_due_links(&mut self) {
        let now = self.now;
        let mut due: Vec<(String, Peer)> = Vec::new();
        for call in self.calls.values_mut().filter(|c| c.is_live()) {
            for link in call.peers.iter_mut() {
                if link.restart_at.is_some_and(|t| t <= now) {
                    link.restart_at = Some(now + RESTART_RETRY_MS);
                    due.push((call.id.clone(), link.peer.clone()));
                }
            }
        }
        for (call_id, peer) in due {
            self.media(MediaAction::RestartIce { call_id, peer });
        }
    }
}
