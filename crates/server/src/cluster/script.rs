//! Lua scripts: how cluster mode makes a read-modify-write on Redis atomic across nodes (a
//! script runs alone on Redis). Sent by EVALSHA so only the hash travels per call; the text is
//! loaded again whenever Redis answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).

use redis::{Script, ScriptInvocation, ToRedisArgs};

/// A named Lua script (the name appears in errors and logs).
pub struct LuaScript {
    name: &'static str,
    script: Script,
}

impl LuaScript {
    pub fn new(name: &'static str, code: &str) -> Self {
        LuaScript {
            name,
            script: Script::new(code),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// SHA-1 of the code: what EVALSHA sends.
    pub fn hash(&self) -> &str {
        self.script.get_hash()
    }

    /// A call to fill with keys and arguments, then run with [`super::Bus::run`].
    pub fn call(&self) -> ScriptCall<'_> {
        ScriptCall {
            name: self.name,
            inv: self.script.prepare_invoke(),
        }
    }
}

/// One invocation of a [`LuaScript`]: `KEYS` and `ARGV` in the order added.
pub struct ScriptCall<'a> {
    name: &'static str,
    inv: ScriptInvocation<'a>,
}

impl<'a> ScriptCall<'a> {
    /// Adds a key (`KEYS[n]`). Keys of one call should share an app tag ([`super::keys`]), so
    /// the call stays legal on a Redis Cluster.
    pub fn key(mut self, key: impl ToRedisArgs) -> Self {
        self.inv.key(key);
        self
    }

    /// Adds an argument (`ARGV[n]`).
    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.inv.arg(arg);
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(super) fn invocation(&self) -> &ScriptInvocation<'a> {
        &self.inv
    }
}
