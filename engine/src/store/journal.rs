//! The SQLite store's inbox journal: where a webhook delivery is on disk before its 202.
//!
//! Storing a delivery as an `inbox` row right away makes the single SQLite writer pay, before
//! the sender gets its answer, for a B-tree insert, a WAL page per row (a packed push body
//! fills most of a page), a page of the `(source, delivery_id)` index at a random place (the
//! ids are random), and the checkpoint that copies all of it again. Under a burst that writer
//! was the limit of the whole endpoint. So [`Journal::append`] writes a batch of deliveries to
//! an append-only file instead, one `write` per batch, and answers once it is written: like a
//! commit in WAL mode with `synchronous=NORMAL`, the record then survives a crash of the
//! process (kill -9), and only a power loss can take back the last ones. The rows reach
//! `inbox` when intake asks for received deliveries ([`Journal::import`]), in the transaction
//! that also moves the journal's position (table `inbox_journal`) past them — so each record
//! is imported exactly once, and the import runs at intake's pace rather than the burst's.
//!
//! What must stay true:
//! - a delivery is answered only after its whole record is in the file;
//! - its inbox id is taken when it is journaled ([`Inserted::New`] is the id its row gets);
//! - a (source, delivery id) has one id: a later copy is answered as a duplicate, whether the
//!   first is still in the journal or already in `inbox`;
//! - at open, everything the journal holds past the position is imported before the store is
//!   used, and a record cut short by a crash (never answered) is dropped;
//! - one process owns a database's journal (an exclusive lock on `<database>-inbox.lock`).
//!   Another process opening the same database — `gantry status` next to `gantry serve` —
//!   reads it as usual, but refuses to store deliveries.
//!
//! The journal is a sequence of generations, files `<database>-inbox.<generation>`; once
//! everything in the current one is imported and it has grown past [`ROTATE_BYTES`], a new one
//! starts and the old one is deleted.
//!
//! Record layout (little-endian): payload length u32, CRC-32 of the payload u32, payload: id
//! i64, received_at i64, flags u8 (1 = body packed, 2 = has a detail), then source, delivery
//! id, event type, status, detail and body, each as a u32 length and its bytes. Written by
//! hand: no binary serialization crate is in the dependency tree, and the layout is a few
//! fields behind a checksum that tells a torn tail from a whole record.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use super::body;
use super::{DeliveryStatus, Inserted, NewDelivery};
use crate::error::StoreError;
use crate::model::{Millis, now_millis};

/// A generation whose records are all imported starts over once it is this large.
const ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// The largest payload a record may claim (webhook bodies are limited to 25 MB at the
/// endpoint); a damaged length beyond it is not read.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// One import reads at most about this many bytes of records (and at least one record).
const IMPORT_BYTES: u64 = 16 * 1024 * 1024;

/// Records imported at open per transaction.
const OPEN_IMPORT_RECORDS: usize = 4096;

const HEADER: usize = 8;
const PACKED: u8 = 1;
const HAS_DETAIL: u8 = 2;

/// A database's inbox journal, owned by this process.
#[derive(Debug)]
pub(crate) struct Journal {
    database: PathBuf,
    /// Held for the lock on `<database>-inbox.lock`.
    _lock: File,
    /// A generation starts over once wholly imported and at least this large.
    rotate_bytes: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    generation: u64,
    /// The current generation, written at `written`.
    file: File,
    /// The same file, for reading records back (positioned reads).
    reader: Arc<File>,
    /// Bytes of whole records written (every one answered or about to be).
    written: u64,
    /// Position up to which records are in `inbox`.
    imported: u64,
    next_id: i64,
    /// Every (source, delivery id) journaled or in `inbox`, and the records not imported yet.
    known: Known,
    /// Set when a failed write could not be cut back: the file's tail is unknown, so nothing
    /// more is appended to it.
    broken: Option<String>,
}

/// What is known of a record not imported yet.
#[derive(Debug, Clone)]
struct Pending {
    id: i64,
    status: DeliveryStatus,
    detail: Option<String>,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: i64,
    received_at: Millis,
    source: String,
    delivery_id: String,
    event_type: String,
    status: String,
    detail: Option<String>,
    body: Vec<u8>,
    packed: bool,
}

/// Why reading a record stopped short.
#[derive(Debug)]
enum Damage {
    /// The file ends inside the record: a write cut short.
    Torn,
    /// The record is whole but its checksum or fields are wrong.
    Bad(String),
    /// Reading failed.
    Io(std::io::Error),
}

