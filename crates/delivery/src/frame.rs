//! What the core queues to a connection, and the few encodings it needs to do that without
//! re-encoding a message per recipient.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{Delivered, ErrorFrame};

/// One item of a connection's outbox.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded `server_frame::Body` (one oneof field); the writer prepends `server_time`.
    /// `accepted` is when the core accepted the message ([`crate::Now::mono`]), for the
    /// latency histogram.
    Frame { body: Bytes, accepted: Option<Duration> },
    /// Written, then the connection is closed.
    Fatal(ErrorFrame),
    /// A frame that confirms something (a `SendResult`, `accepted_upto`): written only once
    /// the store has committed `ticket`, holding everything queued after it.
    Durable { body: Bytes, ticket: u64 },
    /// A WebSocket Ping (the connection has been silent).
    Ping,
}

impl Outgoing {
    /// `body` as a frame, or held until `ticket` is committed if it is not yet (`committed`).
    pub fn confirming(body: Bytes, ticket: u64, committed: u64) -> Self {
        if ticket > committed {
            Outgoing::Durable { body, ticket }
        } else {
            Outgoing::Frame { body, accepted: None }
        }
    }

    /// A frame that is not a routed message.
    pub fn frame(body: Bytes) -> Self {
        Outgoing::Frame { body, accepted: None }
    }
}

/// Encodes a frame body once so it can be queued to many connections.
pub fn encode_body(body: &Body) -> Bytes {
    // A `Vec` of the exact size: prost writes varints byte by byte, which is cheaper on a `Vec`
    // than on a `BytesMut`, and `Bytes::from` takes it without copying.
    let mut buf = Vec::with_capacity(body.encoded_len());
    body.encode(&mut buf);
    Bytes::from(buf)
}

/// Oneof tag of `ServerFrame.body` = `Deliver`.
const DELIVER_TAG: u32 = 3;

/// `Body::Deliver(d)` encoded by prost, and the offset of the `Delivered` bytes inside it: the
/// reference [`encode_delivered_ref`] is tested against.
#[cfg(test)]
pub(crate) fn encode_delivered(d: &Delivered) -> (Bytes, usize) {
    use prost::Message as _;
    let len = d.encoded_len();
    let prefix = 1 + prost::encoding::encoded_len_varint(len as u64);
    let mut buf = Vec::with_capacity(prefix + len);
    prost::encoding::encode_key(DELIVER_TAG, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(len as u64, &mut buf);
    d.encode_raw(&mut buf);
    (Bytes::from(buf), prefix)
}

/// A `Delivered` with borrowed strings and content: the template a message is fanned out with,
/// so routing copies nothing into owned `String`s before encoding it once per recipient.
/// Encodes to exactly prost's bytes for the same `Delivered` (tag order, proto3 defaults
/// skipped).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeliveredRef<'a> {
    pub seq: u64,
    pub message_uid: &'a str,
    pub sender_user_id: &'a str,
    pub sender_device_id: &'a str,
    pub conversation_type: i32,
    pub target_id: &'a str,
    pub channel_id: &'a str,
    pub message_type: &'a str,
    pub content: &'a [u8],
    pub sent_time: i64,
    pub offline: bool,
    pub sender_instance: u64,
    pub client_seq: u64,
}

impl<'a> DeliveredRef<'a> {
    pub fn of(d: &'a Delivered) -> Self {
        Self {
            seq: d.seq,
            message_uid: &d.message_uid,
            sender_user_id: &d.sender_user_id,
            sender_device_id: &d.sender_device_id,
            conversation_type: d.conversation_type,
            target_id: &d.target_id,
            channel_id: &d.channel_id,
            message_type: &d.message_type,
            content: &d.content,
            sent_time: d.sent_time,
            offline: d.offline,
            sender_instance: d.sender_instance,
            client_seq: d.client_seq,
        }
    }

    pub fn to_owned(self) -> Delivered {
        Delivered {
            seq: self.seq,
            message_uid: self.message_uid.to_owned(),
            sender_user_id: self.sender_user_id.to_owned(),
            sender_device_id: self.sender_device_id.to_owned(),
            conversation_type: self.conversation_type,
            target_id: self.target_id.to_owned(),
            channel_id: self.channel_id.to_owned(),
            message_type: self.message_type.to_owned(),
            content: self.content.to_vec(),
            sent_time: self.sent_time,
            offline: self.offline,
            sender_instance: self.sender_instance,
            client_seq: self.client_seq,
        }
    }

