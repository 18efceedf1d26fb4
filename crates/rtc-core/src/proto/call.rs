//! Content of the CallLib call messages (spec B.2, B.3) and of `RCall:Media`.
//!
//! Every content carries the common fields of B.2 (`platform`, `deviceId`, `callId`, `user`);
//! the message-specific fields sit in the `body` oneof. The IM object name travels beside the
//! content in the envelope and always agrees with the body ([`CallContent::object_name`]).

use prost::Message as _;

/// IM object names.
pub mod object_name {
    pub const INVITE: &str = "RC:VCInvite";
    pub const RINGING: &str = "RC:VCRinging";
    pub const ACCEPT: &str = "RC:VCAccept";
    pub const HANGUP: &str = "RC:VCHangup";
    pub const MODIFY_MEM: &str = "RC:VCModifyMem";
    pub const MODIFY_MEDIA: &str = "RC:VCModifyMedia";
    /// Not a RongCloud type: rcall's P2P negotiation (SDP, ICE) between two participants.
    pub const MEDIA: &str = "RCall:Media";

    /// Not a RongCloud type: a participant muted or unmuted its microphone or camera (what
    /// RTCLib's room carried as track mute state).
    pub const MUTE: &str = "RCall:Mute";

    /// Every object name the call engine consumes.
    pub const ALL: [&str; 8] = [INVITE, RINGING, ACCEPT, HANGUP, MODIFY_MEM, MODIFY_MEDIA, MEDIA, MUTE];
}

/// `engineType` of invite-type messages: the value Web 5.X uses for its RTC engine.
pub const ENGINE_TYPE: i32 = 4;

#[derive(Clone, PartialEq, prost::Message)]
pub struct CallContent {
    /// `'Web'` for us; `'iOS'` / `'Android'` from mobile peers.
    #[prost(string, tag = "1")]
    pub platform: String,
    /// Sender's device id (persistent per browser).
    #[prost(string, tag = "2")]
    pub device_id: String,
    #[prost(string, tag = "3")]
    pub call_id: String,
    /// The sender's profile from `registerUserInfo` (`{}` if never called).
    #[prost(message, optional, tag = "4")]
    pub user: Option<UserProfile>,
    #[prost(oneof = "call_content::Body", tags = "10, 11, 12, 13, 14, 15, 16, 17")]
    pub body: Option<call_content::Body>,
}

pub mod call_content {
    crate::proto::oneof::message_oneof! {
        pub enum Body {
            Invite(super::Invite) = 10,
            Ringing(super::Ringing) = 11,
            Accept(super::Accept) = 12,
            Hangup(super::Hangup) = 13,
            ModifyMem(super::ModifyMem) = 14,
            ModifyMedia(super::ModifyMedia) = 15,
            Media(super::MediaSignal) = 16,
            Mute(super::MuteState) = 17,
        }
    }
}

/// `user` of B.2 / `ISenderInfo` minus the id.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UserProfile {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub portrait_uri: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub extra: Option<String>,
}

/// `channelInfo` of invite-type messages: the RTC room (= callId).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChannelInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub key: String,
}

/// RC:VCInvite.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Invite {
    #[prost(int32, tag = "1")]
    pub engine_type: i32,
    #[prost(message, optional, tag = "2")]
    pub channel_info: Option<ChannelInfo>,
    #[prost(int32, tag = "3")]
    pub media_type: i32,
    /// Invitees, the caller excluded.
    #[prost(string, repeated, tag = "4")]
    pub invite_user_ids: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub observer_user_ids: Vec<String>,
    #[prost(string, tag = "6")]
    pub extra: String,
}

/// RC:VCRinging (no extra fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ringing {}

/// RC:VCAccept.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Accept {
    #[prost(int32, tag = "1")]
    pub media_type: i32,
}

/// RC:VCHangup. `reason` is an `RCCallEndReason` from the SENDER's perspective (1–10, 21–24, 103…).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hangup {
    #[prost(int32, tag = "1")]
    pub reason: i32,
}

