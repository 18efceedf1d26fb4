//! ICE servers for clients: STUN URLs as configured, and TURN URLs with time-limited credentials
//! in the TURN REST scheme that coturn's `use-auth-secret` checks:
//! `username = "<unix expiry seconds>:<userId>"`, `credential = base64(HMAC-SHA1(secret, username))`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rtc_core::proto::IceServer;
use sha1::Sha1;

use crate::config::Config;

/// `(username, credential)` for `user_id`, valid until `expiry_unix_secs`.
pub fn turn_credentials(secret: &str, user_id: &str, expiry_unix_secs: i64) -> (String, String) {
    let username = format!("{expiry_unix_secs}:{user_id}");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let credential = STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

/// The ICE servers for `user_id` at `now_ms`: one STUN entry (if configured) and one TURN entry
/// with fresh credentials (if configured).
pub fn ice_servers(config: &Config, user_id: &str, now_ms: i64) -> Vec<IceServer> {
    let mut out = Vec::new();
    if !config.stun_urls.is_empty() {
        out.push(IceServer {
            urls: config.stun_urls.clone(),
            username: String::new(),
            credential: String::new(),
        });
    }
    if let (false, Some(secret)) = (config.turn_urls.is_empty(), config.turn_secret.as_deref()) {
        let ttl = i64::try_from(config.turn_ttl.as_secs()).unwrap_or(i64::MAX);
        let expiry = (now_ms / 1000).saturating_add(ttl);
        let (username, credential) = turn_credentials(secret, user_id, expiry);
        out.push(IceServer {
            urls: config.turn_urls.clone(),
            username,
            credential,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_turn_rest_scheme() {
        // Independent reference: HMAC-SHA1("secret", "1700000000:alice"), base64.
        let (u, c) = turn_credentials("secret", "alice", 1_700_000_000);
        assert_eq!(u, "1700000000:alice");
        let mut mac = Hmac::<Sha1>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000:alice");
        assert_eq!(c, STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(c.len(), 28);
    }

    #[test]
    fn only_configured_servers_are_listed() {
        let mut cfg = Config::new("k", "s");
        assert!(ice_servers(&cfg, "u", 0).is_empty());
        cfg.stun_urls = vec!["stun:127.0.0.1:3478".into()];
        cfg.turn_urls = vec!["turn:127.0.0.1:3478".into()];
        cfg.turn_secret = Some("x".into());
        cfg.turn_ttl = std::time::Duration::from_secs(60);
        let v = ice_servers(&cfg, "u", 1_000_000);
        assert_eq!(v.len(), 2);
        assert!(v[0].username.is_empty());
        assert_eq!(v[1].username, "1060:u");
    }
}
