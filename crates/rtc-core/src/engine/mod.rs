//! placeholder
pub struct Engine;
pub struct EngineConfig;
pub enum Input {}
pub enum Output {}