/// RC:VCModifyMem (group invite during a call, spec C.9).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModifyMem {
    #[prost(int32, tag = "1")]
    pub engine_type: i32,
    #[prost(message, optional, tag = "2")]
    pub channel_info: Option<ChannelInfo>,
    #[prost(int32, tag = "3")]
    pub media_type: i32,
    /// Every user in the call including the new ones, minus the sender.
    #[prost(string, repeated, tag = "4")]
    pub invite_user_ids: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub observer_user_ids: Vec<String>,
    /// The original caller.
    #[prost(string, tag = "6")]
    pub caller: String,
    /// 1 = ADD (the only value sent).
    #[prost(int32, tag = "7")]
    pub modify_mem_type: i32,
    /// Spelled as on RongCloud's wire (sic).
    #[prost(message, repeated, tag = "8")]
    pub existed_user_pofiles: Vec<MemberProfile>,
    #[prost(string, tag = "9")]
    pub extra: String,
}

/// One entry of `existedUserPofiles`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberProfile {
    #[prost(string, tag = "1")]
    pub user_id: String,
    #[prost(int32, tag = "2")]
    pub media_type: i32,
    /// `MsgCallStatus`: RINGING 3 for new or still-waiting users, CONNECTED 4 otherwise.
    #[prost(int32, tag = "3")]
    pub call_status: i32,
}

/// RC:VCModifyMedia (downgrade to audio).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModifyMedia {
    #[prost(int32, tag = "1")]
    pub media_type: i32,
}

/// RCall:Media — one negotiation step from the sender's device to one device of one participant.
/// Other devices of the recipient ignore it (`to_device_id` does not match).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MediaSignal {
    #[prost(string, tag = "1")]
    pub to_user_id: String,
    #[prost(string, tag = "2")]
    pub to_device_id: String,
    #[prost(oneof = "media_signal::Kind", tags = "3, 4, 5")]
    pub kind: Option<media_signal::Kind>,
}

pub mod media_signal {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(string, tag = "3")]
        Offer(String),
        #[prost(string, tag = "4")]
        Answer(String),
        #[prost(message, tag = "5")]
        Candidate(super::IceCandidate),
    }
}

/// RCall:Mute — the sender's microphone (`video` false) or camera (`video` true) is now
/// muted or not.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MuteState {
    #[prost(bool, tag = "1")]
    pub video: bool,
    #[prost(bool, tag = "2")]
    pub muted: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct IceCandidate {
    #[prost(string, tag = "1")]
    pub candidate: String,
    #[prost(string, optional, tag = "2")]
    pub sdp_mid: Option<String>,
    #[prost(uint32, optional, tag = "3")]
    pub sdp_m_line_index: Option<u32>,
}

impl CallContent {
    /// The IM object name matching the body (`None` for a content without body).
    pub fn object_name(&self) -> Option<&'static str> {
        use call_content::Body::*;
        Some(match self.body.as_ref()? {
            Invite(_) => object_name::INVITE,
            Ringing(_) => object_name::RINGING,
            Accept(_) => object_name::ACCEPT,
            Hangup(_) => object_name::HANGUP,
            ModifyMem(_) => object_name::MODIFY_MEM,
            ModifyMedia(_) => object_name::MODIFY_MEDIA,
            Media(_) => object_name::MEDIA,
            Mute(_) => object_name::MUTE,
        })
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        Self::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_agree() {
        let c = CallContent {
            platform: "Web".into(),
            device_id: "42_1700000000000".into(),
            call_id: "abc_1_2".into(),
            user: Some(UserProfile { name: Some("Ann".into()), ..Default::default() }),
            body: Some(call_content::Body::Hangup(Hangup { reason: 3 })),
        };
        let back = CallContent::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.object_name(), Some(object_name::HANGUP));
        assert!(CallContent::from_bytes(&[0xff, 0xff, 0xff]).is_err());
    }
}