    fn encoded_len(&self) -> usize {
        // Every tag here is below 16: one key byte. `int32`/`int64` are varints of the
        // sign-extended value, as prost writes them.
        use prost::encoding::encoded_len_varint as vl;
        let v = |x: u64| if x == 0 { 0 } else { 1 + vl(x) };
        let b = |x: &[u8]| if x.is_empty() { 0 } else { 1 + vl(x.len() as u64) + x.len() };
        v(self.seq)
            + b(self.message_uid.as_bytes())
            + b(self.sender_user_id.as_bytes())
            + b(self.sender_device_id.as_bytes())
            + v(self.conversation_type as u64)
            + b(self.target_id.as_bytes())
            + b(self.channel_id.as_bytes())
            + b(self.message_type.as_bytes())
            + b(self.content)
            + v(self.sent_time as u64)
            + v(u64::from(self.offline))
            + v(self.sender_instance)
            + v(self.client_seq)
    }

    /// The fields in tag order, proto3 defaults skipped.
    fn encode_raw(&self, w: &mut Writer<'_>) {
        w.var(1, self.seq);
        w.bytes(2, self.message_uid.as_bytes());
        w.bytes(3, self.sender_user_id.as_bytes());
        w.bytes(4, self.sender_device_id.as_bytes());
        w.var(5, self.conversation_type as u64);
        w.bytes(6, self.target_id.as_bytes());
        w.bytes(7, self.channel_id.as_bytes());
        w.bytes(8, self.message_type.as_bytes());
        w.bytes(9, self.content);
        w.var(10, self.sent_time as u64);
        w.var(11, u64::from(self.offline));
        w.var(12, self.sender_instance);
        w.var(13, self.client_seq);
    }
}

/// Writes protobuf into a buffer sized beforehand (by the encoded length): a store and an index
/// bounds check per byte, where pushing onto a `Vec` also checked and updated its capacity and
/// length in memory (prost's `BufMut` path was slower still: ~47 instructions per varint).
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf[self.at] = b;
        self.at += 1;
    }

    /// A base-128 varint, as prost writes it.
    #[inline]
    fn varint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.byte((x as u8) | 0x80);
            x >>= 7;
        }
        self.byte(x as u8);
    }

    #[inline]
    fn slice(&mut self, x: &[u8]) {
        self.buf[self.at..self.at + x.len()].copy_from_slice(x);
        self.at += x.len();
    }

    /// A varint field (tags below 16: a one-byte key), absent when 0.
    #[inline]
    fn var(&mut self, tag: u8, x: u64) {
        if x != 0 {
            self.byte(tag << 3);
            self.varint(x);
        }
    }

    /// A length-delimited field, absent when empty.
    #[inline]
    fn bytes(&mut self, tag: u8, x: &[u8]) {
        if !x.is_empty() {
            self.byte(tag << 3 | 2);
            self.varint(x.len() as u64);
            self.slice(x);
        }
    }
}

