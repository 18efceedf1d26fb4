//! A `SendMessage` as the core reads it: borrowed from wherever it came from — prost's owned
//! struct ([`SendRef::of`]) or, on the server's hot path, straight from the client's frame
//! ([`SendRef::decode_frame`]), so routing a message copies none of its fields before encoding
//! the deliveries (prost's decoding allocated and copied every string and the content, ~2 k
//! instructions per message; BENCHMARKS.md, "Session 13").

use rtc_core::proto::{PushConfig, SendMessage};

/// The fields of a `SendMessage` the core routes by, borrowed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SendRef<'a> {
    pub request_id: u32,
    pub conversation_type: i32,
    pub target_id: &'a str,
    pub channel_id: &'a str,
    pub directional_user_ids: Vec<&'a str>,
    pub message_type: &'a str,
    pub content: &'a [u8],
    pub push: Option<&'a PushConfig>,
    pub no_receipt: bool,
    pub client_seq: u64,
}

impl<'a> SendRef<'a> {
    /// Borrows a decoded message.
    pub fn of(m: &'a SendMessage) -> Self {
        Self {
            request_id: m.request_id,
            conversation_type: m.conversation_type,
            target_id: &m.target_id,
            channel_id: &m.channel_id,
            directional_user_ids: m.directional_user_ids.iter().map(String::as_str).collect(),
            message_type: &m.message_type,
            content: &m.content,
            push: m.push.as_ref(),
            no_receipt: m.no_receipt,
            client_seq: m.client_seq,
        }
    }

    /// The message of an encoded `ClientFrame` whose body is a `Send`, in the canonical form
    /// prost writes (one body field, the message's fields once each in tag order, no push
    /// config, varints of at most 9 bytes), borrowed from `frame`. `None` for anything else —
    /// another body, a push config, an unusual or malformed encoding — which the caller decodes
    /// with prost: whatever this accepts, prost decodes to the same message.
    pub fn decode_frame(frame: &'a [u8]) -> Option<Self> {
        // `ClientFrame.body` = `Send` (field 2, length-delimited), the whole frame.
        let mut r = Reader(frame);
        if r.byte()? != 2 << 3 | 2 {
            return None;
        }
        let len = r.varint()?;
        if len != r.0.len() as u64 {
            return None;
        }
        let mut m = SendRef::default();
        let mut last = 0u8;
        while !r.0.is_empty() {
            let key = r.byte()?;
            let (tag, wire) = (key >> 3, key & 7);
            // In tag order, each once; only the recipients (5) repeat.
            if tag < last || (tag == last && tag != 5) {
                return None;
            }
            last = tag;
            match (tag, wire) {
                (1, 0) => m.request_id = r.varint()? as u32,
                (2, 0) => m.conversation_type = r.varint()? as i32,
                (3, 2) => m.target_id = r.str()?,
                (4, 2) => m.channel_id = r.str()?,
                (5, 2) => m.directional_user_ids.push(r.str()?),
                (6, 2) => m.message_type = r.str()?,
                (7, 2) => m.content = r.bytes()?,
                (9, 0) => m.no_receipt = r.varint()? != 0,
                (10, 0) => m.client_seq = r.varint()?,
                _ => return None, // a push config (8), an unknown field or a wrong wire type
            }
        }
        Some(m)
    }
}

/// The `seq` of an encoded `ClientFrame` whose body is an `Ack`, in the form prost writes
/// (the one field, a varint of at most 9 bytes, or none for 0); `None` for anything else, which
/// the caller decodes with prost. Acks are the most common frame after sends (one per burst of
/// deliveries), and prost's decoding of one cost ~370 instructions.
pub fn decode_ack_frame(frame: &[u8]) -> Option<u64> {
    // `ClientFrame.body` = `Ack` (field 3, length-delimited), the whole frame.
    let mut r = Reader(frame);
    if r.byte()? != 3 << 3 | 2 || r.varint()? != r.0.len() as u64 {
        return None;
    }
    if r.0.is_empty() {
        return Some(0);
    }
    // `Ack.seq` (field 1, varint), the whole message.
    let seq = if r.byte()? == 1 << 3 { r.varint()? } else { return None };
    r.0.is_empty().then_some(seq)
}

