//! What happened while this client was offline (spec B.7, C.12).
//!
//! The server stores call messages for an offline user and delivers them, in order and flagged
//! `offline`, right after login, then says [`super::Input::SyncDone`]. The engine groups them by
//! call: a call still ringing inside its 60 s window (server time) becomes a live incoming call
//! with the remaining ring time, and every call yields one offline record.
//!
//! Better than CallLib: messages are grouped by call id rather than by consecutive runs, so
//! interleaved calls are not split, and an orphan (a call whose invite is not in the batch) is
//! dropped instead of spinning the loop.

use super::{CallEvent, Engine, OfflineRecord, Received, RING_TIMEOUT_MS};
use crate::proto::{call_content::Body, conversation_type};
use crate::types::{end_reason, map_remote_reason, MediaType};

impl Engine {
    pub(super) fn on_sync_done(&mut self) {
        let batch = std::mem::take(&mut self.offline);
        let mut tasks: Vec<(String, Vec<Received>)> = Vec::new();
        for msg in batch {
            let id = msg.content.call_id.clone();
            match tasks.iter_mut().find(|(c, _)| *c == id) {
                Some((_, list)) => list.push(msg),
                None => tasks.push((id, vec![msg])),
            }
        }
        for (_, list) in tasks {
            let starts_call = matches!(list[0].content.body, Some(Body::Invite(_)) | Some(Body::ModifyMem(_)));
            if !starts_call {
                continue;
            }
            // The record reads only the messages, so it is taken before they move into the
            // engine (no copy of each message), and still announced after the call rings.
            let record = self.record(&list);
            if self.still_ringing(&list) {
                for msg in list {
                    self.on_signal(msg);
                }
            }
            self.emit(CallEvent::OfflineRecord(record));
        }
    }

    /// Whether the call in `list` should ring now (spec B.7 step 5).
    fn still_ringing(&self, list: &[Received]) -> bool {
        let me = &self.cfg.self_id;
        let first = &list[0];
        if self.server_now() - first.sent_time >= RING_TIMEOUT_MS || first.sender_user_id == *me {
            return false;
        }
        if first.conversation_type == conversation_type::PRIVATE {
            return list
                .iter()
                .all(|m| matches!(m.content.body, Some(Body::Invite(_)) | Some(Body::ModifyMedia(_)) | Some(Body::Ringing(_))));
        }
        let inviter = first.sender_user_id.clone();
        let mut participants: Vec<String> = vec![inviter.clone()];
        match &first.content.body {
            Some(Body::Invite(i)) => participants.extend(i.invite_user_ids.iter().cloned()),
            Some(Body::ModifyMem(m)) => participants.extend(m.invite_user_ids.iter().cloned()),
            _ => {}
        }
        let mut accepted = false;
        let mut inviter_left = false;
        for m in list {
            match m.content.body {
                Some(Body::Accept(_)) => accepted = true,
                Some(Body::Hangup(_)) => {
                    participants.retain(|p| *p != m.sender_user_id);
                    inviter_left = m.sender_user_id == inviter;
                }
                _ => {}
            }
        }
        participants.contains(me) && participants.len() > 1 && (accepted || !inviter_left)
    }

    /// One `IOfflineRecord` for a call's messages (spec C.12); times are server times.
    fn record(&self, list: &[Received]) -> OfflineRecord {
        let me = &self.cfg.self_id;
        let first = &list[0];
        let media_type = match &first.content.body {
            Some(Body::Invite(i)) => i.media_type,
            Some(Body::ModifyMem(m)) => m.media_type,
            _ => 1,
        };
        // Spec G.7 decision: an invite I received and never answered is NO_RESPONSE (5) for me;
        // an invite sent by my other device that nobody answered is REMOTE_NO_RESPONSE (15).
        let unanswered = if first.sender_user_id == *me { end_reason::REMOTE_NO_RESPONSE } else { end_reason::NO_RESPONSE };
        let mut record = OfflineRecord {
            channel_id: first.channel_id.clone(),
            conversation_type: first.conversation_type,
            target_id: first.target_id.clone(),
            call_id: first.content.call_id.clone(),
            inviter_id: first.sender_user_id.clone(),
            media_type: MediaType::from_i32(media_type).unwrap_or(MediaType::Audio),
            end_reason: unanswered,
            begin_timestamp: 0,
            end_timestamp: 0,
            duration: 0,
        };
        for m in list {
            match &m.content.body {
                Some(Body::ModifyMedia(mm)) => record.media_type = MediaType::from_i32(mm.media_type).unwrap_or(record.media_type),
                Some(Body::Accept(_)) => {
                    record.end_reason = end_reason::HANGUP;
                    record.begin_timestamp = m.sent_time;
                }
                Some(Body::Hangup(h)) => {
                    record.end_reason = if m.sender_user_id == *me { h.reason } else { map_remote_reason(h.reason) };
                    record.end_timestamp = m.sent_time;
                }
                _ => {}
            }
        }
        const TALKED: [i32; 8] = [3, 13, 21, 31, 23, 33, 24, 34];
        if TALKED.contains(&record.end_reason) && record.end_timestamp > record.begin_timestamp && record.begin_timestamp > 0 {
            record.duration = record.end_timestamp - record.begin_timestamp;
        }
        record
    }
}
