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

/// The characters of a key component that carry structure (see the module docs).
const SPECIAL: [char; 4] = ['%', '{', '}', ':'];

/// Whether `b` is (the byte of) one of [`SPECIAL`]: a byte scan, as every key of every routed
/// message goes through it (all four are ASCII, so no byte of a multi-byte character matches).
fn special(b: &u8) -> bool {
    matches!(b, b'%' | b'{' | b'}' | b':')
}

/// `s` with the characters that carry structure in a key escaped (see the module docs).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| special(&b)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(escaped_len(s));
    push_escaped(&mut out, s);
    Cow::Owned(out)
}

/// The length of [`escape`]`(s)`: each special character becomes three.
fn escaped_len(s: &str) -> usize {
    s.len() + 2 * s.bytes().filter(special).count()
}

/// Appends [`escape`]`(s)` to `out`.
fn push_escaped(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| special(&b)) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'%' => "%25",
            b'{' => "%7B",
            b'}' => "%7D",
            _ => "%3A",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// The app's hash tag, braces included: `{<escaped app>}`.
pub fn app_tag(app: &str) -> String {
    let mut t = String::with_capacity(escaped_len(app) + 2);
    t.push('{');
    push_escaped(&mut t, app);
    t.push('}');
    t
}

/// An app's key: `rcall:{<app>}:<kind>:<part>:<part>…` with every part escaped. `kind` is one
/// of this module's `KIND_*` constants (never user input).
///
/// Built in one allocation of the exact length: every routed message names a dozen keys, and
/// `format!` growing the string piece by piece was a quarter of a cluster node's instructions
/// per message (BENCHMARKS.md, "Session 13").
pub fn app_key(app: &str, kind: &str, parts: &[&str]) -> String {
    debug_assert!(!kind.is_empty() && !kind.contains(SPECIAL));
    let len = PREFIX.len()
        + escaped_len(app)
        + kind.len()
        + 4
        + parts.iter().map(|p| 1 + escaped_len(p)).sum::<usize>();
    let mut k = String::with_capacity(len);
    k.push_str(PREFIX);
    k.push_str(":{");
    push_escaped(&mut k, app);
    k.push_str("}:");
    k.push_str(kind);
    for p in parts {
        k.push(':');
        push_escaped(&mut k, p);
    }
    debug_assert_eq!(k.len(), len);
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

    /// The one-allocation builder names every key exactly as the `format!` it replaced.
    #[test]
    fn app_key_matches_the_plain_construction() {
        fn reference(app: &str, kind: &str, parts: &[&str]) -> String {
            let esc = |s: &str| {
                s.replace('%', "%25")
                    .replace('{', "%7B")
                    .replace('}', "%7D")
                    .replace(':', "%3A")
            };
            let mut k = format!("{PREFIX}:{{{}}}:{kind}", esc(app));
            for p in parts {
                k.push(':');
                k.push_str(&esc(p));
            }
            k
        }
        let words = [
            "",
            "a",
            "bench-app",
            "%",
            "{}",
            "a:b:c",
            "ü%{x}é:",
            "::%%{{}}",
        ];
        for app in words {
            for p in words {
                for q in words {
                    assert_eq!(
                        app_key(app, KIND_SEQ, &[p, q]),
                        reference(app, KIND_SEQ, &[p, q])
                    );
                    assert_eq!(escape(p), reference("", "k", &[p])["rcall:{}:k:".len()..]);
                }
            }
            assert_eq!(
                app_key(app, KIND_CHANNEL, &[]),
                reference(app, KIND_CHANNEL, &[])
            );
            assert_eq!(app_tag(app), format!("{{{}}}", escape(app)));
        }
    }

    #[test]
    fn keys_carry_the_escaped_app_tag() {
        assert_eq!(user_seq("app", "alice"), "rcall:{app}:seq:alice");
        assert_eq!(app_channel("app", "x"), "rcall:{app}:ch:x");
        let k = user_seq("a}b{c", "u:1}%");
        assert_eq!(k, "rcall:{a%7Db%7Bc}:seq:u%3A1%7D%25");
        assert_eq!(hash_tag(&k), "a%7Db%7Bc");
        assert_eq!(escape("%{}:"), "%25%7B%7D%3A");
        assert_eq!(escape("plain"), "plain");
        assert_eq!(app_tag("a:b"), "{a%3Ab}");
        assert_eq!(
            app_key("a", KIND_SEQ, &["x%", "", "é:"]),
            "rcall:{a}:seq:x%25::é%3A"
        );
        // A user id cannot forge another user's key.
        assert_ne!(
            user_seq("app", "a:b"),
            app_key("app", KIND_SEQ, &["a", "b"])
        );
    }
}