impl Journal {
    /// Opens the journal of the database at `database`, importing whatever an earlier process
    /// left in it; `None` when another process owns it.
    pub(crate) async fn open(database: &Path, conn: &mut SqliteConnection) -> Result<Option<Self>, StoreError> {
        let lock_path = sibling(database, "lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path, "open the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(error)) => return Err(io_error(&lock_path, "lock")(error)),
        }
        let (generation, position): (i64, i64) =
            sqlx::query_as("SELECT generation, position FROM inbox_journal WHERE id = 1")
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::query("read the inbox journal's position"))?;
        let (generation, position) = (generation.max(0) as u64, position.max(0) as u64);
        let found_files = generations(database)?;
        let mut newest = generation;
        for (found, path) in &found_files {
            let (found, path) = (*found, path.as_path());
            newest = newest.max(found);
            if found < generation {
                continue;
            }
            let start = if found == generation { position } else { 0 };
            let imported = import_file(path, found, start, conn).await?;
            if imported > 0 {
                tracing::info!(journal = %path.display(), deliveries = imported, "imported deliveries left in the inbox journal");
            }
        }
        // Everything is in `inbox` now: start a fresh generation, then drop the old files.
        let next = newest + 1;
        let path = generation_path(database, next);
        let file = create(&path)?;
        set_position(conn, next, 0).await?;
        for (_, old) in &found_files {
            remove(old);
        }
        let next_id: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'inbox'), 0), \
                       COALESCE((SELECT MAX(id) FROM inbox), 0)) + 1",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::query("find the next inbox id"))?;
        let reader = Arc::new(file.try_clone().map_err(io_error(&path, "open for reading"))?);
        let state = State {
            generation: next,
            file,
            reader,
            written: 0,
            imported: 0,
            next_id,
            known: Known::load(conn).await?,
            broken: None,
        };
        Ok(Some(Self {
            database: database.to_path_buf(),
            _lock: lock,
            rotate_bytes: AtomicU64::new(ROTATE_BYTES),
            state: Mutex::new(state),
        }))
    }

    /// The error for storing a delivery in a database whose journal another process owns.
    pub(crate) fn not_owned(database: &Path) -> StoreError {
        let path = sibling(database, "lock");
        io_error(&path, "another gantry process holds this database's inbox; deliveries are stored through it")(
            std::io::Error::from(std::io::ErrorKind::WouldBlock),
        )
    }

    /// Journals the new deliveries of `deliveries` in one write and answers each: new with the
    /// id its inbox row will have, or a duplicate of the first copy (journaled earlier, in
    /// `inbox` — looked up through `reader` — or earlier in the same batch).
    pub(crate) async fn append(
        &self,
        reader: &SqlitePool,
        deliveries: &[NewDelivery<'_>],
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut state = self.state.lock().await;
        if let Some(reason) = &state.broken {
            return Err(StoreError::corrupt("inbox journal", reason.clone()));
        }
        let mut answers: Vec<Option<Inserted>> = vec![None; deliveries.len()];
        // Index in the batch of each id's first copy; ids neither journaled nor in this batch
        // before must be looked up in `inbox`.
        let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(deliveries.len());
        let mut unknown: Vec<&str> = Vec::new();
        let hashes: Vec<u64> = deliveries.iter().map(|d| state.known.hash(d.source, d.delivery_id)).collect();
        for (index, delivery) in deliveries.iter().enumerate() {
            let key = (delivery.source, delivery.delivery_id);
            // Most deliveries are new without a look-up.
            let (may_be_known, pending) = state.known.find_hashed(hashes[index], key.0, key.1);
            if let Some(id) = pending.map(|p| p.id) {
                answers[index] = Some(Inserted::Duplicate(id));
            } else if let std::collections::hash_map::Entry::Vacant(entry) = first.entry(key) {
                entry.insert(index);
                if may_be_known {
                    unknown.push(delivery.delivery_id);
                }
            }
        }
        let mut stored: HashMap<(String, String), i64> = HashMap::new();
        if !unknown.is_empty() {
            // `inbox` holds no row for a pending record, and a record stops being pending only
            // after its import committed: a seen pair that is not pending is in `inbox` if it
            // was ever journaled.
            let ids = serde_json::to_string(&unknown).map_err(|e| StoreError::corrupt("delivery ids", e))?;
            let rows = sqlx::query(
                "SELECT id, source, delivery_id FROM inbox WHERE delivery_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(ids)
            .fetch_all(reader)
            .await
            .map_err(StoreError::query("look up the known deliveries of a batch"))?;
            for row in rows {
                stored.insert((row.get("source"), row.get("delivery_id")), row.get("id"));
            }
        }
        let now = now_millis();
        let mut buffer = Vec::new();
        let mut journaled = Vec::new();
        let mut next_id = state.next_id;
        for (index, delivery) in deliveries.iter().enumerate() {
            if answers[index].is_some() || first.get(&(delivery.source, delivery.delivery_id)) != Some(&index) {
                continue;
            }
            let key = (delivery.source.to_string(), delivery.delivery_id.to_string());
            if let Some(&id) = stored.get(&key) {
                answers[index] = Some(Inserted::Duplicate(id));
                continue;
            }
            let id = next_id;
            next_id += 1;
            encode(&mut buffer, id, now, delivery);
            answers[index] = Some(Inserted::New(id));
            let pending = Pending { id, status: delivery.status, detail: delivery.detail.map(str::to_string) };
            journaled.push((hashes[index], key, pending));
        }
        if !buffer.is_empty() {
            // Positioned: after a failed write is cut back, the next one starts where it did.
            if let Err(error) = state.file.write_all_at(&buffer, state.written) {
                // Cut a partial write back off, so the next batch follows whole records.
                let written = state.written;
                if let Err(cut) = state.file.set_len(written) {
                    state.broken = Some(format!("a failed write could not be cut back ({cut}) after: {error}"));
                }
                return Err(io_error(&generation_path(&self.database, state.generation), "append")(error));
            }
            state.written += buffer.len() as u64;
            state.next_id = next_id;
            for (hash, key, pending) in journaled {
                state.known.journaled(hash, key, pending);
            }
        }
        // Later copies within the batch answer as duplicates of the first (answered above: it
        // comes earlier).
        for (index, delivery) in deliveries.iter().enumerate() {
            if answers[index].is_none() {
                let first = first.get(&(delivery.source, delivery.delivery_id)).and_then(|&f| answers[f]);
                answers[index] = first.map(|(Inserted::New(id) | Inserted::Duplicate(id))| Inserted::Duplicate(id));
            }
        }
        answers
            .into_iter()
            .map(|answer| answer.ok_or_else(|| StoreError::corrupt("delivery batch", "a delivery without an answer")))
            .collect()
    }

    /// The status and detail of a delivery journaled and not yet in `inbox`.
    pub(crate) async fn pending_status(&self, source: &str, delivery_id: &str) -> Option<(String, Option<String>)> {
        let state = self.state.lock().await;
        let (_, pending) = state.known.find(source, delivery_id);
        let pending = pending?;
        Some((pending.status.as_str().to_string(), pending.detail.clone()))
    }

    /// Moves up to `max_records` journaled deliveries, oldest first, into `inbox` over `conn`
    /// (the store's writer, held by the caller for the whole import); returns how many.
    pub(crate) async fn import(&self, conn: &mut SqliteConnection, max_records: usize) -> Result<usize, StoreError> {
        let (generation, from, to, reader) = {
            let state = self.state.lock().await;
            (state.generation, state.imported, state.written, state.reader.clone())
        };
        let (records, position, damage) = read_records(&reader, from, to, max_records, IMPORT_BYTES);
        // Every byte below `written` is a whole record this process wrote.
        if let Some(damage) = damage {
            return Err(damage.into_error(&generation_path(&self.database, generation), position));
        }
        if !records.is_empty() {
            insert_records(conn, &records, generation, position).await?;
        }
        let imported = records.len();
        let mut state = self.state.lock().await;
        state.imported = position;
        for record in records {
            state.known.imported(record.source, record.delivery_id);
        }
        if state.imported == state.written && state.written >= self.rotate_bytes.load(Ordering::Relaxed) {
            self.rotate(&mut state, conn).await?;
        }
        Ok(imported)
    }

    /// Starts a new generation once the current one is wholly imported and `bytes` large
    /// (tests use small sizes).
    #[cfg(test)]
    pub(crate) fn rotate_at(&self, bytes: u64) {
        self.rotate_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Starts the next generation; the current one is wholly imported.
    async fn rotate(&self, state: &mut State, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let next = state.generation + 1;
        let path = generation_path(&self.database, next);
        let file = create(&path)?;
        let reader = Arc::new(file.try_clone().map_err(io_error(&path, "open for reading"))?);
        if let Err(error) = set_position(conn, next, 0).await {
            remove(&path);
            return Err(error);
        }
        let old = generation_path(&self.database, state.generation);
        *state = State {
            generation: next,
            file,
            reader,
            written: 0,
            imported: 0,
            next_id: state.next_id,
            known: std::mem::take(&mut state.known),
            broken: None,
        };
        remove(&old);
        Ok(())
    }
}

/// Which (source, delivery id) pairs the inbox has seen, and the records not imported yet.
///
/// Seen pairs are kept by their 64-bit hashes: a delivery whose hash is not among them is new
/// without a look-up in `inbox` (on a webhook's path that look-up was a round trip to a reader
/// connection's thread per batch); one whose hash is among them — a redelivery, or a collision
/// of 64-bit hashes — is looked up. Eight bytes and the set's overhead per delivery the inbox
/// holds.
///
/// Both tables are split into [`Known::SHARDS`] by the pair's hash. A hash table doubles at
/// once when it fills, and at a few hundred thousand pending records one doubling of both
/// tables held up a batch — every webhook waiting on it — for about 100 ms; a shard holds a
/// sixty-fourth of the entries, and the shards fill at different batches.
#[derive(Debug)]
struct Known {
    hasher: std::hash::RandomState,
    shards: Vec<Shard>,
}

#[derive(Debug, Default)]
struct Shard {
    seen: std::collections::HashSet<u64>,
    /// (source, delivery id) -> the record not imported yet.
    pending: HashMap<(String, String), Pending>,
}

impl Default for Known {
    fn default() -> Self {
        Self { hasher: std::hash::RandomState::new(), shards: (0..Self::SHARDS).map(|_| Shard::default()).collect() }
    }
}

impl Known {
    const SHARDS: usize = 64;

    /// The pairs of every `inbox` row.
    async fn load(conn: &mut SqliteConnection) -> Result<Self, StoreError> {
        use futures_util::TryStreamExt;
        let mut known = Known::default();
        let mut rows = sqlx::query_as::<_, (String, String)>("SELECT source, delivery_id FROM inbox").fetch(conn);
        while let Some((source, delivery_id)) =
            rows.try_next().await.map_err(StoreError::query("read the inbox's delivery ids"))?
        {
            let hash = known.hash(&source, &delivery_id);
            known.shard_mut(hash).seen.insert(hash);
        }
        Ok(known)
    }

    fn hash(&self, source: &str, delivery_id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, (source, delivery_id))
    }

    fn shard_index(hash: u64) -> usize {
        // The high half: the tables inside a shard hash the pair (or the hash) again.
        (hash >> 32) as usize % Self::SHARDS
    }

    fn shard_mut(&mut self, hash: u64) -> &mut Shard {
        &mut self.shards[Self::shard_index(hash)]
    }

    /// Whether the pair may have been seen (false only for a pair never journaled nor in
    /// `inbox`), and its record if it is journaled and not imported yet.
    fn find(&self, source: &str, delivery_id: &str) -> (bool, Option<&Pending>) {
        self.find_hashed(self.hash(source, delivery_id), source, delivery_id)
    }

    /// [`Known::find`] with the pair's [`Known::hash`].
    fn find_hashed(&self, hash: u64, source: &str, delivery_id: &str) -> (bool, Option<&Pending>) {
        let shard = &self.shards[Self::shard_index(hash)];
        if !shard.seen.contains(&hash) {
            return (false, None);
        }
        (true, shard.pending.get(&(source.to_string(), delivery_id.to_string())))
    }

    /// A record was journaled; `hash` is its pair's [`Known::hash`].
    fn journaled(&mut self, hash: u64, key: (String, String), pending: Pending) {
        let shard = self.shard_mut(hash);
        shard.seen.insert(hash);
        shard.pending.insert(key, pending);
    }

    /// A record is in `inbox` now.
    fn imported(&mut self, source: String, delivery_id: String) {
        let hash = self.hash(&source, &delivery_id);
        self.shard_mut(hash).pending.remove(&(source, delivery_id));
    }
}

/// Imports the records of one generation file from `start` at open; returns how many.
async fn import_file(path: &Path, generation: u64, start: u64, conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let file = File::open(path).map_err(io_error(path, "open"))?;
    let length = file.metadata().map_err(io_error(path, "read the size"))?.len();
    let mut position = start.min(length);
    let mut imported = 0;
    loop {
        let (records, next, stop) = read_records(&file, position, length, OPEN_IMPORT_RECORDS, u64::MAX);
        if !records.is_empty() {
            insert_records(conn, &records, generation, next).await?;
            imported += records.len() as u64;
        }
        position = next;
        match stop {
            None if position >= length => return Ok(imported),
            None => continue,
            // A crash while a batch was being written leaves it incomplete; none of its
            // deliveries was answered.
            Some(Damage::Torn) => {
                tracing::warn!(journal = %path.display(), position, bytes = length - position, "dropped the incomplete record a crash left at the journal's end");
                return Ok(imported);
            }
            Some(damage) => return Err(damage.into_error(path, position)),
        }
    }
}

/// Inserts `records` into `inbox` and moves the journal position to (`generation`,
/// `position`), in one transaction. A record whose id or delivery is already there is skipped.
async fn insert_records(
    conn: &mut SqliteConnection,
    records: &[Record],
    generation: u64,
    position: u64,
) -> Result<(), StoreError> {
    const ROWS_PER_INSERT: usize = 64;
    let mut tx = conn.begin().await.map_err(StoreError::query("begin an inbox import"))?;
    for rows in records.chunks(ROWS_PER_INSERT) {
        let statement = import_statement(rows.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for record in rows {
            let processed_at = (record.status != DeliveryStatus::Received.as_str()).then_some(record.received_at);
            query = query
                .bind(record.id)
                .bind(record.source.as_str())
                .bind(record.delivery_id.as_str())
                .bind(record.event_type.as_str())
                .bind(record.body.as_slice())
                .bind(record.received_at)
                .bind(record.status.as_str())
                .bind(record.detail.as_deref())
                .bind(processed_at)
                .bind(record.packed.then_some(body::LZ4));
        }
        query.execute(&mut *tx).await.map_err(StoreError::query("import journaled deliveries"))?;
    }
    set_position(&mut tx, generation, position).await?;
    tx.commit().await.map_err(StoreError::query("commit an inbox import"))
}

/// A multi-row INSERT of `rows` inbox rows, ten parameters per row in column order. Built from
/// constant text only; anonymous parameters, bound in order (SQLite looks a numbered one up by
/// a linear scan of the statement's names at every execution).
fn import_statement(rows: usize) -> String {
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut statement = String::with_capacity(200 + (ROW.len() + 2) * rows);
    statement.push_str(
        "INSERT INTO inbox (id, source, delivery_id, event_type, body, received_at, status, detail, processed_at, \
         body_encoding) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            statement.push_str(", ");
        }
        statement.push_str(ROW);
    }
    statement.push_str(" ON CONFLICT DO NOTHING");
    statement
}

async fn set_position(conn: &mut SqliteConnection, generation: u64, position: u64) -> Result<(), StoreError> {
    sqlx::query("UPDATE inbox_journal SET generation = ?1, position = ?2 WHERE id = 1")
        .bind(generation as i64)
        .bind(position as i64)
        .execute(conn)
        .await
        .map_err(StoreError::query("move the inbox journal's position"))?;
    Ok(())
}

/// Appends one delivery's record to `buffer`.
fn encode(buffer: &mut Vec<u8>, id: i64, received_at: Millis, delivery: &NewDelivery<'_>) {
    let packed =
        delivery.packed_body.map(std::borrow::Cow::Borrowed).or_else(|| body::pack(delivery.body).map(Into::into));
    let body = packed.as_deref().unwrap_or(delivery.body);
    let start = buffer.len();
    buffer.extend_from_slice(&[0; HEADER]);
    buffer.extend_from_slice(&id.to_le_bytes());
    buffer.extend_from_slice(&received_at.to_le_bytes());
    let flags = if packed.is_some() { PACKED } else { 0 } | if delivery.detail.is_some() { HAS_DETAIL } else { 0 };
    buffer.push(flags);
    for field in [
        delivery.source.as_bytes(),
        delivery.delivery_id.as_bytes(),
        delivery.event_type.as_bytes(),
        delivery.status.as_str().as_bytes(),
        delivery.detail.unwrap_or("").as_bytes(),
        body,
    ] {
        buffer.extend_from_slice(&(field.len() as u32).to_le_bytes());
        buffer.extend_from_slice(field);
    }
    let payload = &buffer[start + HEADER..];
    let length = (payload.len() as u32).to_le_bytes();
    let checksum = crc32fast::hash(payload).to_le_bytes();
    buffer[start..start + 4].copy_from_slice(&length);
    buffer[start + 4..start + HEADER].copy_from_slice(&checksum);
}

/// Reads whole records of `file` from `position` towards `end`: at least one and at most
/// `max_records`, stopping once `max_bytes` are read. Returns them, the position after the last
/// one, and why reading stopped before `end` and the limits, if it did.
fn read_records(
    file: &File,
    mut position: u64,
    end: u64,
    max_records: usize,
    max_bytes: u64,
) -> (Vec<Record>, u64, Option<Damage>) {
    let start = position;
    let mut records = Vec::new();
    while position < end && records.len() < max_records.max(1) && position - start < max_bytes {
        match read_record(file, position, end) {
            Ok((record, next)) => {
                records.push(record);
                position = next;
            }
            Err(damage) => return (records, position, Some(damage)),
        }
    }
    (records, position, None)
}

/// Reads the record at `position` of `file`, whose records end at `end`; returns it and the
/// position after it.
fn read_record(file: &File, position: u64, end: u64) -> Result<(Record, u64), Damage> {
    if end - position < HEADER as u64 {
        return Err(Damage::Torn);
    }
    let mut header = [0; HEADER];
    file.read_exact_at(&mut header, position).map_err(Damage::Io)?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if length > MAX_PAYLOAD {
        return Err(Damage::Bad(format!("a record claims {length} bytes")));
    }
    let after = position + (HEADER + length) as u64;
    if after > end {
        return Err(Damage::Torn);
    }
    let mut payload = vec![0; length];
    file.read_exact_at(&mut payload, position + HEADER as u64).map_err(Damage::Io)?;
    if crc32fast::hash(&payload) != checksum {
        return Err(Damage::Bad("a record fails its checksum".into()));
    }
    decode(&payload).map(|record| (record, after)).ok_or_else(|| Damage::Bad("a record's fields do not fit".into()))
}

fn decode(payload: &[u8]) -> Option<Record> {
    let mut rest = payload;
    let id = i64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
    let received_at = i64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
    let flags = take(&mut rest, 1)?[0];
    let mut fields = Vec::with_capacity(6);
    for _ in 0..6 {
        let length = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        fields.push(take(&mut rest, length)?.to_vec());
    }
    if !rest.is_empty() {
        return None;
    }
    let body = fields.pop()?;
    let mut text = fields.into_iter().map(|field| String::from_utf8(field).ok());
    let (source, delivery_id, event_type, status, detail) =
        (text.next()??, text.next()??, text.next()??, text.next()??, text.next()??);
    Some(Record {
        id,
        received_at,
        source,
        delivery_id,
        event_type,
        status,
        detail: (flags & HAS_DETAIL != 0).then_some(detail),
        body,
        packed: flags & PACKED != 0,
    })
}

/// The first `n` bytes of `rest`, which moves past them.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (taken, remainder) = rest.split_at_checked(n)?;
    *rest = remainder;
    Some(taken)
}

