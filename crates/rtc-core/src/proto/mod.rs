//! The wire protocol, shared by the browser SDK and the server.
//!
//! Two layers, both protobuf (prost, hand-derived so no `protoc` is needed):
//! - [`envelope`]: client ↔ server frames over one binary WebSocket. The server routes
//!   opaque `content` bytes; it never needs to understand a call message.
//! - [`call`]: the content of the six CallLib call messages (`RC:VC*`) plus `RCall:Media`,
//!   our P2P media-negotiation message (SDP and ICE between two participants of one call).

pub mod call;
pub mod envelope;
mod oneof;

pub use call::*;
pub use envelope::*;

/// IM conversation types used by calls (RongIMLib `ConversationType`).
pub mod conversation_type {
    pub const PRIVATE: i32 = 1;
    pub const GROUP: i32 = 3;
}
