//! The server's WebSocket frame decoder (`rcall_server::socket::Decoder`) on arbitrary client
//! bytes. The first byte picks the size of the chunks the rest arrives in (1–256 bytes) and
//! the second the message limit. Checks: no panic; the same messages (and the same error, if
//! any) whether the bytes arrive at once or in chunks; no message over the limit; and the
//! decoder never holds a buffer past what it was given (it needs no more than the input).

use bytes::BytesMut;
use rcall_server::socket::{Decoder, Error, Message};

fn decode(max: usize, chunks: &mut dyn Iterator<Item = &[u8]>) -> (Vec<Message>, Option<String>) {
    let mut d = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(kind(&e))),
            }
        }
    }
    (out, None)
}

fn kind(e: &Error) -> String {
    e.to_string()
}

pub fn run(data: &[u8]) {
    let [step, limit, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*step) + 1;
    let max = usize::from(*limit) * 64;
    let whole = decode(max, &mut std::iter::once(rest));
    let chunked = decode(max, &mut rest.chunks(step));
    assert_eq!(whole, chunked, "chunking changed the result");
    for m in &whole.0 {
        let len = match m {
            Message::Binary(b) | Message::Text(b) => b.len(),
            Message::Ping(b) | Message::Pong(b) => {
                assert!(b.len() <= 125);
                b.len()
            }
            Message::Close(_) => 0,
        };
        assert!(len <= max, "message of {len} bytes over the limit {max}");
    }
}
