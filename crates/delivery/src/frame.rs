//! What the core queues to a connection, and the few encodings it needs to do that without
//! re-encoding a message per recipient.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message as _;
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

/// `Body::Deliver(d)` encoded, and the offset of the `Delivered` bytes inside it.
pub(crate) fn encode_delivered(d: &Delivered) -> (Bytes, usize) {
    let len = d.encoded_len();
    let prefix = 1 + prost::encoding::encoded_len_varint(len as u64);
    let mut buf = Vec::with_capacity(prefix + len);
    prost::encoding::encode_key(DELIVER_TAG, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(len as u64, &mut buf);
    d.encode_raw(&mut buf);
    (Bytes::from(buf), prefix)
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
