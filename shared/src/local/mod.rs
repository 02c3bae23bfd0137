//! Adapters for `aftercare dev`: one SQLite file holds customers, dedupe, timeline and
//! pending schedules; sends become `.eml` files in an outbox folder. No AWS, no Docker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::{CustomerId, CustomerState, EventId, TimelineEntry};
use crate::engine::DueStep;
use crate::stats::{Metric, StatCount, StatScope};
use crate::ports::{Commit, CommitOutcome, EmailSent, Mailer, OutgoingEmail, PortError, Publisher, ScheduledStep, Scheduler, Store, Versioned};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_events (customer TEXT NOT NULL, event_id TEXT NOT NULL, occurred_at TEXT NOT NULL, body TEXT NOT NULL,
                                        PRIMARY KEY (customer, event_id));
CREATE TABLE IF NOT EXISTS timeline (seq INTEGER PRIMARY KEY AUTOINCREMENT, customer TEXT NOT NULL, at TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS timeline_by_customer ON timeline (customer, at, seq);
CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, at TEXT NOT NULL, due TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stats (day TEXT NOT NULL, scope TEXT NOT NULL, metric TEXT NOT NULL, value INTEGER NOT NULL,
                                  PRIMARY KEY (day, scope, metric));
";

fn sql_error(e: rusqlite::Error) -> PortError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            PortError::Retryable(format!("SQLite busy: {e}"))
        }
        other => PortError::Fatal(format!("SQLite: {other}")),
    }
}

fn json_error(e: serde_json::Error) -> PortError {
    PortError::Fatal(format!("stored JSON does not decode: {e}"))
}