impl Damage {
    fn into_error(self, path: &Path, position: u64) -> StoreError {
        match self {
            Damage::Torn => {
                StoreError::corrupt("inbox journal", format!("{}: a record at {position} is cut short", path.display()))
            }
            Damage::Bad(reason) => {
                StoreError::corrupt("inbox journal", format!("{}: at {position}: {reason}", path.display()))
            }
            Damage::Io(error) => io_error(path, "read")(error),
        }
    }
}

/// `<database>-inbox.<suffix>`.
fn sibling(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-inbox.{suffix}"));
    database.with_file_name(name)
}

fn generation_path(database: &Path, generation: u64) -> PathBuf {
    sibling(database, &format!("{generation:08}"))
}

/// The journal's generation files, oldest first.
fn generations(database: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let directory = match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = sibling(database, "");
    let prefix = prefix.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&directory).map_err(io_error(&directory, "list"))? {
        let entry = entry.map_err(io_error(&directory, "list"))?;
        let name = entry.file_name();
        let generation = name.to_str().and_then(|name| name.strip_prefix(prefix.as_str())).and_then(|g| g.parse().ok());
        if let Some(generation) = generation {
            found.push((generation, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn create(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).map_err(io_error(path, "create"))
}

fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        tracing::warn!(journal = %path.display(), %error, "could not delete an imported inbox journal file");
    }
}

fn io_error(path: &Path, operation: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Journal { path, operation, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery<'a>(id: &'a str, body: &'a [u8]) -> NewDelivery<'a> {
        NewDelivery {
            source: "github",
            delivery_id: id,
            event_type: "push",
            body,
            packed_body: None,
            status: DeliveryStatus::Received,
            detail: None,
        }
    }

    fn write(records: &[u8]) -> (tempfile::TempDir, File, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        std::fs::write(&path, records).unwrap();
        let file = File::open(&path).unwrap();
        (dir, file, records.len() as u64)
    }

    #[test]
    fn known_pairs_spread_over_every_shard_and_stay_seen_once_imported() {
        let mut known = Known::default();
        let pending = |id| Pending { id, status: DeliveryStatus::Received, detail: None };
        for id in 0..4096 {
            let key = ("github".to_string(), format!("d-{id}"));
            known.journaled(known.hash(&key.0, &key.1), key, pending(id));
        }
        assert!(known.shards.iter().all(|shard| !shard.pending.is_empty()), "a shard took no pair");
        assert_eq!(known.shards.iter().map(|shard| shard.seen.len()).sum::<usize>(), 4096);
        for id in [0, 1234, 4095] {
            let (seen, found) = known.find("github", &format!("d-{id}"));
            assert!(seen);
            assert_eq!(found.map(|p| p.id), Some(id));
        }
        assert!(matches!(known.find("gitlab", "d-1"), (false, None)), "the source is part of the pair");
        assert!(matches!(known.find("github", "d-4096"), (false, None)));
        known.imported("github".to_string(), "d-1234".to_string());
        let (seen, found) = known.find("github", "d-1234");
        assert!(seen && found.is_none(), "an imported pair is seen (so looked up in inbox), not pending");
        assert_eq!(known.shards.iter().map(|shard| shard.pending.len()).sum::<usize>(), 4095);
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let push = include_bytes!("../../../tests/fixtures/github/go-playground-webhooks/push.0.json");
        let mut buffer = Vec::new();
        encode(&mut buffer, 7, 1_000, &delivery("d-1", push));
        let ignored =
            NewDelivery { status: DeliveryStatus::Ignored, detail: Some("no parser"), ..delivery("d-2", b"{}") };
        encode(&mut buffer, 8, 2_000, &ignored);
        let (_dir, file, end) = write(&buffer);
        let (first, after) = read_record(&file, 0, end).unwrap();
        assert_eq!((first.id, first.received_at, first.delivery_id.as_str()), (7, 1_000, "d-1"));
        assert!(first.packed, "a push body is journaled packed");
        assert_eq!(body::unpack(Some(body::LZ4), first.body).unwrap(), push);
        let (second, after) = read_record(&file, after, end).unwrap();
        assert_eq!(after, end);
        assert_eq!(second.status, "ignored");
        assert_eq!(second.detail.as_deref(), Some("no parser"));
        assert!(!second.packed);
        assert_eq!(second.body, b"{}");
    }

    #[test]
    fn a_cut_or_damaged_record_is_told_apart() {
        let mut buffer = Vec::new();
        encode(&mut buffer, 1, 0, &delivery("d-1", b"{\"a\":1}"));
        for cut in [3, HEADER, buffer.len() - 1] {
            let (_dir, file, _) = write(&buffer[..cut]);
            assert!(matches!(read_record(&file, 0, cut as u64), Err(Damage::Torn)), "cut at {cut}");
        }
        let mut flipped = buffer.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let (_dir, file, end) = write(&flipped);
        assert!(matches!(read_record(&file, 0, end), Err(Damage::Bad(_))));
        let mut huge = buffer.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (_dir, file, end) = write(&huge);
        assert!(matches!(read_record(&file, 0, end), Err(Damage::Bad(reason)) if reason.contains("claims")));
    }

    #[test]
    fn the_files_of_a_database_are_found_in_order_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("gantry.db");
        for name in [
            "gantry.db-inbox.00000010",
            "gantry.db-inbox.00000002",
            "gantry.db-inbox.lock",
            "gantry.db-wal",
            "other.db-inbox.00000001",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found: Vec<u64> = generations(&database).unwrap().into_iter().map(|(g, _)| g).collect();
        assert_eq!(found, [2, 10]);
    }
}
