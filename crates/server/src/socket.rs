//! The WebSocket transport of `GET /ws` (RFC 6455, server side): the HTTP/1.1 upgrade
//! ([`Upgrade`]), the frame decoder ([`Decoder`], sans-IO) and the socket ([`WebSocket`]).
//!
//! Our own rather than a crate's, for the cost per routed message and per idle connection
//! (issue 15): tungstenite (axum's `ws`) zero-fills its read buffer per read, parses a frame
//! header up to three times and copies every outgoing frame twice; tokio-websockets and
//! fastwebsockets, the faster crates, keep a fixed 8 KB read buffer per connection, twice an
//! idle connection's whole budget (≤ 4 KB), and fastwebsockets reads through an `async fn`
//! the connection loop cannot poll beside its outbox.
//!
//! - Reads go into a buffer held only while bytes are pending: an idle connection holds none.
//!   A connection with nothing pending reads into its thread's spare buffer ([`SPARE`]) and
//!   gives it back once every byte is decoded, so a read of whole frames (most reads) costs no
//!   allocation. Nothing is zero-filled, and each frame header is parsed once.
//! - A frame over the limit is refused from its header, before its payload is buffered, and
//!   the socket stays writable, so the server can say why ([`Error::TooLarge`]).
//! - Frames are written into one per-connection buffer, header and payload parts in one copy
//!   ([`WebSocket::feed_parts`]), handed to the socket at [`WRITE_CHUNK`] and at each flush;
//!   the buffer is released after a flush when it grew past [`WRITE_KEEP`].
//! - Pings are answered and a peer's close is echoed by the socket itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::listener::GuardedIo;

/// Smallest read: a few signalling frames (most are a few hundred bytes).
const READ_CHUNK: usize = 1024;

thread_local! {
    /// The read buffer lent to whichever connection of this thread reads with nothing pending:
    /// taken before the read, given back as soon as all it holds is decoded (it stays with the
    /// connection only while a frame is incomplete or more frames are buffered). One per worker
    /// thread, so its size (at most the largest frame allowed) does not count per connection.
    static SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}
/// Queued frames are handed to the socket whenever this much is buffered (and at each flush).
pub const WRITE_CHUNK: usize = 16 * 1024;
/// A write buffer larger than this after a flush is released (bursts do not stay resident).
pub const WRITE_KEEP: usize = 2 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes the socket sends by itself when it fails the connection.
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;

/// One complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Binary(Bytes),
    /// Valid UTF-8 (checked).
    Text(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The close code, if the frame had one (the reason is not kept).
    Close(Option<u16>),
}

/// Why reading (or writing) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("WebSocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("invalid UTF-8 in a text or close frame")]
    Utf8,
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("the connection is closing")]
    Closed,
}

impl Error {
    /// The close code the socket answers this read error with itself (`None`: it leaves the
    /// close to the server, which may explain first).
    fn close_code(&self) -> Option<u16> {
        match self {
            Error::Protocol(_) => Some(CLOSE_PROTOCOL),
            Error::Utf8 => Some(CLOSE_INVALID_DATA),
            _ => None,
        }
    }
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    len: usize,
    /// Header bytes, mask included.
    size: usize,
    mask: [u8; 4],
}

/// Parses the header at the start of `buf` (`None`: incomplete), checking everything the
/// header alone decides: reserved bits, opcode, masking, control frame rules, the size limit.
fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, Error> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(Error::Protocol("reserved bits set without an extension"));
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(Error::Protocol("fragmented control frame"));
            }
            if b1 & 0x7F > 125 {
                return Err(Error::Protocol("control frame longer than 125 bytes"));
            }
        }
        _ => return Err(Error::Protocol("unknown opcode")),
    }
    // RFC 6455 5.1: a server MUST close the connection on an unmasked client frame.
    if b1 & 0x80 == 0 {
        return Err(Error::Protocol("unmasked client frame"));
    }
    let (len, ext) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(Error::Protocol("payload length with its top bit set"));
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    if len > max as u64 {
        return Err(Error::TooLarge { len, max });
    }
    let size = 2 + ext + 4;
    let Some(mask) = buf.get(size - 4..size) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        len: len as usize,
        size,
        mask: mask.try_into().expect("4 bytes"),
    }))
}

