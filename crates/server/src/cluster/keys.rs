//! Names of Redis keys and pub/sub channels.
//!
//! Every key that belongs to an app carries the app in a **hash tag**: `rcall:{<app>}:<kind>:…`.
//! Redis Cluster hashes only the part between the first `{` and the next `}` of a key, so all
//! of one app's keys land in one slot. That keeps a Lua script over several of an app's keys
//! legal on a cluster (a script must not touch keys of different slots) and lets a cluster
//! spread apps over shards later; a single Redis ignores the braces. Apps never share a key
//! (tenant isolation holds in Redis as in memory).
//!
//! Components that come from outside (app keys, user ids) are escaped — `%`, `{`, `}` and `:`
//! become `%25`, `%7B`, `%7D`, `%3A` — so a user id cannot close the tag early, move a key to
//! another app's slot, or forge another key's name.

use std::borrow::Cow;

use super::NodeId;

/// First segment of every name rcall uses, so it can share a Redis with other software.
pub const PREFIX: &str = "rcall";

/// Key kind of a user's last issued sequence number ([`user_seq`]).
pub const KIND_SEQ: &str = "seq";
/// Channel kind of an app's own pub/sub channels ([`app_channel`]).
pub const KIND_CHANNEL: &str = "ch";

/// `s` with the characters that carry structure in a key escaped (see the module docs).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '{', '}', ':']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The app's hash tag, braces included: `{<escaped app>}`.
pub fn app_tag(app: &str) -> String {
    format!("{{{}}}", escape(app))
}

/// An app's key: `rcall:{<app>}:<kind>:<part>:<part>…` with every part escaped. `kind` is one
/// of this module's `KIND_*` constants (never user input).
pub fn app_key(app: &str, kind: &str, parts: &[&str]) -> String {
    debug_assert!(!kind.is_empty() && !kind.contains(['%', '{', '}', ':']));
    let mut k = format!("{PREFIX}:{}:{kind}", app_tag(app));
    for p in parts {
        k.push(':');
        k.push_str(&escape(p));
    }
    k
}

/// The key holding `user`'s last issued sequence number in `app` ([`super::Bus::next_seq`]).
pub fn user_seq(app: &str, user: &str) -> String {
    app_key(app, KIND_SEQ, &[user])
}

/// A pub/sub channel of `app` (tagged like its keys, so sharded pub/sub can follow the app).
pub fn app_channel(app: &str, name: &str) -> String {
    app_key(app, KIND_CHANNEL, &[name])
}

/// The channel addressed to one node (a node serves every app, so it has no app tag).
pub fn node_channel(node: &NodeId) -> String {
    format!("{PREFIX}:node:{node}")
}

/// The part of `key` that Redis Cluster hashes: the text between the first `{` and the next
/// `}` if that is non-empty, else the whole key (Redis's own rule).
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The Redis Cluster slot of `key`: CRC16/XMODEM of its [`hash_tag`], mod 16384.
pub fn slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in hash_tag(key).as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("{foo}bar"), slot("foo"));
        assert_eq!(hash_tag("a{}b"), "a{}b");
        assert_eq!(hash_tag("a{x}{y}"), "x");
    }

    #[test]
    fn keys_carry_the_escaped_app_tag() {
        assert_eq!(user_seq("app", "alice"), "rcall:{app}:seq:alice");
        assert_eq!(app_channel("app", "x"), "rcall:{app}:ch:x");
        let k = user_seq("a}b{c", "u:1}%");
        assert_eq!(k, "rcall:{a%7Db%7Bc}:seq:u%3A1%7D%25");
        assert_eq!(hash_tag(&k), "a%7Db%7Bc");
        // A user id cannot forge another user's key.
        assert_ne!(
            user_seq("app", "a:b"),
            app_key("app", KIND_SEQ, &["a", "b"])
        );
    }
}
