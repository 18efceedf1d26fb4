//! Oneofs of messages (the server frame's and the call content's body) whose variants share one
//! decode loop.
//!
//! Why not `#[derive(prost::Oneof)]`: the derive decodes each variant through
//! `prost::encoding::message::merge::<Variant>`, one copy of prost's length-delimited loop (read
//! the length, then key after key until it is used up) per message type, ~400 B of wasm each,
//! 24 copies for these two oneofs alone. Here the loop is [`merge_message`], instantiated once
//! per buffer type, and only the per-field call ([`prost::Message::merge_field`]) is per type,
//! behind a `dyn FnMut`. Encoding is prost's own, as the derive's. The wire format is the
//! derive's (tests compare the two).

use prost::bytes::Buf;
use prost::encoding::{check_wire_type, decode_key, decode_varint, DecodeContext, WireType};
use prost::DecodeError;

/// Merges one field (tag, wire type) of a message from the buffer: `Message::merge_field`.
pub type MergeField<'a, B> = dyn FnMut(u32, WireType, &mut B, DecodeContext) -> Result<(), DecodeError> + 'a;

/// Decodes one length-delimited message field, handing each of its fields to `field`; what
/// prost's `message::merge` does, without being generic over the message.
///
/// prost's per-level recursion count is not decremented here (its API for that is
/// crate-private): the messages of these oneofs do not nest themselves, so the depth stays
/// bounded by the schema, and prost still counts every level below.
pub fn merge_message<B: Buf>(wire_type: WireType, buf: &mut B, ctx: DecodeContext, field: &mut MergeField<B>) -> Result<(), DecodeError> {
    check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = decode_varint(buf)?;
    let remaining = buf.remaining();
    if len > remaining as u64 {
        return Err(error("buffer underflow"));
    }
    let limit = remaining - len as usize;
    while buf.remaining() > limit {
        let (tag, wire_type) = decode_key(buf)?;
        field(tag, wire_type, buf, ctx.clone())?;
    }
    if buf.remaining() != limit {
        return Err(error("delimited length exceeded"));
    }
    Ok(())
}

/// A decode error with prost's text for the same failure (prost's error kinds are crate-private).
pub(crate) fn error(text: &'static str) -> DecodeError {
    #[allow(deprecated)]
    DecodeError::new(text)
}

/// An enum of message variants with the inherent `encode` / `merge` / `encoded_len` that
/// `#[prost(oneof = "...")]` on the parent message calls (as `#[derive(prost::Oneof)]` makes
/// them), decoding through [`merge_message`]. Variants are written `Name(Type) = tag`.
macro_rules! message_oneof {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $tag:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
        }

        impl $name {
            pub fn encode(&self, buf: &mut impl ::prost::bytes::BufMut) {
                match self {
                    $( Self::$variant(m) => ::prost::encoding::message::encode($tag, m, buf), )*
                }
            }

            pub fn merge(
                field: &mut ::core::option::Option<Self>,
                tag: u32,
                wire_type: ::prost::encoding::WireType,
                buf: &mut impl ::prost::bytes::Buf,
                ctx: ::prost::encoding::DecodeContext,
            ) -> ::core::result::Result<(), ::prost::DecodeError> {
                match tag {
                    $(
                        $tag => {
                            // As in prost, a variant other than the one held starts empty.
                            if !matches!(field, Some(Self::$variant(_))) {
                                *field = Some(Self::$variant(::core::default::Default::default()));
                            }
                            let Some(Self::$variant(m)) = field else { unreachable!() };
                            $crate::proto::oneof::merge_message(wire_type, buf, ctx, &mut |tag, wire_type, buf, ctx| {
                                ::prost::Message::merge_field(m, tag, wire_type, buf, ctx)
                            })
                        }
                    )*
                    // The parent calls this only for the tags it lists.
                    _ => ::prost::encoding::skip_field(wire_type, tag, buf, ctx),
                }
            }

            pub fn encoded_len(&self) -> usize {
                match self {
                    $( Self::$variant(m) => ::prost::encoding::message::encoded_len($tag, m), )*
                }
            }
        }
    };
}
pub(crate) use message_oneof;

#[cfg(test)]
mod tests {
    use prost::Message;

    use crate::proto::*;

    /// `CallContent` as prost derives it (its body a derived oneof): ours must match it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct DerivedContent {
        #[prost(string, tag = "1")]
        platform: String,
        #[prost(string, tag = "2")]
        device_id: String,
        #[prost(string, tag = "3")]
        call_id: String,
        #[prost(message, optional, tag = "4")]
        user: Option<UserProfile>,
        #[prost(oneof = "DerivedBody", tags = "10, 11, 12, 13, 14, 15, 16, 17")]
        body: Option<DerivedBody>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    enum DerivedBody {
        #[prost(message, tag = "10")]
        Invite(Invite),
        #[prost(message, tag = "11")]
        Ringing(Ringing),
        #[prost(message, tag = "12")]
        Accept(Accept),
        #[prost(message, tag = "13")]
        Hangup(Hangup),
        #[prost(message, tag = "14")]
        ModifyMem(ModifyMem),
        #[prost(message, tag = "15")]
        ModifyMedia(ModifyMedia),
        #[prost(message, tag = "16")]
        Media(MediaSignal),
        #[prost(message, tag = "17")]
        Mute(MuteState),
    }