/// A cursor over protobuf bytes; every read is `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A varint of at most 9 bytes (up to 2^63 - 1): longer ones, which prost may reject, are
    /// left to prost.
    fn varint(&mut self) -> Option<u64> {
        // Tags' lengths, small ids: one byte.
        if let Some((&b, rest)) = self.0.split_first() {
            if b < 0x80 {
                self.0 = rest;
                return Some(u64::from(b));
            }
        }
        let mut x = 0u64;
        for i in 0..9 {
            let b = self.byte()?;
            x |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(b)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use rtc_core::proto::client_frame::Body;
    use rtc_core::proto::{Ack, ClientFrame};

    fn frame(m: &SendMessage) -> Vec<u8> {
        ClientFrame { body: Some(Body::Send(m.clone())) }.encode_to_vec()
    }

    fn full() -> SendMessage {
        SendMessage {
            request_id: u32::MAX,
            conversation_type: 3,
            target_id: "group-1".into(),
            channel_id: "ch".into(),
            directional_user_ids: vec!["a".into(), "".into(), "é".repeat(100)],
            message_type: "RC:VCInvite".into(),
            content: vec![7; 300],
            push: None,
            no_receipt: true,
            client_seq: (1 << 63) - 1,
        }
    }

    /// What prost makes of `bytes`, if it is a `Send`.
    fn prost_send(bytes: &[u8]) -> Option<SendMessage> {
        match ClientFrame::decode(bytes).ok()?.body? {
            Body::Send(m) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn decodes_what_prost_encodes_like_prost() {
        let mut cases = vec![full(), SendMessage::default()];
        for k in 0..10 {
            let mut m = full();
            match k {
                0 => m.request_id = 0,
                1 => m.conversation_type = 1,
                2 => m.target_id.clear(),
                3 => m.channel_id.clear(),
                4 => m.directional_user_ids.clear(),
                5 => m.message_type = "x".repeat(200),
                6 => m.content.clear(),
                7 => m.no_receipt = false,
                8 => m.client_seq = 0,
                _ => m.content = vec![0; 20_000],
            }
            cases.push(m);
        }
        for m in cases {
            let bytes = frame(&m);
            assert_eq!(SendRef::decode_frame(&bytes), Some(SendRef::of(&m)), "{m:?}");
        }
    }

    #[test]
    fn leaves_to_prost_what_it_does_not_read_itself() {
        let mut with_push = full();
        with_push.push = Some(PushConfig { push_title: "t".into(), ..Default::default() });
        let mut negative = full();
        negative.conversation_type = -1; // a 10-byte varint
        let mut huge_seq = full();
        huge_seq.client_seq = u64::MAX;
        let ack = ClientFrame { body: Some(Body::Ack(Ack { seq: 5 })) }.encode_to_vec();
        for bytes in [frame(&with_push), frame(&negative), frame(&huge_seq), ack, Vec::new()] {
            assert_eq!(SendRef::decode_frame(&bytes), None, "{bytes:?}");
        }
        // Fields out of order or repeated: prost takes the last value; left to it.
        let mut twice = frame(&SendMessage { request_id: 1, ..Default::default() });
        twice.extend_from_slice(&[0x08, 0x02]);
        twice[1] += 2;
        assert_eq!(prost_send(&twice).map(|m| m.request_id), Some(2));
        assert_eq!(SendRef::decode_frame(&twice), None);
    }

    #[test]
    fn decodes_acks_like_prost() {
        let ack = |seq| ClientFrame { body: Some(Body::Ack(Ack { seq })) }.encode_to_vec();
        for seq in [0, 1, 0x7F, 0x80, 1_765_000_000_000_123, (1 << 63) - 1] {
            assert_eq!(decode_ack_frame(&ack(seq)), Some(seq), "{seq}");
        }
        // Left to prost: a 10-byte varint, a Send, trailing or missing bytes, another field.
        let send = frame(&full());
        let mut long = ack(5);
        long.push(0);
        for b in [ack(u64::MAX), send, long, ack(5)[..3].to_vec(), vec![0x1A, 0x02, 0x10, 0x05], Vec::new()] {
            assert_eq!(decode_ack_frame(&b), None, "{b:?}");
        }
        // Every truncation and single-byte change: what is accepted is prost's `seq`.
        let bytes = ack(1_765_000_000_000_123);
        let mut accepted = 0;
        for i in 0..bytes.len() {
            for v in [0x00, 0x01, 0x08, 0x1A, 0x7F, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] = v;
                for b in [b.clone(), b[..i].to_vec()] {
                    if let Some(seq) = decode_ack_frame(&b) {
                        match ClientFrame::decode(&b[..]).map(|f| f.body) {
                            Ok(Some(Body::Ack(a))) => assert_eq!(a.seq, seq, "{b:?}"),
                            other => panic!("{b:?}: prost says {other:?}"),
                        }
                        accepted += 1;
                    }
                }
            }
        }
        assert!(accepted > 20, "{accepted}");
    }

    /// Every truncation and every single-byte change of a valid frame: what is accepted decodes
    /// exactly as prost decodes it (invalid UTF-8, lengths past the end, wrong wire types…).
    #[test]
    fn accepts_nothing_prost_would_decode_differently() {
        let mut m = full();
        m.content = vec![0x80, 0xFF, 0x12];
        let bytes = frame(&m);
        let mut variants: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for i in 0..bytes.len() {
            for v in [0x00, 0x01, 0x02, 0x07, 0x08, 0x12, 0x7F, 0x80, 0xC3, 0xFF] {
                let mut b = bytes.clone();
                b[i] = v;
                variants.push(b);
            }
        }
        let mut accepted = 0;
        for b in &variants {
            if let Some(ours) = SendRef::decode_frame(b) {
                let theirs = prost_send(b).unwrap_or_else(|| panic!("prost refuses {b:?}"));
                assert_eq!(ours, SendRef::of(&theirs), "{b:?}");
                accepted += 1;
            }
        }
        // The check above covered frames other than the original.
        assert!(accepted > 100, "{accepted}");
    }
}
