//! Login tokens: what rcall-server's `/user/getToken.json` issues and what `Authenticate`
//! presents. A crate of its own so that whoever mints tokens (the server, the load generator)
//! needs only this, not the server.
//!
//! Format: `base64url(payload) "." base64url(HMAC-SHA256(app_secret, payload))` (no padding),
//! payload = JSON `{"k": appKey, "u": userId, "iat": ms, "exp": ms}`. Stateless, so any server
//! holding the app secret can check a token without a database lookup; nobody without the secret
//! can mint one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Default validity: 30 days.
pub const DEFAULT_TTL_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// What a token says. Field names are short because the token travels in every connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// App key the token was issued for.
    pub k: String,
    /// User id.
    pub u: String,
    /// Issued at, ms since epoch.
    pub iat: i64,
    /// Expires at, ms since epoch.
    pub exp: i64,
}

/// Why a token was refused. Only [`TokenError::Expired`] maps to a different IMLib code:
/// the client reacts differently (fetch a new token vs. give up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not well-formed")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token was issued for another app")]
    WrongApp,
    #[error("token has expired")]
    Expired,
}

impl TokenError {
    /// The IMLib connect error code the client sees in `AuthResult.code`.
    pub fn imlib_code(&self) -> i32 {
        match self {
            TokenError::Expired => rtc_core::proto::error_code::TOKEN_EXPIRED,
            _ => rtc_core::proto::error_code::TOKEN_INCORRECT,
        }
    }
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length")
}

/// Issues a token for `user_id`, valid from `now_ms` for `ttl_ms`.
pub fn issue(app_key: &str, app_secret: &str, user_id: &str, now_ms: i64, ttl_ms: i64) -> String {
    let claims = Claims {
        k: app_key.to_owned(),
        u: user_id.to_owned(),
        iat: now_ms,
        exp: now_ms.saturating_add(ttl_ms),
    };
    let payload = serde_json::to_vec(&claims).expect("claims always serialize");
    let mut m = mac(app_secret);
    m.update(&payload);
    let sig = m.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// The app key a token claims, read *without* checking anything: only to pick which app's secret
/// to verify it with (like a JWT `kid`). Never trust anything else from an unverified token.
pub fn claimed_app_key(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct AppOnly {
        k: String,
    }
    let (payload_b64, _) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
    serde_json::from_slice::<AppOnly>(&payload)
        .ok()
        .map(|a| a.k)
}

/// Checks signature (constant-time), app key, and expiry, in that order: nothing in an unsigned
/// payload is trusted, not even to pick an error message.
pub fn verify(
    app_key: &str,
    app_secret: &str,
    token: &str,
    now_ms: i64,
) -> Result<Claims, TokenError> {
    let (payload_b64, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed)?;
    let mut m = mac(app_secret);
    m.update(&payload);
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.k != app_key {
        return Err(TokenError::WrongApp);
    }
    if claims.u.is_empty() {
        return Err(TokenError::Malformed);
    }
    if claims.exp <= now_ms {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn round_trip() {
        let t = issue("app", "secret", "alice", NOW, DEFAULT_TTL_MS);
        let c = verify("app", "secret", &t, NOW + 1).unwrap();
        assert_eq!(c.u, "alice");
        assert_eq!(c.k, "app");
        assert_eq!(c.exp, NOW + DEFAULT_TTL_MS);
    }

    #[test]
    fn rejects_wrong_secret_wrong_app_expired_garbage() {
        let t = issue("app", "secret", "alice", NOW, 1000);
        assert_eq!(
            verify("app", "other", &t, NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify("app2", "secret", &t, NOW), Err(TokenError::WrongApp));
        assert_eq!(
            verify("app", "secret", &t, NOW + 1000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify("app", "secret", "garbage", NOW),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify("app", "secret", "a.b.c", NOW),
            Err(TokenError::Malformed)
        );
        assert_eq!(verify("app", "secret", "", NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn rejects_tampered_payload() {
        let t = issue("app", "secret", "alice", NOW, 1000);
        let (_, sig) = t.split_once('.').unwrap();
        let forged = issue("app", "secret", "bob", NOW, 1000);
        let (payload, _) = forged.split_once('.').unwrap();
        assert_eq!(
            verify("app", "secret", &format!("{payload}.{sig}"), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn claimed_app_key_reads_k_only() {
        let t = issue("app", "secret", "alice", NOW, 1000);
        assert_eq!(claimed_app_key(&t).as_deref(), Some("app"));
        assert_eq!(claimed_app_key("garbage"), None);
        assert_eq!(claimed_app_key("e30.x"), None); // "{}"
    }

    #[test]
    fn codes() {
        assert_eq!(TokenError::Expired.imlib_code(), 31020);
        assert_eq!(TokenError::BadSignature.imlib_code(), 31004);
        assert_eq!(TokenError::WrongApp.imlib_code(), 31004);
        assert_eq!(TokenError::Malformed.imlib_code(), 31004);
    }
}
