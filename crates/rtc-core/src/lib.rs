//! # rtc-core — rcall's call engine
//!
//! CallLib 5.X's call semantics as a sans-IO state machine, plus the signalling protocol
//! that both the browser SDK and the server speak. Nothing here does IO or reads a clock:
//! the browser shell (`rcall-sdk`) and native tests feed [`engine::Engine`] inputs — app
//! commands, received signals, media events, the current time — and drain its outputs:
//! signals to send, listener events, media actions and the next deadline.

pub mod engine;
pub mod link;
pub mod proto;
pub mod small_map;
pub mod text;
pub mod types;

pub use engine::{Engine, EngineConfig, Input, Output};