/// XORs `data` with the client's mask (8 bytes at a time: this runs on every payload byte).
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Decodes client frames into messages (sans-IO): masking, fragmentation, control frames,
/// UTF-8 of text and close frames, and the size limit of a message.
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    /// A fragmented message being assembled: its opcode and payload so far.
    partial: Option<(u8, Vec<u8>)>,
    /// Bytes the frame at the front of the buffer still lacks (0: unknown).
    need: usize,
}

impl Decoder {
    /// A decoder refusing messages longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            partial: None,
            need: 0,
        }
    }

    /// Changes the size limit (e.g. once the client authenticated).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Takes the next complete message off the front of `buf`; `Ok(None)` when more bytes are
    /// needed. After an error the stream is broken: do not call again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, Error> {
        loop {
            let Some(h) = parse_header(buf, self.max)? else {
                self.need = 0;
                return Ok(None);
            };
            let data = h.opcode & 0x8 == 0;
            if data {
                match (&self.partial, h.opcode) {
                    (None, OP_CONTINUATION) => {
                        return Err(Error::Protocol("continuation frame without a message"))
                    }
                    (Some(_), OP_TEXT | OP_BINARY) => {
                        return Err(Error::Protocol("new message inside a fragmented one"))
                    }
                    (Some((_, p)), _) if p.len() + h.len > self.max => {
                        return Err(Error::TooLarge {
                            len: (p.len() + h.len) as u64,
                            max: self.max,
                        })
                    }
                    _ => {}
                }
            }
            let end = h.size + h.len;
            if buf.len() < end {
                self.need = end - buf.len();
                return Ok(None);
            }
            self.need = 0;
            unmask(&mut buf[h.size..end], h.mask);
            let payload = &buf[h.size..end];
            let msg = match h.opcode {
                OP_PING => Some(Message::Ping(Bytes::copy_from_slice(payload))),
                OP_PONG => Some(Message::Pong(Bytes::copy_from_slice(payload))),
                OP_CLOSE => Some(Message::Close(close_code(payload)?)),
                OP_CONTINUATION => {
                    let (op, mut p) = self.partial.take().expect("checked above");
                    p.extend_from_slice(payload);
                    if h.fin {
                        Some(data_message(op, Bytes::from(p))?)
                    } else {
                        self.partial = Some((op, p));
                        None
                    }
                }
                op if h.fin => Some(data_message(op, Bytes::copy_from_slice(payload))?),
                op => {
                    self.partial = Some((op, payload.to_vec()));
                    None
                }
            };
            buf.advance(end);
            if let Some(msg) = msg {
                return Ok(Some(msg));
            }
        }
    }

    /// Bytes the buffer should have room for before the next read.
    fn read_size(&self) -> usize {
        self.need.max(READ_CHUNK)
    }
}

fn data_message(opcode: u8, payload: Bytes) -> Result<Message, Error> {
    if opcode == OP_TEXT {
        std::str::from_utf8(&payload).map_err(|_| Error::Utf8)?;
        Ok(Message::Text(payload))
    } else {
        Ok(Message::Binary(payload))
    }
}

/// The code of a close frame's payload, checked (RFC 6455 7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, Error> {
    match payload {
        [] => Ok(None),
        [_] => Err(Error::Protocol("close frame of one byte")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(Error::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| Error::Utf8)?;
            Ok(Some(code))
        }
    }
}

