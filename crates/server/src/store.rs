//! Persistent state in one SQLite file (`--db`). For now: the users the Server API registered.
//!
//! rusqlite is blocking, so every call hops to tokio's blocking pool; one connection behind a
//! mutex is plenty for this write rate and keeps SQLite's locking trivial.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database task failed: {0}")]
    Task(String),
}

/// A user as registered through `/user/getToken.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub app_key: String,
    pub user_id: String,
    pub name: String,
    pub portrait_uri: String,
    /// ms since epoch of the last getToken for this user.
    pub updated_at: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    app_key      TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL DEFAULT '',
    portrait_uri TEXT    NOT NULL DEFAULT '',
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (app_key, user_id)
);
";

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database file and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (statements are
            // atomic), so a poisoned lock is safe to reuse.
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .map_err(StoreError::from)
    }

    /// Inserts or updates a user. `None` keeps the stored value (or `''` for a new user), like
    /// RongCloud's getToken, which only overwrites the profile fields it is given.
    pub async fn upsert_user(
        &self,
        app_key: &str,
        user_id: &str,
        name: Option<&str>,
        portrait_uri: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (app_key, user_id) = (app_key.to_owned(), user_id.to_owned());
        let (name, portrait_uri) = (name.map(str::to_owned), portrait_uri.map(str::to_owned));
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO users (app_key, user_id, name, portrait_uri, updated_at)
                 VALUES (?1, ?2, COALESCE(?3, ''), COALESCE(?4, ''), ?5)
                 ON CONFLICT (app_key, user_id) DO UPDATE SET
                     name = COALESCE(?3, users.name),
                     portrait_uri = COALESCE(?4, users.portrait_uri),
                     updated_at = ?5",
                params![app_key, user_id, name, portrait_uri, now_ms],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn get_user(
        &self,
        app_key: &str,
        user_id: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        let (app_key, user_id) = (app_key.to_owned(), user_id.to_owned());
        self.with_conn(move |c| {
            c.query_row(
                "SELECT app_key, user_id, name, portrait_uri, updated_at FROM users
                 WHERE app_key = ?1 AND user_id = ?2",
                params![app_key, user_id],
                |r| {
                    Ok(UserRow {
                        app_key: r.get(0)?,
                        user_id: r.get(1)?,
                        name: r.get(2)?,
                        portrait_uri: r.get(3)?,
                        updated_at: r.get(4)?,
                    })
                },
            )
            .optional()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upsert_keeps_unspecified_fields() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        s.upsert_user("app", "u1", Some("Alice"), Some("http://p"), 1)
            .await
            .unwrap();
        s.upsert_user("app", "u1", None, None, 2).await.unwrap();
        let row = s.get_user("app", "u1").await.unwrap().unwrap();
        assert_eq!(row.name, "Alice");
        assert_eq!(row.portrait_uri, "http://p");
        assert_eq!(row.updated_at, 2);
        assert!(s.get_user("app", "nobody").await.unwrap().is_none());
    }
}