    /// One of each variant, with fields set (the nested messages' own fields included).
    fn bodies() -> Vec<(call_content::Body, DerivedBody)> {
        let channel = Some(ChannelInfo { id: "c".into(), key: "k".into() });
        let invite = Invite {
            engine_type: 4,
            channel_info: channel.clone(),
            media_type: 2,
            invite_user_ids: vec!["a".into(), "b".into()],
            observer_user_ids: vec!["o".into()],
            extra: "x".into(),
        };
        let modify = ModifyMem {
            engine_type: 4,
            channel_info: channel,
            media_type: 1,
            invite_user_ids: vec!["c".into()],
            caller: "a".into(),
            ..Default::default()
        };
        let candidate = IceCandidate { candidate: "candidate:1".into(), sdp_mid: Some("0".into()), ..Default::default() };
        let media =
            MediaSignal { to_user_id: "b".into(), to_device_id: "b_1".into(), kind: Some(media_signal::Kind::Candidate(candidate)) };
        let mute = MuteState { video: true, muted: true };
        use call_content::Body as B;
        vec![
            (B::Invite(invite.clone()), DerivedBody::Invite(invite)),
            (B::Ringing(Ringing::default()), DerivedBody::Ringing(Ringing::default())),
            (B::Accept(Accept { media_type: 2 }), DerivedBody::Accept(Accept { media_type: 2 })),
            (B::Hangup(Hangup { reason: 3 }), DerivedBody::Hangup(Hangup { reason: 3 })),
            (B::ModifyMem(modify.clone()), DerivedBody::ModifyMem(modify)),
            (B::ModifyMedia(ModifyMedia { media_type: 1 }), DerivedBody::ModifyMedia(ModifyMedia { media_type: 1 })),
            (B::Media(media.clone()), DerivedBody::Media(media)),
            (B::Mute(mute.clone()), DerivedBody::Mute(mute)),
        ]
    }

    fn pair(body: call_content::Body, derived: DerivedBody) -> (CallContent, DerivedContent) {
        let user = Some(UserProfile { name: Some("Ann".into()), ..Default::default() });
        let ours =
            CallContent { platform: "Web".into(), device_id: "d".into(), call_id: "id".into(), user: user.clone(), body: Some(body) };
        let theirs = DerivedContent { platform: "Web".into(), device_id: "d".into(), call_id: "id".into(), user, body: Some(derived) };
        (ours, theirs)
    }

    #[test]
    fn every_variant_encodes_and_decodes_as_the_derive_does() {
        for (body, derived) in bodies() {
            let (ours, theirs) = pair(body, derived);
            let bytes = theirs.encode_to_vec();
            assert_eq!(ours.encode_to_vec(), bytes);
            assert_eq!(ours.encoded_len(), theirs.encoded_len());
            assert_eq!(CallContent::decode(bytes.as_slice()).unwrap(), ours);
        }
    }

    #[test]
    fn a_repeated_variant_merges_and_another_replaces_as_in_the_derive() {
        let all = bodies();
        for (a, b) in [(0, 0), (4, 4), (6, 6), (0, 3), (3, 0), (7, 6)] {
            let (ours_a, theirs_a) = pair(all[a].0.clone(), all[a].1.clone());
            let (_, theirs_b) = pair(all[b].0.clone(), all[b].1.clone());
            let mut bytes = theirs_a.encode_to_vec();
            bytes.extend(theirs_b.encode_to_vec());
            let derived = DerivedContent::decode(bytes.as_slice()).unwrap();
            let mut expected = ours_a;
            expected.body = CallContent::decode(derived.encode_to_vec().as_slice()).unwrap().body;
            let decoded = CallContent::decode(bytes.as_slice()).unwrap();
            assert_eq!(decoded, expected, "{a} then {b}");
            assert_eq!(decoded.encode_to_vec(), derived.encode_to_vec(), "{a} then {b}");
        }
    }

    #[test]
    fn malformed_bodies_fail_as_in_the_derive() {
        let (_, theirs) = pair(bodies().remove(0).0, bodies().remove(0).1);
        let good = theirs.encode_to_vec();
        let body_at = good.iter().position(|&b| b == (10 << 3 | 2)).unwrap();
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Cut anywhere inside the body.
        for cut in body_at + 1..good.len() {
            cases.push(good[..cut].to_vec());
        }
        // The body's length one short (its last field then runs past it) and one long.
        for delta in [-1i32, 1] {
            let mut b = good.clone();
            b[body_at + 1] = (b[body_at + 1] as i32 + delta) as u8;
            cases.push(b);
        }
        // The body as a varint, and a field of the body with a bad wire type.
        cases.push(vec![10 << 3, 1]);
        cases.push(vec![10 << 3 | 2, 2, 1 << 3 | 2, 0xff]);
        for bytes in cases {
            let theirs = DerivedContent::decode(bytes.as_slice());
            let ours = CallContent::decode(bytes.as_slice());
            assert_eq!(ours.is_err(), theirs.is_err(), "{bytes:?}");
            if let (Err(o), Err(t)) = (ours, theirs) {
                // prost's text, without the (message, field) path only the derive records.
                let strip = |e: prost::DecodeError| e.to_string().split(": ").last().unwrap().to_string();
                assert_eq!(strip(o), strip(t), "{bytes:?}");
            }
        }
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = [
            server_frame::Body::AuthResult(AuthResult { code: 0, user_id: "u".into(), accepted_upto: 3, ..Default::default() }),
            server_frame::Body::Deliver(Delivered { seq: 9, content: vec![1, 2], ..Default::default() }),
            server_frame::Body::SyncDone(SyncDone::default()),
            server_frame::Body::Kicked(Kicked { call_id: "c".into() }),
        ];
        for body in frames {
            let frame = ServerFrame { server_time: 5, body: Some(body) };
            assert_eq!(ServerFrame::decode(frame.encode_to_vec().as_slice()).unwrap(), frame);
        }
    }
}