/// Appends a server (unmasked) frame made of `parts` to `out`.
fn encode_frame(out: &mut Vec<u8>, opcode: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(10 + len);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The stream under an upgraded connection: the listener's own, taken back from hyper, so each
/// read and write skips hyper's boxed `Upgraded` and its two adapters; hyper's if the
/// connection was served over another stream type.
pub enum Io {
    Direct(GuardedIo),
    Upgraded(TokioIo<Upgraded>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(io).poll_read(cx, buf),
            Io::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(io).poll_write(cx, buf),
            Io::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(io).poll_flush(cx),
            Io::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(io).poll_shutdown(cx),
            Io::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// An upgraded WebSocket: a `Stream` of client messages and a `Sink` of server messages.
pub struct WebSocket<S = Io> {
    io: S,
    decoder: Decoder,
    /// Bytes read and not decoded yet; unallocated while empty and waiting.
    rbuf: BytesMut,
    /// Encoded frames not written yet, from `written` on.
    wbuf: Vec<u8>,
    written: usize,
    /// A close frame is queued: no more data frames.
    close_sent: bool,
    /// Reading ended (the peer's close, EOF, a read error): the stream is over.
    read_done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// The socket over an upgraded connection, refusing client messages over `max` bytes.
    pub fn new(io: S, max: usize) -> Self {
        Self {
            io,
            decoder: Decoder::new(max),
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            written: 0,
            close_sent: false,
            read_done: false,
        }
    }

    /// Changes the size limit of client messages.
    pub fn set_max_message(&mut self, max: usize) {
        self.decoder.set_max(max);
    }

    /// Queues a binary message made of `parts` (one copy, into the write buffer), after
    /// handing the buffer to the socket if it is full.
    pub async fn feed_parts(&mut self, parts: &[&[u8]]) -> Result<(), Error> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_ready(cx)).await?;
        self.queue(OP_BINARY, parts)
    }

    fn queue(&mut self, opcode: u8, parts: &[&[u8]]) -> Result<(), Error> {
        if self.close_sent {
            return Err(Error::Closed);
        }
        if opcode == OP_CLOSE {
            self.close_sent = true;
        }
        encode_frame(&mut self.wbuf, opcode, parts);
        Ok(())
    }

    /// Writes the write buffer out.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.written < self.wbuf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.written = 0;
        if self.wbuf.capacity() > WRITE_KEEP {
            self.wbuf = Vec::new();
        } else {
            self.wbuf.clear();
        }
        Poll::Ready(Ok(()))
    }

    /// Gives an emptied read buffer back to the thread's [`SPARE`]: nothing is pending, and a
    /// connection waiting with nothing pending holds no read buffer.
    fn release_rbuf(&mut self) {
        if self.rbuf.is_empty() {
            let mut buf = std::mem::take(&mut self.rbuf);
            // Rewinds the (unshared) buffer to its start; false when it has no room to lend.
            if buf.try_reclaim(READ_CHUNK) {
                SPARE.with(|s| s.set(buf));
            }
        }
    }

    /// Resolves once the peer is gone — EOF, a read error, or a close frame among what it
    /// sent — without taking a message off the stream: what is read stays buffered for it.
    /// For a phase in which the server reads nothing (a cluster login waiting on Redis), so
    /// the work of a client that gave up can be dropped. Reads at most `limit` bytes ahead;
    /// past that it never resolves (the phase ends by itself).
    pub async fn peer_gone(&mut self, limit: usize) {
        std::future::poll_fn(|cx| self.poll_peer_gone(cx, limit)).await
    }

    fn poll_peer_gone(&mut self, cx: &mut Context<'_>, limit: usize) -> Poll<()> {
        loop {
            if self.read_done || self.close_buffered() {
                return Poll::Ready(());
            }
            if self.rbuf.len() >= limit {
                return Poll::Pending;
            }
            self.rbuf.reserve(READ_CHUNK.min(limit - self.rbuf.len()));
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.read_done = true;
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => {
                    if self.rbuf.is_empty() {
                        self.rbuf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Whether the bytes buffered hold a close frame, or a frame the decoder will fail on
    /// (either way the connection is over). Walks the frame headers only.
    fn close_buffered(&self) -> bool {
        let mut at = 0usize;
        loop {
            match parse_header(&self.rbuf[at..], usize::MAX) {
                Ok(None) => return false,
                Err(_) => return true,
                Ok(Some(h)) if h.opcode == OP_CLOSE => return true,
                Ok(Some(h)) => match at.checked_add(h.size).and_then(|a| a.checked_add(h.len)) {
                    Some(next) if next < self.rbuf.len() => at = next,
                    _ => return false,
                },
            }
        }
    }

    /// Answers the pings already buffered behind frames not decoded yet, and writes what is
    /// queued: for a connection its rate limiter paused (reading nothing, so TCP pushes back),
    /// whose client's pings would otherwise wait for every frame before them to be read at
    /// the paced rate, and a client checking liveness would reconnect needlessly. Looks only
    /// at complete frames in the buffer (reads nothing): a ping's bytes are taken out, every
    /// other frame stays for [`Stream::poll_next`], which answers a malformed one.
    pub fn poll_buffered_pings(&mut self, cx: &mut Context<'_>) {
        let mut at = 0;
        while let Ok(Some(h)) = parse_header(&self.rbuf[at..], self.decoder.max) {
            let end = at + h.size + h.len;
            if self.rbuf.len() < end {
                break;
            }
            if h.opcode != OP_PING {
                at = end;
                continue;
            }
            let mut payload = self.rbuf[at + h.size..end].to_vec();
            unmask(&mut payload, h.mask);
            let rest = self.rbuf.split_off(end);
            self.rbuf.truncate(at);
            self.rbuf.unsplit(rest);
            if self.queue(OP_PONG, &[&payload]).is_err() {
                break;
            }
        }
        if self.written < self.wbuf.len() {
            let _ = self.poll_write_out(cx);
        }
    }

    /// A read error: answer it with a close where the socket decides the code.
    fn fail_read(&mut self, e: &Error) {
        self.read_done = true;
        if let Some(code) = e.close_code() {
            let _ = self.queue(OP_CLOSE, &[&code.to_be_bytes()]);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.read_done {
            return Poll::Ready(None);
        }
        // Pongs and close echoes queued by earlier reads go out without waiting for a write.
        if this.written < this.wbuf.len() {
            let _ = this.poll_write_out(cx);
        }
        loop {
            match this.decoder.decode(&mut this.rbuf) {
                Ok(Some(msg)) => {
                    match &msg {
                        Message::Ping(p) => {
                            let _ = this.queue(OP_PONG, &[p]);
                            let _ = this.poll_write_out(cx);
                        }
                        Message::Close(code) => {
                            this.read_done = true;
                            let code = code.map(u16::to_be_bytes);
                            let _ = this.queue(OP_CLOSE, &[code.as_ref().map_or(&[][..], |c| c)]);
                            let _ = this.poll_write_out(cx);
                        }
                        _ => {}
                    }
                    this.release_rbuf();
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) => {}
                Err(e) => {
                    this.fail_read(&e);
                    let _ = this.poll_write_out(cx);
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let want = this.decoder.read_size();
            if this.rbuf.capacity() == 0 {
                this.rbuf = SPARE.with(std::cell::Cell::take);
            }
            if this.rbuf.capacity() - this.rbuf.len() < want {
                this.rbuf.reserve(want);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.rbuf) {
                Poll::Ready(Ok(0)) => {
                    this.read_done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.read_done = true;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
                Poll::Pending => {
                    // Waiting with nothing buffered: hold no memory meanwhile.
                    this.release_rbuf();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.wbuf.len() - this.written >= WRITE_CHUNK {
            this.poll_write_out(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), Error> {
        let this = self.get_mut();
        match msg {
            Message::Binary(b) => this.queue(OP_BINARY, &[&b]),
            Message::Text(b) => this.queue(OP_TEXT, &[&b]),
            Message::Ping(b) => this.queue(OP_PING, &[&b]),
            Message::Pong(b) => this.queue(OP_PONG, &[&b]),
            // A second close (the peer's echoed, or the socket's own) is dropped.
            Message::Close(_) if this.close_sent => Ok(()),
            Message::Close(code) => {
                let code = code.map(u16::to_be_bytes);
                this.queue(OP_CLOSE, &[code.as_ref().map_or(&[][..], |c| c)])
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx).map_err(Error::Io)
    }

    /// Sends a close frame (unless one was sent), flushes and shuts the write side down; does
    /// not wait for the peer's close.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.queue(OP_CLOSE, &[])?;
        }
        std::task::ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx).map_err(Error::Io)
    }
}

/// The accept key of the handshake (RFC 6455 4.2.2).
fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// A WebSocket upgrade request (extractor): checked like axum's `WebSocketUpgrade`.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<St: Send + Sync> FromRequestParts<St> for Upgrade {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let bad = |why| Err((StatusCode::BAD_REQUEST, why));
        if parts.method != Method::GET {
            return Err((StatusCode::METHOD_NOT_ALLOWED, "WebSocket upgrades use GET"));
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return bad("Connection header did not include 'upgrade'");
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return bad("Upgrade header did not include 'websocket'");
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            != Some(b"13")
        {
            return bad("Sec-WebSocket-Version header did not include '13'");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return bad("Sec-WebSocket-Key header missing");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err((
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            ));
        };
        Ok(Self { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and runs `serve` on the socket once the connection switched (in a task of
    /// its own), with client messages limited to `max` bytes.
    pub fn on_upgrade<F, Fut>(self, max: usize, serve: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accept = accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = match upgraded.downcast::<TokioIo<GuardedIo>>() {
                        Ok(parts) => {
                            let mut ws = WebSocket::new(Io::Direct(parts.io.into_inner()), max);
                            // Bytes the client sent right behind its request, read by hyper.
                            ws.rbuf.extend_from_slice(&parts.read_buf);
                            ws
                        }
                        Err(upgraded) => WebSocket::new(Io::Upgraded(TokioIo::new(upgraded)), max),
                    };
                    serve(ws).await
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: masked, as browsers send them.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        encode_frame(&mut f, opcode, &[payload]);
        if !fin {
            f[0] &= 0x7F;
        }
        f[1] |= 0x80;
        let at = f.len() - payload.len();
        f.splice(at..at, MASK);
        unmask(&mut f[at + 4..], MASK);
        f
    }

    fn decode_all(max: usize, bytes: &[u8]) -> Result<Vec<Message>, Error> {
        let mut d = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn frames_decode_the_same_however_the_bytes_arrive() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = client_frame(true, OP_BINARY, &payload);
        bytes.extend(client_frame(true, OP_BINARY, b"abc"));
        bytes.extend(client_frame(true, OP_BINARY, &vec![9u8; 70_000]));
        for step in [1, 3, 7, 1000] {
            let mut d = Decoder::new(100_000);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Some(m) = d.decode(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(
                got,
                vec![
                    Message::Binary(payload.clone().into()),
                    Message::Binary(Bytes::from_static(b"abc")),
                    Message::Binary(vec![9u8; 70_000].into()),
                ],
                "step {step}"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn unmasked_reserved_and_unknown_frames_are_protocol_errors() {
        let mut unmasked = Vec::new();
        encode_frame(&mut unmasked, OP_BINARY, &[b"hi"]);
        let mut rsv = client_frame(true, OP_BINARY, b"hi");
        rsv[0] |= 0x40;
        let mut unknown = client_frame(true, OP_BINARY, b"hi");
        unknown[0] = 0x83;
        let long_ping = client_frame(true, OP_PING, &[0u8; 126]);
        let fragmented_ping = client_frame(false, OP_PING, b"x");
        for bad in [unmasked, rsv, unknown, long_ping, fragmented_ping] {
            assert!(
                matches!(decode_all(1000, &bad), Err(Error::Protocol(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fragments_assemble_around_control_frames_and_misuse_is_refused() {
        let mut bytes = client_frame(false, OP_BINARY, b"ab");
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(false, OP_CONTINUATION, b"cd"));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"e"));
        assert_eq!(
            decode_all(1000, &bytes).unwrap(),
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Binary(Bytes::from_static(b"abcde")),
            ]
        );
        let orphan = client_frame(true, OP_CONTINUATION, b"x");
        assert!(matches!(decode_all(1000, &orphan), Err(Error::Protocol(_))));
        let mut nested = client_frame(false, OP_BINARY, b"a");
        nested.extend(client_frame(true, OP_BINARY, b"b"));
        assert!(matches!(decode_all(1000, &nested), Err(Error::Protocol(_))));
        // The limit holds for the whole message, not just each fragment.
        let mut big = client_frame(false, OP_BINARY, &[1u8; 600]);
        big.extend(client_frame(true, OP_CONTINUATION, &[1u8; 600]));
        assert!(matches!(
            decode_all(1000, &big),
            Err(Error::TooLarge {
                len: 1200,
                max: 1000
            })
        ));
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        let frame = client_frame(true, OP_BINARY, &[0u8; 5000]);
        // Only the 4-byte header (16-bit length): the payload never has to arrive.
        assert!(matches!(
            decode_all(4096, &frame[..4]),
            Err(Error::TooLarge {
                len: 5000,
                max: 4096
            })
        ));
    }

    #[test]
    fn text_and_close_frames_are_checked() {
        assert_eq!(
            decode_all(100, &client_frame(true, OP_TEXT, "héllo".as_bytes())).unwrap(),
            vec![Message::Text(Bytes::from("héllo"))]
        );
        assert!(matches!(
            decode_all(100, &client_frame(true, OP_TEXT, &[0xff, 0xfe])),
            Err(Error::Utf8)
        ));
        assert_eq!(
            decode_all(100, &client_frame(true, OP_CLOSE, &1000u16.to_be_bytes())).unwrap(),
            vec![Message::Close(Some(1000))]
        );
        assert_eq!(
            decode_all(100, &client_frame(true, OP_CLOSE, &[])).unwrap(),
            vec![Message::Close(None)]
        );
        for bad in [&[3u8][..], &1005u16.to_be_bytes(), &999u16.to_be_bytes()] {
            assert!(matches!(
                decode_all(100, &client_frame(true, OP_CLOSE, bad)),
                Err(Error::Protocol(_))
            ));
        }
    }

    /// Reads one server frame: (first byte, payload); server frames are never masked.
    async fn read_server_frame(peer: &mut tokio::io::DuplexStream) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        peer.read_exact(&mut h).await.unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] {
            126 => usize::from(peer.read_u16().await.unwrap()),
            127 => peer.read_u64().await.unwrap() as usize,
            n => usize::from(n),
        };
        let mut p = vec![0u8; len];
        peer.read_exact(&mut p).await.unwrap();
        (h[0], p)
    }

    #[tokio::test]
    async fn pings_are_answered_closes_echoed_and_idle_sockets_hold_no_read_buffer() {
        let (io, mut peer) = tokio::io::duplex(1 << 16);
        let mut ws = WebSocket::new(io, 1000);
        peer.write_all(&client_frame(true, OP_PING, b"n1"))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Ping(Bytes::from_static(b"n1"))
        );
        assert_eq!(
            read_server_frame(&mut peer).await,
            (0x80 | OP_PONG, b"n1".to_vec())
        );
        // Nothing more to read: waiting holds no buffer.
        assert!(futures::FutureExt::now_or_never(ws.next()).is_none());
        assert_eq!(ws.rbuf.capacity(), 0);

        let body = vec![5u8; 200];
        ws.feed_parts(&[b"\x08\x01", &body]).await.unwrap();
        ws.flush().await.unwrap();
        let (b0, p) = read_server_frame(&mut peer).await;
        assert_eq!(b0, 0x80 | OP_BINARY);
        assert_eq!(p[..2], *b"\x08\x01");
        assert_eq!(p[2..], body[..]);

        peer.write_all(&client_frame(true, OP_CLOSE, &1001u16.to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Close(Some(1001))
        );
        assert!(ws.next().await.is_none());
        assert_eq!(
            read_server_frame(&mut peer).await,
            (0x80 | OP_CLOSE, 1001u16.to_be_bytes().to_vec())
        );
        // The server's own close after the echo is not sent twice; data frames are refused.
        ws.send(Message::Close(Some(1000))).await.unwrap();
        assert!(matches!(
            ws.send(Message::Binary(Bytes::new())).await,
            Err(Error::Closed)
        ));
    }

    /// The thread's spare read buffer: its address, or `None` when it is lent out (or unset).
    fn spare_ptr() -> Option<*const u8> {
        SPARE.with(|s| {
            let b = s.take();
            let p = (b.capacity() > 0).then(|| b.as_ptr());
            s.set(b);
            p
        })
    }

    #[tokio::test]
    async fn sockets_of_one_thread_share_the_spare_read_buffer_but_never_pending_bytes() {
        let (io_a, mut peer_a) = tokio::io::duplex(1 << 16);
        let (io_b, mut peer_b) = tokio::io::duplex(1 << 16);
        let mut a = WebSocket::new(io_a, 1000);
        let mut b = WebSocket::new(io_b, 1000);
        // A reads two whole frames and waits: the buffer it read into is the thread's again.
        let mut two = client_frame(true, OP_BINARY, b"a1");
        two.extend(client_frame(true, OP_BINARY, b"a2"));
        peer_a.write_all(&two).await.unwrap();
        assert_eq!(
            a.next().await.unwrap().unwrap(),
            Message::Binary("a1".into())
        );
        assert_ne!(a.rbuf.capacity(), 0, "a2 is still buffered");
        assert_eq!(spare_ptr(), None, "lent to A while bytes are pending");
        assert_eq!(
            a.next().await.unwrap().unwrap(),
            Message::Binary("a2".into())
        );
        assert!(futures::FutureExt::now_or_never(a.next()).is_none());
        assert_eq!(a.rbuf.capacity(), 0);
        let spare = spare_ptr().expect("given back");
        // B reads a whole frame into that same buffer (no allocation of its own) ...
        peer_b
            .write_all(&client_frame(true, OP_BINARY, b"b1"))
            .await
            .unwrap();
        assert_eq!(
            b.next().await.unwrap().unwrap(),
            Message::Binary("b1".into())
        );
        assert!(futures::FutureExt::now_or_never(b.next()).is_none());
        assert_eq!(spare_ptr(), Some(spare));
        // ... while a connection holding half a frame keeps it: the other one reads elsewhere,
        // and neither sees the other's bytes.
        let a3 = client_frame(true, OP_BINARY, &[3u8; 300]);
        peer_a.write_all(&a3[..100]).await.unwrap();
        assert!(futures::FutureExt::now_or_never(a.next()).is_none());
        assert_eq!(a.rbuf.len(), 100);
        assert_eq!(spare_ptr(), None);
        peer_b
            .write_all(&client_frame(true, OP_BINARY, b"b2"))
            .await
            .unwrap();
        assert_eq!(
            b.next().await.unwrap().unwrap(),
            Message::Binary("b2".into())
        );
        peer_a.write_all(&a3[100..]).await.unwrap();
        assert_eq!(
            a.next().await.unwrap().unwrap(),
            Message::Binary(vec![3u8; 300].into())
        );
        assert!(futures::FutureExt::now_or_never(a.next()).is_none());
        assert!(futures::FutureExt::now_or_never(b.next()).is_none());
        assert_eq!((a.rbuf.capacity(), b.rbuf.capacity()), (0, 0));
    }

    /// A paused connection (nothing decoded) still answers the pings buffered behind data
    /// frames, at once; the data frames stay, in order, and the ping is not handed on again.
    #[tokio::test]
    async fn buffered_pings_are_answered_without_decoding_the_frames_before_them() {
        let (io, mut peer) = tokio::io::duplex(1 << 16);
        let mut ws = WebSocket::new(io, 1000);
        let mut flood = Vec::new();
        flood.extend(client_frame(true, OP_BINARY, b"one"));
        flood.extend(client_frame(false, OP_BINARY, b"tw"));
        flood.extend(client_frame(true, OP_PING, b"p1"));
        flood.extend(client_frame(true, OP_CONTINUATION, b"o"));
        flood.extend(client_frame(true, OP_PING, b"p2"));
        flood.extend(client_frame(true, OP_BINARY, b"three"));
        // A frame not complete yet: what follows it is not looked at.
        let last = client_frame(true, OP_PING, b"p3");
        flood.extend(&last[..3]);
        peer.write_all(&flood).await.unwrap();
        // The first frame is read and decoded (the connection then pauses).
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Binary(Bytes::from_static(b"one"))
        );
        std::future::poll_fn(|cx| {
            ws.poll_buffered_pings(cx);
            Poll::Ready(())
        })
        .await;
        assert_eq!(
            read_server_frame(&mut peer).await,
            (0x80 | OP_PONG, b"p1".to_vec())
        );
        assert_eq!(
            read_server_frame(&mut peer).await,
            (0x80 | OP_PONG, b"p2".to_vec())
        );
        peer.write_all(&last[3..]).await.unwrap();
        let mut rest = Vec::new();
        for _ in 0..3 {
            rest.push(ws.next().await.unwrap().unwrap());
        }
        assert_eq!(
            rest,
            [
                Message::Binary(Bytes::from_static(b"two")),
                Message::Binary(Bytes::from_static(b"three")),
                Message::Ping(Bytes::from_static(b"p3")),
            ]
        );
        assert_eq!(
            read_server_frame(&mut peer).await,
            (0x80 | OP_PONG, b"p3".to_vec())
        );
    }

    #[tokio::test]
    async fn after_an_oversized_frame_the_socket_still_writes_then_closes() {
        let (io, mut peer) = tokio::io::duplex(1 << 16);
        let mut ws = WebSocket::new(io, 100);
        peer.write_all(&client_frame(true, OP_BINARY, &[0u8; 101])[..4])
            .await
            .unwrap();
        assert!(matches!(
            ws.next().await,
            Some(Err(Error::TooLarge { len: 101, max: 100 }))
        ));
        assert!(ws.next().await.is_none());
        ws.send(Message::Binary(Bytes::from_static(b"why")))
            .await
            .unwrap();
        ws.send(Message::Close(Some(1009))).await.unwrap();
        ws.close().await.unwrap();
        assert_eq!(read_server_frame(&mut peer).await, (0x82, b"why".to_vec()));
        assert_eq!(
            read_server_frame(&mut peer).await,
            (0x88, 1009u16.to_be_bytes().to_vec())
        );
    }

    #[tokio::test]
    async fn a_protocol_error_is_answered_with_close_1002() {
        let (io, mut peer) = tokio::io::duplex(1 << 16);
        let mut ws = WebSocket::new(io, 100);
        let mut unmasked = Vec::new();
        encode_frame(&mut unmasked, OP_BINARY, &[b"hi"]);
        peer.write_all(&unmasked).await.unwrap();
        assert!(matches!(ws.next().await, Some(Err(Error::Protocol(_)))));
        assert_eq!(
            read_server_frame(&mut peer).await,
            (0x88, 1002u16.to_be_bytes().to_vec())
        );
    }
}
