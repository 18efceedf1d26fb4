//! Where the cluster's Redis is: `redis://host:port/db`, or a unix socket
//! (`unix:///path/to/redis.sock`, also `redis+unix://`; database as `?db=N`). Checked at
//! startup so a typo stops the server with a clear message instead of failing on first use.
//! A password may be given (`redis://:pw@host/0`, `unix:///s.sock?pass=pw`); it never appears
//! in what [`RedisUrl`] displays or in errors.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::ClusterError;

const FORMS: &str = "use redis://host:port/db or unix:///path/to/redis.sock";

/// A parsed, supported Redis URL.
#[derive(Clone)]
pub struct RedisUrl {
    info: ConnectionInfo,
    /// The address without credentials, for logs and errors.
    shown: String,
}

impl RedisUrl {
    /// Parses `url`; `redis://`, `unix://` and `redis+unix://` only (no TLS: `rediss://` is
    /// refused with a hint rather than failing later for a missing TLS build).
    pub fn parse(url: &str) -> Result<Self, ClusterError> {
        let url = url.trim();
        let invalid = |reason: String| ClusterError::InvalidUrl {
            url: redact(url),
            reason,
        };
        let scheme = match url.split_once("://") {
            Some((s, _)) => s.to_ascii_lowercase(),
            None => return Err(invalid(format!("not a URL ({FORMS})"))),
        };
        match scheme.as_str() {
            "redis" | "unix" | "redis+unix" => {}
            "rediss" => {
                return Err(invalid(
                    "TLS (rediss://) is not supported: reach Redis over a private network or \
                     a unix socket"
                        .into(),
                ))
            }
            other => {
                return Err(invalid(format!(
                    "scheme {other:?} is not supported ({FORMS})"
                )))
            }
        }
        if scheme != "redis" {
            let path = &url[scheme.len() + 3..];
            if !path.starts_with('/') {
                return Err(invalid(format!(
                    "a unix socket URL needs an absolute path, e.g. {scheme}:///run/redis/redis.sock"
                )));
            }
        }
        let info = url
            .into_connection_info()
            .map_err(|e| invalid(e.to_string()))?;
        let db = info.redis_settings().db();
        let shown = match info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
            ConnectionAddr::Unix(path) if db == 0 => format!("unix://{}", path.display()),
            ConnectionAddr::Unix(path) => format!("unix://{}?db={db}", path.display()),
            _ => return Err(invalid(format!("unsupported address ({FORMS})"))),
        };
        Ok(RedisUrl { info, shown })
    }

    /// What the client crate connects with.
    pub fn connection_info(&self) -> &ConnectionInfo {
        &self.info
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.shown)
    }
}

/// `url` without user info and query (either may carry a password), for messages about a URL
/// that did not parse.
pub fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(u.to_string(), "redis://127.0.0.1:6380/2");
        let u = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!(u.to_string(), "redis://localhost:6379/0");
        for s in ["unix:///run/redis.sock", "redis+unix:///run/redis.sock"] {
            assert_eq!(
                RedisUrl::parse(s).unwrap().to_string(),
                "unix:///run/redis.sock"
            );
        }
        let u = RedisUrl::parse("unix:///run/redis.sock?db=3").unwrap();
        assert_eq!(u.to_string(), "unix:///run/redis.sock?db=3");
        assert_eq!(u.connection_info().redis_settings().db(), 3);
    }

    #[test]
    fn refused_forms_say_why() {
        for (bad, why) in [
            ("localhost:6379", "not a URL"),
            ("http://localhost", "not supported"),
            ("rediss://h:6380/0", "TLS"),
            ("unix://relative.sock", "absolute path"),
            ("redis://h:notaport/0", ""),
            ("redis://h:6379/x", ""),
            ("unix:///s.sock?db=x", ""),
        ] {
            let e = RedisUrl::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid Redis URL"), "{bad}: {e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn passwords_are_never_shown() {
        let u = RedisUrl::parse("redis://user:hunter2@h:6379/1").unwrap();
        assert!(!u.to_string().contains("hunter2") && !format!("{u:?}").contains("hunter2"));
        let u = RedisUrl::parse("unix:///s.sock?pass=hunter2").unwrap();
        assert_eq!(
            u.connection_info().redis_settings().password(),
            Some("hunter2")
        );
        assert!(!u.to_string().contains("hunter2"));
        let e = RedisUrl::parse("rediss://:hunter2@h/0")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = RedisUrl::parse("redis://:hunter2@h:x/0")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(redact("redis://a:b@h:1/0?pass=c"), "redis://***@h:1/0");
    }
}
