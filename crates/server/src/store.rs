//! Persistent state in one SQLite file (`--db`): users, token expiries, blocks, blacklists,
//! groups, offline messages, device cursors, and the sequence floor.
//!
//! One dedicated thread owns the connection and runs jobs in the order they were submitted, so
//! a write submitted before a read is always visible to it (the hub relies on that: a message
//! stored for an offline user is seen by that user's next sync). Jobs that arrive together run
//! in one transaction, which keeps bursts of offline writes cheap.
//!
//! Every job gets a *ticket* (its position in the queue) and the worker publishes the highest
//! ticket whose transaction has committed ([`Store::committed`], [`Store::wait_committed`]).
//! The WebSocket side holds a confirmation (`SendResult`, `accepted_upto`) until the tickets of
//! the writes it covers are committed: confirmed means durable (WAL with `synchronous=NORMAL`
//! survives a process crash). Writes that nobody waits for cost nothing extra.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

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
CREATE TABLE IF NOT EXISTS token_expiry (
    app_key   TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    before_ms INTEGER NOT NULL,
    PRIMARY KEY (app_key, user_id)
);
CREATE TABLE IF NOT EXISTS blocks (
    app_key  TEXT    NOT NULL,
    user_id  TEXT    NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (app_key, user_id)
);
CREATE TABLE IF NOT EXISTS blacklist (
    app_key       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    black_user_id TEXT NOT NULL,
    PRIMARY KEY (app_key, user_id, black_user_id)
);
CREATE TABLE IF NOT EXISTS groups (
    app_key    TEXT    NOT NULL,
    group_id   TEXT    NOT NULL,
    name       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_key, group_id)
);
CREATE TABLE IF NOT EXISTS group_members (
    app_key  TEXT NOT NULL,
    group_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (app_key, group_id, user_id)
);
CREATE TABLE IF NOT EXISTS offline (
    app_key        TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    exclude_device TEXT    NOT NULL DEFAULT '',
    sent_time      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    payload        BLOB    NOT NULL,
    PRIMARY KEY (app_key, user_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS offline_expiry ON offline (expires_at);
-- Devices an `offline` row was kept for when they left without acking it: such a row is
-- deleted once each of them acked it (not by the first ack of any device of the user).
CREATE TABLE IF NOT EXISTS offline_pending (
    app_key    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    device_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (app_key, user_id, seq, device_id)
) WITHOUT ROWID;
-- Call rooms kept over a graceful restart (`delivery::rooms::RoomsSnapshot`, protobuf):
-- written at shutdown, read and deleted at the next start.
CREATE TABLE IF NOT EXISTS rooms_snapshot (
    app_key TEXT PRIMARY KEY,
    data    BLOB NOT NULL
) WITHOUT ROWID;
-- Call messages that took a member out of a call since the last `rooms_snapshot` write
-- (`delivery::rooms::RoomsEvent`, protobuf), logged before they are confirmed: replayed over
-- the snapshot at the next start. `version` is the rooms' change count after the message; a
-- snapshot write deletes the rows it covers.
CREATE TABLE IF NOT EXISTS rooms_departures (
    app_key TEXT    NOT NULL,
    version INTEGER NOT NULL,
    t_ms    INTEGER NOT NULL,
    event   BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS device_cursors (
    app_key    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    acked      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app_key, user_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS client_seqs (
    app_key    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    instance   INTEGER NOT NULL,
    client_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app_key, user_id, device_id, instance)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_nonces (
    app_key    TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (app_key, nonce)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

type Job = Box<dyn FnOnce(&Connection) + Send>;

enum Cmd {
    /// A job and its ticket.
    Job(u64, Job),
    Stop,
}

/// The worker's commit watermark (shared without the queue, so dropping every [`Store`]
/// still ends the worker).
#[derive(Default)]
struct Progress {
    /// Highest ticket whose job has run and whose transaction has committed.
    committed: AtomicU64,
    /// Notified whenever `committed` moves.
    commits: tokio::sync::Notify,
}

struct Inner {
    /// The queue, behind the lock that hands out tickets (so tickets follow queue order).
    tx: Mutex<(u64, std::sync::mpsc::Sender<Cmd>)>,
    progress: Arc<Progress>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Rows in the `offline` table (kept by the worker; read by metrics).
    offline_depth: AtomicI64,
    /// Payload bytes in the `offline` table (kept by the worker; read by the hub's byte quota).
    offline_bytes: AtomicI64,
    /// Highest ticket handed out (`issued - committed` = writes waiting).
    issued: AtomicU64,
    /// Per app, the version of the call rooms last written ([`Store::save_rooms`]; only the
    /// worker touches it).
    rooms_written: Arc<Mutex<HashMap<Arc<str>, u64>>>,
}

/// Handle to the database thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Most jobs run in one transaction.
const MAX_BATCH: usize = 512;

/// Prepared statements kept by the database thread: every `prepare_cached` statement of this
/// file (those of logins, routed messages, acks and call departures), with room to spare. The
/// default (16) is below their count: the least recently used were compiled again and again.
const STATEMENT_CACHE: usize = 40;

/// Sqlite stores integers as i64; seqs are u64 below 2^63 in practice (µs timestamps).
fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
fn seq_from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
/// An SDK instance id is an identifier, not a quantity: all 64 random bits matter, so it is
/// stored as its bit pattern (clamping, as for seqs, made every id above `i64::MAX` one key).
fn instance_to_sql(instance: u64) -> i64 {
    i64::from_ne_bytes(instance.to_ne_bytes())
}

pub use delivery::{PolicyRows, SenderSeq, StoreOffline, StoredMessage, SyncData};

impl Store {
    /// Opens (creating if needed) the database file and its tables, and starts the worker.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Owner-only: the file holds every stored message and policy. SQLite creates the WAL
        // and SHM files with the database file's permissions; existing files are tightened.
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path);
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // WAL: readers never block the writer; NORMAL sync is durable across process crashes.
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        conn.execute_batch(SCHEMA)?;
        let (depth, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM offline",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (tx, rx) = std::sync::mpsc::channel::<Cmd>();
        let inner = Arc::new(Inner {
            tx: Mutex::new((0, tx)),
            progress: Arc::default(),
            worker: Mutex::new(None),
            offline_depth: AtomicI64::new(depth),
            offline_bytes: AtomicI64::new(bytes),
            issued: AtomicU64::new(0),
            rooms_written: Arc::default(),
        });
        let handle = std::thread::Builder::new()
            .name("rcall-db".into())
            .spawn({
                let progress = inner.progress.clone();
                move || worker(conn, rx, &progress)
            })
            .map_err(|e| StoreError::Task(e.to_string()))?;
        *inner.worker.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(Self { inner })
    }

    /// Runs `f` on the database thread after everything submitted before, and returns its
    /// result.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        let ticket = self
            .enqueue(job)
            .ok_or_else(|| StoreError::Task("database is closed".into()))?;
        let out = rx
            .await
            .map_err(|_| StoreError::Task("database job was dropped".into()))?
            .map_err(StoreError::from)?;
        // Jobs run inside a batch transaction: answer only once it has committed, so what a
        // caller was told is written (a Server API 200, a token's user row) survives a crash
        // and is visible to every other reader of the file.
        self.wait_committed(ticket).await;
        Ok(out)
    }

    /// Queues `job` with the next ticket; `None` once the database is closed.
    fn enqueue(&self, job: Job) -> Option<u64> {
        let mut q = self.inner.tx.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = q.0 + 1;
        q.1.send(Cmd::Job(ticket, job)).ok()?;
        q.0 = ticket;
        self.inner.issued.store(ticket, Ordering::Release);
        Some(ticket)
    }

    /// Queues `f` without waiting (errors are logged); returns its ticket (0 if dropped).
    pub fn submit<F>(&self, what: &'static str, f: F) -> u64
    where
        F: FnOnce(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    {
        let job: Job = Box::new(move |c| {
            if let Err(e) = f(c) {
                tracing::error!(error = %e, what, "database write failed");
            }
        });
        self.enqueue(job).unwrap_or_else(|| {
            tracing::error!(what, "database is closed; write dropped");
            0
        })
    }

    /// Highest ticket whose job has committed.
    pub fn committed(&self) -> u64 {
        self.inner.progress.committed.load(Ordering::Acquire)
    }

    /// Resolves once the job with `ticket` (and every one before it) has committed.
    pub async fn wait_committed(&self, ticket: u64) {
        loop {
            let notified = self.inner.progress.commits.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.committed() >= ticket {
                return;
            }
            notified.await;
        }
    }

    /// Waits until every job submitted so far has run.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(|_| Ok(())).await
    }

    /// Finishes queued jobs and stops the worker. Later calls fail.
    pub async fn close(&self) {
        let _ = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .send(Cmd::Stop);
        let handle = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// Writes queued and not committed yet (the write queue's depth).
    pub fn pending(&self) -> u64 {
        self.inner
            .issued
            .load(Ordering::Acquire)
            .saturating_sub(self.committed())
    }

    /// Payload bytes currently in the offline table.
    pub fn offline_bytes(&self) -> i64 {
        self.inner.offline_bytes.load(Ordering::Relaxed)
    }

    /// Rows currently in the offline table.
    pub fn offline_depth(&self) -> i64 {
        self.inner.offline_depth.load(Ordering::Relaxed)
    }

    // ---- users ---------------------------------------------------------------------------

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
        self.call(move |c| {
            c.prepare_cached(
                "INSERT INTO users (app_key, user_id, name, portrait_uri, updated_at)
                 VALUES (?1, ?2, COALESCE(?3, ''), COALESCE(?4, ''), ?5)
                 ON CONFLICT (app_key, user_id) DO UPDATE SET
                     name = COALESCE(?3, users.name),
                     portrait_uri = COALESCE(?4, users.portrait_uri),
                     updated_at = ?5",
            )?
            .execute(params![app_key, user_id, name, portrait_uri, now_ms])
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
        self.call(move |c| {
            c.prepare_cached(
                "SELECT app_key, user_id, name, portrait_uri, updated_at FROM users
                 WHERE app_key = ?1 AND user_id = ?2",
            )?
            .query_row(params![app_key, user_id], |r| {
                Ok(UserRow {
                    app_key: r.get(0)?,
                    user_id: r.get(1)?,
                    name: r.get(2)?,
                    portrait_uri: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })
            .optional()
        })
        .await
    }

    // ---- policy --------------------------------------------------------------------------

    /// Everything the hub enforces for `app_key`, for loading at startup.
    pub async fn load_policy(&self, app_key: &str) -> Result<PolicyRows, StoreError> {
        let app = app_key.to_owned();
        self.call(move |c| {
            let mut p = PolicyRows::default();
            let pairs = |sql: &str| -> Result<Vec<(String, String)>, rusqlite::Error> {
                let mut st = c.prepare(sql)?;
                let rows = st.query_map([&app], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            };
            let ints = |sql: &str| -> Result<HashMap<String, i64>, rusqlite::Error> {
                let mut st = c.prepare(sql)?;
                let rows = st.query_map([&app], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            };
            p.token_expiry =
                ints("SELECT user_id, before_ms FROM token_expiry WHERE app_key = ?1")?;
            p.blocks = ints("SELECT user_id, until_ms FROM blocks WHERE app_key = ?1")?;
            p.blacklists =
                pairs("SELECT user_id, black_user_id FROM blacklist WHERE app_key = ?1")?;
            p.members = pairs("SELECT group_id, user_id FROM group_members WHERE app_key = ?1")?;
            let mut st = c.prepare("SELECT group_id FROM groups WHERE app_key = ?1")?;
            p.groups = st
                .query_map([&app], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(p)
        })
        .await
    }

    pub async fn set_token_expiry(
        &self,
        app_key: &str,
        users: Vec<String>,
        before_ms: i64,
    ) -> Result<(), StoreError> {
        let app = app_key.to_owned();
        self.call(move |c| {
            for_each_user(
                c,
                &users,
                "INSERT INTO token_expiry (app_key, user_id, before_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_key, user_id) DO UPDATE SET before_ms = ?3",
                |u| (&app, u, before_ms),
            )
        })
        .await
    }

    /// `until_ms = None` unblocks.
    pub async fn set_blocked(
        &self,
        app_key: &str,
        users: Vec<String>,
        until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let app = app_key.to_owned();
        self.call(move |c| match until_ms {
            Some(t) => for_each_user(
                c,
                &users,
                "INSERT INTO blocks (app_key, user_id, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_key, user_id) DO UPDATE SET until_ms = ?3",
                |u| (&app, u, t),
            ),
            None => for_each_user(
                c,
                &users,
                "DELETE FROM blocks WHERE app_key = ?1 AND user_id = ?2",
                |u| (&app, u),
            ),
        })
        .await
    }

    pub async fn set_blacklist(
        &self,
        app_key: &str,
        user_id: &str,
        others: Vec<String>,
        add: bool,
    ) -> Result<(), StoreError> {
        let (app, user) = (app_key.to_owned(), user_id.to_owned());
        self.call(move |c| {
            for o in &others {
                let sql = if add {
                    "INSERT OR IGNORE INTO blacklist (app_key, user_id, black_user_id)
                     VALUES (?1, ?2, ?3)"
                } else {
                    "DELETE FROM blacklist WHERE app_key = ?1 AND user_id = ?2 AND black_user_id = ?3"
                };
                c.execute(sql, params![app, user, o])?;
            }
            Ok(())
        })
        .await
    }

    /// Creates the group if missing (optionally renaming it) and adds `users`.
    pub async fn group_join(
        &self,
        app_key: &str,
        group_id: &str,
        name: Option<String>,
        users: Vec<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (app, group) = (app_key.to_owned(), group_id.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO groups (app_key, group_id, name, created_at)
                 VALUES (?1, ?2, COALESCE(?3, ''), ?4)
                 ON CONFLICT (app_key, group_id) DO UPDATE SET name = COALESCE(?3, groups.name)",
                params![app, group, name, now_ms],
            )?;
            for_each_user(
                c,
                &users,
                "INSERT OR IGNORE INTO group_members (app_key, group_id, user_id)
                 VALUES (?1, ?2, ?3)",
                |u| (&app, &group, u),
            )
        })
        .await
    }

    pub async fn group_quit(
        &self,
        app_key: &str,
        group_id: &str,
        users: Vec<String>,
    ) -> Result<(), StoreError> {
        let (app, group) = (app_key.to_owned(), group_id.to_owned());
        self.call(move |c| {
            for_each_user(
                c,
                &users,
                "DELETE FROM group_members WHERE app_key = ?1 AND group_id = ?2 AND user_id = ?3",
                |u| (&app, &group, u),
            )
        })
        .await
    }

    pub async fn group_dismiss(&self, app_key: &str, group_id: &str) -> Result<(), StoreError> {
        let (app, group) = (app_key.to_owned(), group_id.to_owned());
        self.call(move |c| {
            c.execute(
                "DELETE FROM group_members WHERE app_key = ?1 AND group_id = ?2",
                params![app, group],
            )?;
            c.execute(
                "DELETE FROM groups WHERE app_key = ?1 AND group_id = ?2",
                params![app, group],
            )?;
            Ok(())
        })
        .await
    }

    // ---- delivery ------------------------------------------------------------------------

    /// Queues a message for a user with no connected device, then trims that user's queue to
    /// `max_per_user` (oldest first). `sender` is recorded as accepted in the same
    /// transaction. Returns the write's ticket.
    pub fn store_offline(&self, app_key: Arc<str>, m: StoreOffline) -> u64 {
        let inner = self.inner.clone();
        self.submit("store offline message", move |c| {
            insert_offline(c, &inner, &app_key, &m, true)?;
            // It waits for every device the user has (but the sender's): the first device
            // to ack it must not delete it under another that has not received it yet.
            c.prepare_cached(
                "INSERT OR IGNORE INTO offline_pending (app_key, user_id, seq, device_id, expires_at)
                 SELECT app_key, user_id, ?3, device_id, ?5 FROM device_cursors
                 WHERE app_key = ?1 AND user_id = ?2 AND device_id <> ?4",
            )?
            .execute(params![
                &*app_key,
                &*m.user,
                seq_to_sql(m.seq),
                m.exclude_device.as_deref().unwrap_or(""),
                m.expires_at
            ])?;
            // After the message: if storing it failed, its client_seq must not count as accepted.
            if let Some(s) = &m.sender {
                upsert_client_seq(c, &app_key, s, m.sent_time)?;
            }
            Ok(())
        })
    }

    /// Stores a message for `device`, which left without acking it (the row is written unless
    /// it is already there, then the user's queue is trimmed to `max_per_user`), and records
    /// that the row waits for `device`'s ack: another device's ack does not delete it.
    pub fn keep_for_device(&self, app_key: Arc<str>, device: Arc<str>, m: StoreOffline) -> u64 {
        let inner = self.inner.clone();
        self.submit("keep message for a departed device", move |c| {
            insert_offline(c, &inner, &app_key, &m, false)?;
            c.prepare_cached(
                "INSERT INTO offline_pending (app_key, user_id, seq, device_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET expires_at = MAX(expires_at, ?5)",
            )?
            .execute(params![
                &*app_key,
                &*m.user,
                seq_to_sql(m.seq),
                &*device,
                m.expires_at
            ])?;
            Ok(())
        })
    }

    /// `device` left with its cursor at `acked`: every stored row above it (it was replayed
    /// them, or gets them when it resumes) waits for its ack too, so another device's ack
    /// does not delete them first.
    pub fn keep_stored_for_device(
        &self,
        app_key: Arc<str>,
        user_id: Arc<str>,
        device: Arc<str>,
        acked: u64,
    ) -> u64 {
        self.submit("keep stored messages for a departed device", move |c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO offline_pending
                 (app_key, user_id, seq, device_id, expires_at)
                 SELECT app_key, user_id, seq, ?3, expires_at FROM offline
                 WHERE app_key = ?1 AND user_id = ?2 AND seq > ?4 AND exclude_device <> ?3",
            )?
            .execute(params![&*app_key, &*user_id, &*device, seq_to_sql(acked)])?;
            Ok(())
        })
    }

    /// Remembers the highest accepted `client_seq` of each `(instance, client_seq)` of `device`.
    pub fn save_client_seqs(
        &self,
        app_key: Arc<str>,
        user_id: Arc<str>,
        device: Arc<str>,
        seqs: Vec<(u64, u64)>,
        now_ms: i64,
    ) -> u64 {
        self.submit("save accepted client seqs", move |c| {
            for (instance, client_seq) in seqs {
                let s = SenderSeq {
                    user: user_id.clone(),
                    device: device.clone(),
                    instance,
                    client_seq,
                };
                upsert_client_seq(c, &app_key, &s, now_ms)?;
            }
            Ok(())
        })
    }

    /// The persisted highest accepted `client_seq` of `(user, device, instance)` (0 = none), and
    /// the ticket of the read: what it saw is durable once that ticket has committed.
    pub async fn accepted_upto(
        &self,
        app_key: Arc<str>,
        user_id: Arc<str>,
        device: Arc<str>,
        instance: u64,
    ) -> Result<(u64, u64), StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let r = c
                .prepare_cached(
                    "SELECT client_seq FROM client_seqs WHERE app_key = ?1 AND user_id = ?2
                     AND device_id = ?3 AND instance = ?4",
                )
                .and_then(|mut st| {
                    st.query_row(
                        params![&*app_key, &*user_id, &*device, instance_to_sql(instance)],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                });
            let _ = tx.send(r.map(|v| v.map_or(0, seq_from_sql)));
        });
        let ticket = self
            .enqueue(job)
            .ok_or_else(|| StoreError::Task("database is closed".into()))?;
        let v = rx
            .await
            .map_err(|_| StoreError::Task("database job was dropped".into()))??;
        Ok((v, ticket))
    }

    /// Records a Server API nonce until `expires_at`; returns the write's ticket.
    pub fn save_nonce(&self, app_key: Arc<str>, nonce: String, expires_at: i64) -> u64 {
        self.submit("save api nonce", move |c| {
            c.prepare_cached(
                "INSERT INTO api_nonces (app_key, nonce, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_key, nonce) DO UPDATE SET expires_at = MAX(expires_at, ?3)",
            )?
            .execute(params![&*app_key, nonce, expires_at])?;
            Ok(())
        })
    }

    /// Server API nonces that have not expired at `now_ms`: `(app key, nonce, expires_at)`.
    pub async fn load_nonces(&self, now_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT app_key, nonce, expires_at FROM api_nonces WHERE expires_at > ?1",
            )?;
            let rows = st.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
        .await
    }

    /// Drops stored messages up to `seq` that `device` was able to receive (it acked them),
    /// except those kept for other devices ([`Self::keep_for_device`]) that have not acked them.
    pub fn delete_offline_upto(
        &self,
        app_key: Arc<str>,
        user_id: Arc<str>,
        device: Arc<str>,
        seq: u64,
    ) {
        let inner = self.inner.clone();
        self.submit("delete acked offline messages", move |c| {
            c.prepare_cached(
                "DELETE FROM offline_pending WHERE app_key = ?1 AND user_id = ?2
                 AND device_id = ?4 AND seq <= ?3",
            )?
            .execute(params![&*app_key, &*user_id, seq_to_sql(seq), &*device])?;
            // A row kept for other devices that have not acked it yet stays.
            let mut st = c.prepare_cached(
                "DELETE FROM offline WHERE app_key = ?1 AND user_id = ?2 AND seq <= ?3
                 AND exclude_device <> ?4 AND NOT EXISTS (
                     SELECT 1 FROM offline_pending p WHERE p.app_key = ?1
                     AND p.user_id = ?2 AND p.seq = offline.seq)
                 RETURNING length(payload)",
            )?;
            let (n, bytes) =
                deleted(st.query(params![&*app_key, &*user_id, seq_to_sql(seq), &*device])?)?;
            inner.offline_depth.fetch_sub(n as i64, Ordering::Relaxed);
            inner.offline_bytes.fetch_sub(bytes, Ordering::Relaxed);
            Ok(())
        });
    }

    /// Remembers how far `device` has acked (monotonic).
    pub fn save_cursor(
        &self,
        app_key: Arc<str>,
        user_id: Arc<str>,
        device: Arc<str>,
        acked: u64,
        now_ms: i64,
    ) {
        self.submit("save device cursor", move |c| {
            let mut st = c.prepare_cached(
                "INSERT INTO device_cursors (app_key, user_id, device_id, acked, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (app_key, user_id, device_id) DO UPDATE SET
                     acked = MAX(acked, ?4), updated_at = ?5",
            )?;
            st.execute(params![
                &*app_key,
                &*user_id,
                &*device,
                seq_to_sql(acked),
                now_ms
            ])?;
            Ok(())
        });
    }

    /// The device's cursor, the stored messages above `max(cursor, stored cursor)` that have
    /// not expired, and the user's known devices. Every message when `page` is `None`;
    /// otherwise at most `page.0` messages and, past the first, `page.1` payload bytes
    /// (`more` says whether messages were left out).
    pub async fn sync_data(
        &self,
        app_key: Arc<str>,
        user_id: Arc<str>,
        device: Arc<str>,
        cursor: u64,
        now_ms: i64,
    ) -> Result<SyncData, StoreError> {
        self.sync_page(app_key, user_id, device, cursor, now_ms, None)
            .await
    }

    /// [`Self::sync_data`] for one page.
    pub async fn sync_page(
        &self,
        app_key: Arc<str>,
        user_id: Arc<str>,
        device: Arc<str>,
        cursor: u64,
        now_ms: i64,
        page: Option<(usize, usize)>,
    ) -> Result<SyncData, StoreError> {
        let (max_n, max_bytes) = page.unwrap_or((usize::MAX, usize::MAX));
        self.call(move |c| {
            let mut out = SyncData::default();
            let mut st = c.prepare_cached(
                "SELECT device_id, acked FROM device_cursors WHERE app_key = ?1 AND user_id = ?2",
            )?;
            let rows = st.query_map(params![&*app_key, &*user_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (d, acked) = row?;
                if d == *device {
                    out.acked = seq_from_sql(acked);
                }
                out.devices.push(d);
            }
            let from = cursor.max(out.acked);
            let mut st = c.prepare_cached(
                "SELECT seq, exclude_device, payload FROM offline
                 WHERE app_key = ?1 AND user_id = ?2 AND seq > ?3 AND expires_at > ?4
                 ORDER BY seq LIMIT ?5",
            )?;
            let limit = i64::try_from(max_n.saturating_add(1)).unwrap_or(i64::MAX);
            let rows = st.query_map(
                params![&*app_key, &*user_id, seq_to_sql(from), now_ms, limit],
                |r| {
                    Ok(StoredMessage {
                        seq: seq_from_sql(r.get(0)?),
                        exclude_device: r.get(1)?,
                        payload: r.get(2)?,
                    })
                },
            )?;
            let mut bytes = 0usize;
            for row in rows {
                let m = row?;
                if out.messages.len() >= max_n
                    || (!out.messages.is_empty() && bytes + m.payload.len() > max_bytes)
                {
                    out.more = true;
                    break;
                }
                bytes += m.payload.len();
                out.messages.push(m);
            }
            Ok(out)
        })
        .await
    }

    /// Deletes expired offline messages and stale device cursors; returns how many messages.
    pub async fn sweep(&self, now_ms: i64, cursor_ttl_ms: i64) -> Result<usize, StoreError> {
        let inner = self.inner.clone();
        self.call(move |c| {
            let (n, bytes) = deleted(
                c.prepare("DELETE FROM offline WHERE expires_at <= ?1 RETURNING length(payload)")?
                    .query([now_ms])?,
            )?;
            inner.offline_depth.fetch_sub(n as i64, Ordering::Relaxed);
            inner.offline_bytes.fetch_sub(bytes, Ordering::Relaxed);
            c.execute(
                "DELETE FROM offline_pending WHERE expires_at <= ?1",
                [now_ms],
            )?;
            c.execute(
                "DELETE FROM device_cursors WHERE updated_at < ?1",
                [now_ms.saturating_sub(cursor_ttl_ms)],
            )?;
            c.execute(
                "DELETE FROM client_seqs WHERE updated_at < ?1",
                [now_ms.saturating_sub(cursor_ttl_ms)],
            )?;
            c.execute("DELETE FROM blocks WHERE until_ms <= ?1", [now_ms])?;
            c.execute("DELETE FROM api_nonces WHERE expires_at <= ?1", [now_ms])?;
            Ok(n)
        })
        .await
    }

    /// The lowest seq the server may hand out: above everything it ever stored or saw acked.
    pub async fn load_seq_floor(&self) -> Result<u64, StoreError> {
        self.call(|c| {
            let meta: Option<i64> = c
                .query_row("SELECT value FROM meta WHERE key = 'seq_floor'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let off: Option<i64> = c.query_row("SELECT MAX(seq) FROM offline", [], |r| r.get(0))?;
            let cur: Option<i64> =
                c.query_row("SELECT MAX(acked) FROM device_cursors", [], |r| r.get(0))?;
            Ok([meta, off, cur]
                .into_iter()
                .flatten()
                .map(seq_from_sql)
                .max()
                .unwrap_or(0))
        })
        .await
    }

    /// Keeps `app_key`'s call rooms for the next start (a single node, whenever they changed:
    /// [`crate::Hub::save_changed_rooms`]). One row per app, replaced; the departures it
    /// covers (`version`, the rooms' change count, and below) are deleted in the same
    /// transaction. A snapshot taken earlier but queued later (the periodic save encodes
    /// outside the app's lock) is not written over a newer one.
    pub fn save_rooms(&self, app_key: Arc<str>, version: u64, data: Vec<u8>) -> u64 {
        let written = self.inner.rooms_written.clone();
        self.submit("save call rooms", move |c| {
            let mut written = written.lock().unwrap_or_else(|p| p.into_inner());
            if written.get(&app_key).is_some_and(|&v| v >= version) {
                return Ok(());
            }
            write_rooms(c, &app_key, &data)?;
            c.prepare_cached("DELETE FROM rooms_departures WHERE app_key = ?1 AND version <= ?2")?
                .execute(params![&*app_key, seq_to_sql(version)])?;
            written.insert(app_key, version);
            Ok(())
        })
    }

    /// At start, after the rooms were restored: writes them (as of `version`) and empties the
    /// departure log, whose versions counted from the last run's.
    pub fn reset_rooms(&self, app_key: Arc<str>, version: u64, data: Vec<u8>) {
        let written = self.inner.rooms_written.clone();
        self.submit("reset call rooms", move |c| {
            write_rooms(c, &app_key, &data)?;
            c.execute(
                "DELETE FROM rooms_departures WHERE app_key = ?1",
                [&*app_key],
            )?;
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(app_key, version);
            Ok(())
        });
    }

    /// Logs a call message, or a grace that ran out, that took a member out of a call
    /// (`delivery::Shell::log_departure`): a small row instead of the whole rooms, which a
    /// message's confirmation waits for.
    pub fn log_rooms_departure(
        &self,
        app_key: Arc<str>,
        version: u64,
        t_ms: i64,
        event: Vec<u8>,
    ) -> u64 {
        self.submit("log a call departure", move |c| {
            c.prepare_cached(
                "INSERT INTO rooms_departures (app_key, version, t_ms, event) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![&*app_key, seq_to_sql(version), t_ms, event])?;
            Ok(())
        })
    }

    /// The call rooms the last run saved and the departures it logged after (kept: the rooms
    /// are saved again whenever they change and departures logged before they are confirmed,
    /// so what a crash loses is at most the joins of [`crate::ROOMS_SAVE_INTERVAL`]).
    pub async fn load_rooms(&self, app_key: Arc<str>) -> Result<Option<SavedRooms>, StoreError> {
        self.call(move |c| {
            let snapshot: Option<Vec<u8>> = c
                .query_row(
                    "SELECT data FROM rooms_snapshot WHERE app_key = ?1",
                    [&*app_key],
                    |r| r.get(0),
                )
                .optional()?;
            let mut q = c.prepare(
                "SELECT t_ms, event FROM rooms_departures WHERE app_key = ?1 ORDER BY rowid",
            )?;
            let departures: Vec<(i64, Vec<u8>)> = q
                .query_map([&*app_key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            if snapshot.is_none() && departures.is_empty() {
                return Ok(None);
            }
            // Departures with no snapshot (a crash before the first save): over empty rooms
            // (the empty encoding), so the restore empties the log.
            Ok(Some(SavedRooms {
                snapshot: snapshot.unwrap_or_default(),
                departures,
            }))
        })
        .await
    }

    pub fn save_seq_floor(&self, floor: u64) {
        self.submit("save seq floor", move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('seq_floor', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, ?1)",
                [seq_to_sql(floor)],
            )?;
            Ok(())
        });
    }
}

/// What [`Store::load_rooms`] found: the last rooms snapshot (`RoomsSnapshot`) and the
/// departures (`(t_ms, RoomsEvent)`) logged after it, in order.
#[derive(Debug, Default)]
pub struct SavedRooms {
    pub snapshot: Vec<u8>,
    pub departures: Vec<(i64, Vec<u8>)>,
}

fn write_rooms(c: &Connection, app_key: &str, data: &[u8]) -> Result<(), rusqlite::Error> {
    c.prepare_cached(
        "INSERT INTO rooms_snapshot (app_key, data) VALUES (?1, ?2)
         ON CONFLICT (app_key) DO UPDATE SET data = ?2",
    )?
    .execute(params![app_key, data])?;
    Ok(())
}

/// Writes a stored message's row (replacing one with its seq, or not) and trims the user's
/// queue when a row was written.
fn insert_offline(
    c: &Connection,
    inner: &Inner,
    app_key: &str,
    m: &StoreOffline,
    replace: bool,
) -> Result<(), rusqlite::Error> {
    let sql = if replace {
        "INSERT OR REPLACE INTO offline
         (app_key, user_id, seq, exclude_device, sent_time, expires_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    } else {
        "INSERT OR IGNORE INTO offline
         (app_key, user_id, seq, exclude_device, sent_time, expires_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    };
    let n = c.prepare_cached(sql)?.execute(params![
        app_key,
        &*m.user,
        seq_to_sql(m.seq),
        m.exclude_device.as_deref().unwrap_or(""),
        m.sent_time,
        m.expires_at,
        &m.payload[..]
    ])?;
    if n > 0 {
        inner.offline_depth.fetch_add(n as i64, Ordering::Relaxed);
        inner
            .offline_bytes
            .fetch_add(m.payload.len() as i64, Ordering::Relaxed);
        trim_offline(c, inner, app_key, &m.user, m.max_per_user)?;
    }
    Ok(())
}

/// Trims a user's stored messages to the newest `max_per_user`.
fn trim_offline(
    c: &Connection,
    inner: &Inner,
    app_key: &str,
    user_id: &str,
    max_per_user: usize,
) -> Result<(), rusqlite::Error> {
    let mut trim = c.prepare_cached(
        "DELETE FROM offline WHERE app_key = ?1 AND user_id = ?2 AND seq <= (
             SELECT seq FROM offline WHERE app_key = ?1 AND user_id = ?2
             ORDER BY seq DESC LIMIT 1 OFFSET ?3)
         RETURNING length(payload)",
    )?;
    let (removed, bytes) = deleted(trim.query(params![
        app_key,
        user_id,
        i64::try_from(max_per_user).unwrap_or(i64::MAX)
    ])?)?;
    inner
        .offline_depth
        .fetch_sub(removed as i64, Ordering::Relaxed);
    inner.offline_bytes.fetch_sub(bytes, Ordering::Relaxed);
    Ok(())
}

/// (rows, payload bytes) of a `DELETE … RETURNING length(payload)`.
fn deleted(mut rows: rusqlite::Rows<'_>) -> Result<(usize, i64), rusqlite::Error> {
    let (mut n, mut bytes) = (0usize, 0i64);
    while let Some(r) = rows.next()? {
        n += 1;
        bytes += r.get::<_, Option<i64>>(0)?.unwrap_or(0);
    }
    Ok((n, bytes))
}

fn upsert_client_seq(
    c: &Connection,
    app_key: &str,
    s: &SenderSeq,
    now_ms: i64,
) -> Result<(), rusqlite::Error> {
    c.prepare_cached(
        "INSERT INTO client_seqs (app_key, user_id, device_id, instance, client_seq, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (app_key, user_id, device_id, instance) DO UPDATE SET
             client_seq = MAX(client_seq, ?5), updated_at = ?6",
    )?
    .execute(params![
        app_key,
        &*s.user,
        &*s.device,
        instance_to_sql(s.instance),
        seq_to_sql(s.client_seq),
        now_ms
    ])?;
    Ok(())
}

fn worker(conn: Connection, rx: std::sync::mpsc::Receiver<Cmd>, inner: &Progress) {
    let mut batch: Vec<Job> = Vec::new();
    let mut stop = false;
    let mut last = 0;
    while !stop {
        match rx.recv() {
            Ok(Cmd::Job(t, j)) => {
                batch.push(j);
                last = t;
            }
            Ok(Cmd::Stop) | Err(_) => break,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Cmd::Job(t, j)) => {
                    batch.push(j);
                    last = t;
                }
                Ok(Cmd::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // Always a transaction: a job's statements (a stored message and its sender's
        // client_seq) commit together.
        let tx = conn.execute_batch("BEGIN").is_ok();
        for job in batch.drain(..) {
            // A panicking job must not take the database thread (and every later write) down.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn))).is_err() {
                tracing::error!("database job panicked");
            }
        }
        if tx {
            if let Err(e) = conn.execute_batch("COMMIT") {
                // Nothing better to do than log: holding confirmations forever would stall
                // every connection waiting on them.
                tracing::error!(error = %e, "database commit failed");
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        inner.committed.store(last, Ordering::Release);
        inner.commits.notify_waiters();
    }
    // Finish whatever is still queued.
    while let Ok(Cmd::Job(t, j)) = rx.try_recv() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| j(&conn)));
        last = t;
    }
    inner.committed.store(last, Ordering::Release);
    inner.commits.notify_waiters();
}

/// Runs `sql` once for each of `users` with the parameters `params(user)`: the Server API's
/// writes that take a list of users, one statement prepared once.
fn for_each_user<'a, P: rusqlite::Params>(
    c: &Connection,
    users: &'a [String],
    sql: &str,
    params: impl Fn(&'a str) -> P,
) -> Result<(), rusqlite::Error> {
    let mut statement = c.prepare_cached(sql)?;
    for u in users {
        statement.execute(params(u))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cached statement stays cached: more than the cache holds would evict one another
    /// on a busy connection (each a new compile, as `prepare` would cost).
    #[test]
    fn the_statement_cache_holds_every_cached_statement() {
        let cached = include_str!("store.rs")
            .matches(concat!("prepare", "_cached("))
            .count();
        assert!(
            cached <= STATEMENT_CACHE,
            "{cached} cached statements, cache of {STATEMENT_CACHE}"
        );
    }

    /// A store on a fresh file (returned with its directory, which must outlive it).
    fn fresh() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        (dir, s)
    }

    /// A stored message of `user` with `seq`, 1-byte payload `b`, kept for 1 s of test time.
    fn row(user: &Arc<str>, seq: u64, expires_at: i64, payload: &[u8], max: usize) -> StoreOffline {
        StoreOffline {
            user: user.clone(),
            seq,
            exclude_device: None,
            sent_time: 1,
            expires_at,
            payload: bytes::Bytes::copy_from_slice(payload),
            max_per_user: max,
            sender: None,
        }
    }

    #[tokio::test]
    async fn upsert_keeps_unspecified_fields() {
        let (_dir, s) = fresh();
        s.upsert_user("app", "u1", Some("Alice"), Some("http://p"), 1)
            .await
            .unwrap();
        s.upsert_user("app", "u1", None, None, 2).await.unwrap();
        let row = s.get_user("app", "u1").await.unwrap().unwrap();
        assert_eq!(row.name, "Alice");
        assert_eq!(row.portrait_uri, "http://p");
        assert_eq!(row.updated_at, 2);
        assert!(s.get_user("app", "nobody").await.unwrap().is_none());
        s.close().await;
    }

    #[tokio::test]
    async fn tickets_follow_the_queue_and_commit_in_order() {
        let (_dir, s) = fresh();
        let (app, user): (Arc<str>, Arc<str>) = ("app".into(), "bob".into());
        let t1 = s.store_offline(
            app.clone(),
            StoreOffline {
                user: user.clone(),
                seq: 1,
                exclude_device: None,
                sent_time: 1,
                expires_at: i64::MAX,
                payload: bytes::Bytes::from_static(b"x"),
                max_per_user: 10,
                sender: Some(SenderSeq {
                    user: "alice".into(),
                    device: "a1".into(),
                    instance: 5,
                    client_seq: 3,
                }),
            },
        );
        let t2 = s.save_nonce(app.clone(), "n".into(), i64::MAX);
        assert!(t2 > t1 && t1 > 0);
        tokio::time::timeout(std::time::Duration::from_secs(5), s.wait_committed(t2))
            .await
            .expect("committed");
        assert!(s.committed() >= t2);
        let (v, read) = s
            .accepted_upto(app.clone(), "alice".into(), "a1".into(), 5)
            .await
            .unwrap();
        assert_eq!(v, 3);
        assert!(read > t2);
        assert_eq!(s.load_nonces(0).await.unwrap().len(), 1);
        s.close().await;
    }

    #[tokio::test]
    async fn offline_queue_is_capped_ordered_and_expires() {
        let (_dir, s) = fresh();
        let (app, user): (Arc<str>, Arc<str>) = ("app".into(), "bob".into());
        for seq in 1..=5u64 {
            s.store_offline(
                app.clone(),
                row(
                    &user,
                    seq * 10,
                    if seq == 5 { 50 } else { 1_000 },
                    &[seq as u8],
                    3,
                ),
            );
        }
        let d = s
            .sync_data(app.clone(), user.clone(), "d".into(), 0, 100)
            .await
            .unwrap();
        // Capped to the newest 3 (30, 40, 50); 50 has expired at t=100.
        let seqs: Vec<u64> = d.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![30, 40]);
        assert_eq!(s.offline_depth(), 3);
        s.save_cursor(app.clone(), user.clone(), "d".into(), 30, 1);
        let d = s
            .sync_data(app.clone(), user.clone(), "d".into(), 0, 100)
            .await
            .unwrap();
        assert_eq!(d.acked, 30);
        assert_eq!(d.messages.len(), 1);
        assert_eq!(d.devices, vec!["d".to_string()]);
        s.delete_offline_upto(app.clone(), user.clone(), "d".into(), 40);
        assert_eq!(s.sweep(100, 1_000_000).await.unwrap(), 1);
        assert_eq!(s.offline_depth(), 0);
        assert_eq!(s.load_seq_floor().await.unwrap(), 30);
        s.save_seq_floor(99);
        assert_eq!(s.load_seq_floor().await.unwrap(), 99);
        s.close().await;
    }

    #[tokio::test]
    async fn a_row_kept_for_devices_waits_for_each_of_their_acks() {
        let (_dir, s) = fresh();
        let (app, user): (Arc<str>, Arc<str>) = ("app".into(), "bob".into());
        let keep = |device: &str, seq: u64| {
            s.keep_for_device(app.clone(), device.into(), row(&user, seq, 1_000, b"m", 10))
        };
        keep("d1", 10);
        keep("d2", 10); // the same row, now also waiting for d2
        keep("d1", 20);
        let depth = || s.offline_depth();
        s.flush().await.unwrap();
        assert_eq!(depth(), 2, "one row per message, whatever the devices");
        // Another device's ack deletes neither; d1's deletes the row only d1 waited for.
        s.delete_offline_upto(app.clone(), user.clone(), "d3".into(), 20);
        s.flush().await.unwrap();
        assert_eq!(depth(), 2);
        s.delete_offline_upto(app.clone(), user.clone(), "d1".into(), 20);
        s.flush().await.unwrap();
        assert_eq!(depth(), 1);
        s.delete_offline_upto(app.clone(), user.clone(), "d2".into(), 20);
        s.flush().await.unwrap();
        assert_eq!(depth(), 0);
        // A plain offline row (kept for nobody) still goes with the first ack.
        s.store_offline(app.clone(), row(&user, 30, 1_000, b"m", 10));
        s.delete_offline_upto(app.clone(), user.clone(), "d3".into(), 30);
        s.flush().await.unwrap();
        assert_eq!(depth(), 0);
        // Pending marks of an expired row go with the sweep.
        keep("d1", 40);
        assert_eq!(s.sweep(2_000, 1_000_000).await.unwrap(), 1);
        let left: i64 = s
            .call(|c| c.query_row("SELECT COUNT(*) FROM offline_pending", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(left, 0);
        s.close().await;
    }

    /// The periodic save encodes outside the app's lock, so its write can be queued after a
    /// newer snapshot's (a departure's): the older one is not written over it.
    #[tokio::test]
    async fn an_older_rooms_snapshot_queued_later_does_not_replace_a_newer_one() {
        let (_dir, s) = fresh();
        let (app, other): (Arc<str>, Arc<str>) = (Arc::from("app"), Arc::from("other"));
        s.save_rooms(app.clone(), 7, b"newer".to_vec());
        s.save_rooms(app.clone(), 6, b"older".to_vec());
        s.save_rooms(app.clone(), 7, b"same".to_vec());
        // Versions are per app.
        s.save_rooms(other.clone(), 1, b"first".to_vec());
        let snapshot = |k: &Arc<str>| {
            let k = k.clone();
            let s = s.clone();
            async move { s.load_rooms(k).await.unwrap().map(|r| r.snapshot) }
        };
        assert_eq!(snapshot(&app).await.as_deref(), Some(&b"newer"[..]));
        assert_eq!(snapshot(&other).await.as_deref(), Some(&b"first"[..]));
        s.save_rooms(app.clone(), 8, b"latest".to_vec());
        assert_eq!(snapshot(&app).await.as_deref(), Some(&b"latest"[..]));
        s.close().await;
    }

    /// A departure is logged with a ticket to wait for; a rooms save deletes the departures
    /// it covers (its version and below) and keeps later ones; the restart's reset empties
    /// the log (the next run counts versions anew).
    #[tokio::test]
    async fn departures_are_logged_until_a_save_covers_them() {
        let (_dir, s) = fresh();
        let app: Arc<str> = Arc::from("app");
        let departures = || {
            let (s, app) = (s.clone(), app.clone());
            async move {
                let r = s.load_rooms(app).await.unwrap();
                r.map(|r| r.departures.into_iter().map(|d| d.1).collect::<Vec<_>>())
            }
        };
        assert!(s.load_rooms(app.clone()).await.unwrap().is_none());
        let t = s.log_rooms_departure(app.clone(), 3, 10, b"d3".to_vec());
        assert!(t > 0);
        // No snapshot yet: the departures over empty rooms.
        let r = s.load_rooms(app.clone()).await.unwrap().unwrap();
        assert!(r.snapshot.is_empty());
        assert_eq!(r.departures, [(10, b"d3".to_vec())]);
        s.log_rooms_departure(app.clone(), 5, 11, b"d5".to_vec());
        s.save_rooms(app.clone(), 4, b"snap4".to_vec());
        assert_eq!(departures().await, Some(vec![b"d5".to_vec()]));
        s.reset_rooms(app.clone(), 1, b"restored".to_vec());
        assert_eq!(departures().await, Some(vec![]));
        // The reset's version is the one written: an older periodic save is skipped.
        s.save_rooms(app.clone(), 1, b"stale".to_vec());
        let r = s.load_rooms(app.clone()).await.unwrap().unwrap();
        assert_eq!(r.snapshot, b"restored");
        s.close().await;
    }
}