/// A message of `len` bytes under a one-byte key (`ServerFrame.body`'s oneof tags are below
/// 16), written by `fill` into a buffer of exactly that size.
fn encode_body_with(tag: u32, len: usize, fill: impl FnOnce(&mut Writer<'_>)) -> Bytes {
    let prefix = 1 + prost::encoding::encoded_len_varint(len as u64);
    let mut buf = vec![0; prefix + len];
    let mut w = Writer { buf: &mut buf, at: 0 };
    w.byte((tag << 3 | 2) as u8);
    w.varint(len as u64);
    fill(&mut w);
    debug_assert_eq!(w.at, prefix + len);
    Bytes::from(buf)
}

/// `Body::Deliver` of a template, and the offset of the `Delivered` bytes inside it.
pub(crate) fn encode_delivered_ref(d: &DeliveredRef<'_>) -> (Bytes, usize) {
    let len = d.encoded_len();
    let prefix = 1 + prost::encoding::encoded_len_varint(len as u64);
    (encode_body_with(DELIVER_TAG, len, |w| d.encode_raw(w)), prefix)
}

/// Oneof tag of `ServerFrame.body` = `SendResult`.
const SEND_RESULT_TAG: u32 = 4;

/// `Body::SendResult` of an accepted message (code 0), as prost encodes it, from the borrowed
/// UID: one allocation where `SendResult` plus [`encode_body`] cost a copy of the UID and a
/// length pass (once per routed message that asks for a receipt).
pub fn encode_send_accepted(request_id: u32, sent_time: i64, message_uid: &str) -> Bytes {
    use prost::encoding::encoded_len_varint as vl;
    let v = |x: u64| if x == 0 { 0 } else { 1 + vl(x) };
    let uid = message_uid.as_bytes();
    let len = v(u64::from(request_id)) + v(sent_time as u64) + if uid.is_empty() { 0 } else { 1 + vl(uid.len() as u64) + uid.len() };
    encode_body_with(SEND_RESULT_TAG, len, |w| {
        w.var(1, u64::from(request_id));
        w.var(3, sent_time as u64);
        w.bytes(4, uid);
    })
}

/// A `Body::Deliver` from stored `Delivered` bytes.
pub(crate) fn deliver_body_from_payload(payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 6);
    prost::encoding::encode_key(DELIVER_TAG, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(payload.len() as u64, &mut buf);
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// The `Delivered` bytes inside an encoded `Body::Deliver`.
pub(crate) fn delivered_payload(body: &Bytes) -> Bytes {
    let mut rest = &body[1..];
    let before = rest.len();
    let len = prost::encoding::decode_varint(&mut rest).unwrap_or(0) as usize;
    let at = 1 + before - rest.len();
    body.slice(at..(at + len).min(body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_template_encodes_like_prost() {
        let full = Delivered {
            seq: 1_700_000_000_000_123,
            message_uid: "BTP6-KQ3E-7GO5-2RT9".into(),
            sender_user_id: "alice".into(),
            sender_device_id: "alice-dev".into(),
            conversation_type: 3,
            target_id: "group-1".into(),
            channel_id: "ch".into(),
            message_type: "RC:VCInvite".into(),
            content: vec![7; 300],
            sent_time: 1_765_000_000_000,
            offline: true,
            sender_instance: u64::MAX,
            client_seq: 42,
        };
        let mut cases = vec![full.clone(), Delivered::default()];
        // Each field alone at a default, and odd values (negative int32/int64, 1-byte lengths).
        for k in 0..13 {
            let mut d = full.clone();
            match k {
                0 => d.seq = 0,
                1 => d.message_uid.clear(),
                2 => d.sender_user_id.clear(),
                3 => d.sender_device_id.clear(),
                4 => d.conversation_type = -1,
                5 => d.target_id.clear(),
                6 => d.channel_id.clear(),
                7 => d.message_type = "x".repeat(200),
                8 => d.content.clear(),
                9 => d.sent_time = -5,
                10 => d.offline = false,
                11 => d.sender_instance = 0,
                _ => d.client_seq = 0,
            }
            cases.push(d);
        }
        for d in cases {
            let r = DeliveredRef::of(&d);
            assert_eq!(encode_delivered_ref(&r), encode_delivered(&d), "{d:?}");
            assert_eq!(r.to_owned(), d);
        }
    }

    #[test]
    fn an_accepted_send_result_encodes_like_prost() {
        use rtc_core::proto::SendResult;
        for (request_id, sent_time, uid) in
            [(7, 1_765_000_000_000, "BTP6-KQ3E-7GO5-2RT9"), (0, 0, ""), (u32::MAX, -5, "x"), (1, i64::MAX, &*"u".repeat(200))]
        {
            let prost = encode_body(&Body::SendResult(SendResult { request_id, code: 0, sent_time, message_uid: uid.into() }));
            assert_eq!(encode_send_accepted(request_id, sent_time, uid), prost, "{request_id} {sent_time} {uid}");
        }
    }

    #[test]
    fn varints_encode_like_prost() {
        let mut values = vec![0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, u64::MAX, u64::MAX >> 1, (-1i64) as u64, (-5i32) as i64 as u64];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((1..64).map(|b| (1u64 << b) - 1));
        for x in values {
            let (mut ours, mut theirs) = (vec![0; 10], Vec::new());
            let mut w = Writer { buf: &mut ours, at: 0 };
            w.varint(x);
            let n = w.at;
            ours.truncate(n);
            prost::encoding::encode_varint(x, &mut theirs);
            assert_eq!(ours, theirs, "{x}");
        }
    }

    #[test]
    fn deliver_body_round_trips() {
        let d = Delivered { seq: 42, message_uid: "U".into(), content: vec![1; 300], offline: true, ..Default::default() };
        let (body, at) = encode_delivered(&d);
        let rebuilt = deliver_body_from_payload(&body[at..]);
        assert_eq!(body, rebuilt);
        assert_eq!(delivered_payload(&body), body.slice(at..));
        assert_eq!(encode_body(&Body::Deliver(d.clone())), body);
        // The writer's framing equals prost's encoding of the whole ServerFrame.
        let frame = rtc_core::proto::ServerFrame::new(7, Body::Deliver(d));
        let mut manual = vec![0x08, 7];
        manual.extend_from_slice(&body);
        assert_eq!(frame.to_bytes(), manual);
    }
}