/// Sortable text form of an instant (fixed width, UTC).
fn sortable(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One SQLite database shared by the local store and scheduler.
#[derive(Clone)]
pub struct LocalDb {
    conn: Arc<Mutex<Connection>>,
}

impl LocalDb {
    pub fn open(path: &Path) -> anyhow::Result<LocalDb> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(LocalDb { conn: Arc::new(Mutex::new(conn)) })
    }

    pub fn in_memory() -> anyhow::Result<LocalDb> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(LocalDb { conn: Arc::new(Mutex::new(conn)) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct SqliteStore {
    db: LocalDb,
}

impl SqliteStore {
    pub fn new(db: LocalDb) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn load(&self, customer: &CustomerId) -> Result<Option<Versioned<CustomerState>>, PortError> {
        let conn = self.db.lock();
        let row: Option<(i64, String)> = conn
            .query_row("SELECT version, state FROM customers WHERE id = ?1", [customer.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sql_error)?;
        row.map(|(version, state)| Ok(Versioned { value: serde_json::from_str(&state).map_err(json_error)?, version: version as u64 })).transpose()
    }

    async fn event_seen(&self, customer: &CustomerId, event: &EventId) -> Result<bool, PortError> {
        let conn = self.db.lock();
        conn.query_row("SELECT 1 FROM seen_events WHERE customer = ?1 AND event_id = ?2", [customer.as_str(), event.as_str()], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(sql_error)
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<CommitOutcome, PortError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(sql_error)?;
        let current: Option<i64> =
            tx.query_row("SELECT version FROM customers WHERE id = ?1", [commit.customer_id.as_str()], |r| r.get(0)).optional().map_err(sql_error)?;
        if current.map(|v| v as u64) != commit.expected_version {
            return Ok(CommitOutcome::VersionConflict);
        }
        if let Some(event) = &commit.event {
            let body = serde_json::to_string(event).map_err(json_error)?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO seen_events (customer, event_id, occurred_at, body) VALUES (?1, ?2, ?3, ?4)",
                    params![commit.customer_id.as_str(), event.id.as_str(), sortable(event.occurred_at_utc()), body],
                )
                .map_err(sql_error)?;
            if inserted == 0 {
                return Ok(CommitOutcome::DuplicateEvent);
            }
        }
        let version = current.unwrap_or(0) + 1;
        let state = serde_json::to_string(&commit.state).map_err(json_error)?;
        tx.execute(
            "INSERT INTO customers (id, version, state) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET version = ?2, state = ?3",
            params![commit.customer_id.as_str(), version, state],
        )
        .map_err(sql_error)?;
        insert_timeline(&tx, &commit.customer_id, &commit.timeline)?;
        for count in &commit.stats {
            tx.execute(
                "INSERT INTO stats (day, scope, metric, value) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(day, scope, metric) DO UPDATE SET value = value + ?4",
                params![count.day.to_string(), count.scope.encode(), count.metric.name(), count.value],
            )
            .map_err(sql_error)?;
        }
        tx.commit().map_err(sql_error)?;
        Ok(CommitOutcome::Committed { version: version as u64 })
    }

    async fn append_timeline(&self, customer: &CustomerId, entries: &[TimelineEntry]) -> Result<(), PortError> {
        let conn = self.db.lock();
        insert_timeline(&conn, customer, entries)
    }

    async fn timeline(&self, customer: &CustomerId) -> Result<Vec<TimelineEntry>, PortError> {
        let conn = self.db.lock();
        let mut statement = conn.prepare("SELECT entry FROM timeline WHERE customer = ?1 ORDER BY at, seq").map_err(sql_error)?;
        let rows = statement.query_map([customer.as_str()], |r| r.get::<_, String>(0)).map_err(sql_error)?;
        rows.map(|row| serde_json::from_str(&row.map_err(sql_error)?).map_err(json_error)).collect()
    }

    async fn stats(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StatCount>, PortError> {
        let conn = self.db.lock();
        let mut statement = conn.prepare("SELECT day, scope, metric, value FROM stats WHERE day >= ?1 AND day <= ?2").map_err(sql_error)?;
        let rows = statement
            .query_map([from.to_string(), to.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)))
            .map_err(sql_error)?;
        let mut counts = Vec::new();
        for row in rows {
            let (day, scope, metric, value) = row.map_err(sql_error)?;
            let (Ok(day), Some(scope), Some(metric)) = (day.parse::<NaiveDate>(), StatScope::decode(&scope), Metric::parse(&metric)) else {
                return Err(PortError::Fatal(format!("stats row ({day}, {scope}, {metric}) does not decode")));
            };
            counts.push(StatCount::new(day, scope, metric, value));
        }
        Ok(crate::stats::merge(counts))
    }

    async fn erase(&self, customer: &CustomerId) -> Result<(), PortError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(sql_error)?;
        for table in ["DELETE FROM customers WHERE id = ?1", "DELETE FROM seen_events WHERE customer = ?1", "DELETE FROM timeline WHERE customer = ?1"] {
            tx.execute(table, [customer.as_str()]).map_err(sql_error)?;
        }
        tx.commit().map_err(sql_error)
    }
}

fn insert_timeline(conn: &Connection, customer: &CustomerId, entries: &[TimelineEntry]) -> Result<(), PortError> {
    for entry in entries {
        let json = serde_json::to_string(entry).map_err(json_error)?;
        conn.execute("INSERT INTO timeline (customer, at, entry) VALUES (?1, ?2, ?3)", params![customer.as_str(), sortable(entry.at), json])
            .map_err(sql_error)?;
    }
    Ok(())
}

/// Pending steps in SQLite; `aftercare dev`'s timer loop fires them with `due_now`.
pub struct SqliteScheduler {
    db: LocalDb,
}

impl SqliteScheduler {
    pub fn new(db: LocalDb) -> Self {
        Self { db }
    }

    /// Every schedule due at or before `now`, earliest first (left in place until `delete`).
    pub fn due_now(&self, now: DateTime<Utc>) -> Result<Vec<ScheduledStep>, PortError> {
        let conn = self.db.lock();
        let mut statement = conn.prepare("SELECT name, at, due FROM schedules WHERE at <= ?1 ORDER BY at, name").map_err(sql_error)?;
        let rows = statement
            .query_map([sortable(now)], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(sql_error)?;
        rows.map(|row| {
            let (name, at, due) = row.map_err(sql_error)?;
            let at = DateTime::parse_from_rfc3339(&at).map_err(|e| PortError::Fatal(format!("schedule {name}: bad time {at:?}: {e}")))?.with_timezone(&Utc);
            let due: DueStep = serde_json::from_str(&due).map_err(json_error)?;
            Ok(ScheduledStep { name: name.into(), at, due })
        })
        .collect()
    }

    pub fn pending_count(&self) -> Result<usize, PortError> {
        self.db.lock().query_row("SELECT COUNT(*) FROM schedules", [], |r| r.get::<_, i64>(0)).map(|n| n as usize).map_err(sql_error)
    }
}

#[async_trait]
impl Scheduler for SqliteScheduler {
    async fn create(&self, step: &ScheduledStep) -> Result<(), PortError> {
        let due = serde_json::to_string(&step.due).map_err(json_error)?;
        self.db
            .lock()
            .execute("INSERT OR IGNORE INTO schedules (name, at, due) VALUES (?1, ?2, ?3)", params![&*step.name, sortable(step.at), due])
            .map(|_| ())
            .map_err(sql_error)
    }

    async fn delete(&self, name: &str) -> Result<(), PortError> {
        self.db.lock().execute("DELETE FROM schedules WHERE name = ?1", [name]).map(|_| ()).map_err(sql_error)
    }
}

/// Writes each email as an RFC 5322 `.eml` file, openable in any mail client.
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &OutgoingEmail<'_>) -> Result<String, PortError> {
        use mail_builder::headers::raw::Raw;
        use mail_builder::headers::text::Text;
        let now = Utc::now();
        let tag = |name: &str| email.tag(name).unwrap_or_default().to_owned();
        let id = format!("{}-{}-{}", now.format("%Y%m%dT%H%M%S%.6f"), tag("flow"), tag("step"));
        let mut message = mail_builder::MessageBuilder::new()
            .from((email.from_name.as_ref(), email.from_address.as_ref()))
            .to(email.to.as_ref())
            .subject(email.subject.as_ref())
            .message_id(format!("{id}@aftercare.local"))
            .text_body(email.text.as_ref())
            .html_body(email.html.as_ref());
        if let Some(reply_to) = &email.reply_to {
            message = message.reply_to(reply_to.as_ref());
        }
        // Our headers are ASCII by construction (List-Unsubscribe must not be encoded).
        for (name, value) in &email.headers {
            message = message.header(*name, Raw::new(value.as_ref()));
        }
        for (name, value) in &email.tags {
            message = message.header(format!("X-Aftercare-Tag-{name}"), Text::new(value.as_ref()));
        }
        let raw = message.write_to_string().map_err(|e| PortError::Fatal(format!("cannot build .eml: {e}")))?;
        let path = self.dir.join(format!("{id}.eml"));
        std::fs::write(&path, raw).map_err(|e| PortError::Retryable(format!("cannot write {}: {e}", path.display())))?;
        Ok(id)
    }
}

/// Integrator events locally: one JSON line each in the log.
pub struct LogPublisher;

#[async_trait]
impl Publisher for LogPublisher {
    async fn email_sent(&self, event: &EmailSent) -> Result<(), PortError> {
        tracing::info!(target: "aftercare::events", detail = %serde_json::to_string(event).unwrap_or_default(), "Email Sent");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_store_passes_the_contract() {
        let db = LocalDb::in_memory().unwrap();
        let store = SqliteStore::new(db.clone());
        crate::store_contract::run_all(&store, "sqlite").await;
        // Erased: no row of any table mentions the customer any more (the contract re-created
        // the id as a bare new customer at the end; that row is the only one allowed).
        let conn = db.lock();
        let mentions = |sql: &str| conn.query_row(sql, ["%sqlite-erase-me%"], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(mentions("SELECT COUNT(*) FROM timeline WHERE customer LIKE ?1 OR entry LIKE ?1"), 0);
        assert_eq!(mentions("SELECT COUNT(*) FROM stats WHERE scope LIKE ?1 OR metric LIKE ?1"), 0);
        assert_eq!(mentions("SELECT COUNT(*) FROM seen_events WHERE customer LIKE ?1 OR body LIKE ?1"), 1, "only the new evt-1");
        assert_eq!(mentions("SELECT COUNT(*) FROM customers WHERE id LIKE ?1 AND state LIKE '%example.jp%'"), 0);
    }

    #[tokio::test]
    async fn schedules_fire_in_order_and_creation_is_idempotent() {
        let db = LocalDb::in_memory().unwrap();
        let scheduler = SqliteScheduler::new(db);
        let due = |step: &str| DueStep { customer_id: CustomerId::parse("c1").unwrap(), enrollment_id: "f:k".into(), step_id: step.into(), generation: 1 };
        let later = ScheduledStep { name: "b".into(), at: crate::testing::at("2026-11-20T02:00:00Z"), due: due("later") };
        let sooner = ScheduledStep { name: "a".into(), at: crate::testing::at("2026-11-20T01:00:00Z"), due: due("sooner") };
        scheduler.create(&later).await.unwrap();
        scheduler.create(&sooner).await.unwrap();
        scheduler.create(&sooner).await.unwrap();
        assert_eq!(scheduler.pending_count().unwrap(), 2);
        assert_eq!(scheduler.due_now(crate::testing::at("2026-11-20T01:30:00Z")).unwrap(), vec![sooner.clone()]);
        assert_eq!(scheduler.due_now(crate::testing::at("2026-11-20T03:00:00Z")).unwrap(), vec![sooner, later]);
        scheduler.delete("a").await.unwrap();
        scheduler.delete("a").await.unwrap();
        assert_eq!(scheduler.pending_count().unwrap(), 1);
    }

    #[tokio::test]
    async fn outbox_writes_a_mime_message() {
        let dir = std::env::temp_dir().join(format!("aftercare-outbox-{}", std::process::id()));
        let mailer = OutboxMailer::new(dir.clone()).unwrap();
        let email = OutgoingEmail {
            from_name: "珈琲店".into(),
            from_address: "hello@example.com".into(),
            to: "c1@example.jp".into(),
            reply_to: None,
            subject: "ご注文ありがとうございます".into(),
            html: "<p>こんにちは</p>".into(),
            text: "こんにちは".into(),
            headers: vec![("X-Aftercare-Customer".into(), "c1".into())],
            tags: vec![("flow".into(), "order_confirmation".into()), ("step".into(), "confirm".into())],
        };
        let id = mailer.send(&email).await.unwrap();
        let raw = std::fs::read_to_string(dir.join(format!("{id}.eml"))).unwrap();
        assert!(raw.contains("To: <c1@example.jp>") || raw.contains("To: c1@example.jp"), "{raw}");
        assert!(raw.contains("Subject: =?utf-8?"), "non-ASCII subject is encoded: {raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("X-Aftercare-Customer: c1"), "{raw}");
        assert!(!raw.contains("=?us-ascii"), "headers are not encoded: {raw}");
        std::fs::remove_dir_all(dir).ok();
    }
}
