//! The container metadata store: one SQLite database (WAL) under the data root.
//! A container is a row with its id, its unique name and its record as JSON; the
//! UNIQUE constraint on the name makes concurrent creates with one name race safely
//! (exactly one wins), and every acknowledged change is one committed transaction.
//!
//! Durability: WAL with `synchronous=NORMAL`. A commit is in the WAL (the kernel's page
//! cache) when the call returns, so it survives `kill -9` of berthd at once. The
//! commit does not wait for the disk: a flusher thread fsyncs the WAL within
//! [`FLUSH_DELAY`] of the last commit, so a power loss can take back at most that last
//! moment of changes, never the database's consistency.
//! That keeps some ten fsyncs off every `docker run --rm`.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers match {0:?}: be more specific")]
    Ambiguous(String),
    #[error("metadata store: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("metadata store: bad record for {id}: {message}")]
    Corrupt { id: String, message: String },
}

pub struct Store {
    conn: Mutex<Connection>,
    flusher: Arc<Flusher>,
}

/// How long after a commit the flusher makes it durable on disk.
pub const FLUSH_DELAY: Duration = Duration::from_millis(50);

/// What the commit hook and the flusher thread share.
#[derive(Default)]
struct Flusher {
    /// (a commit is not yet on disk, the store is being dropped)
    state: Mutex<(bool, bool)>,
    wake: Condvar,
}

impl Flusher {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make the commits durable: fsync the WAL, where every commit is a checksummed
    /// frame that SQLite replays when it opens the database. (A checkpoint would also
    /// do, but then the next commit restarts the WAL and fsyncs its header itself, on
    /// the caller's time.) SQLite's own automatic checkpoints stay as they are.
    fn run(&self, wal: std::path::PathBuf) {
        loop {
            let mut st = self.lock();
            while !st.0 && !st.1 {
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.1 && !st.0 {
                return;
            }
            let stopping = st.1;
            drop(st);
            if !stopping {
                // Gather the commits of one burst (create, start, exit, remove).
                std::thread::sleep(FLUSH_DELAY);
            }
            self.lock().0 = false;
            // A failure loses nothing that a kill -9 would: the next commit retries.
            let _ = std::fs::File::open(&wal).and_then(|f| f.sync_data());
            if stopping {
                return;
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.flusher.lock().1 = true;
        self.flusher.wake.notify_all();
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: see the module's note on durability (the flusher thread).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS containers (
                 id   TEXT PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE,
                 data TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS volumes (
                 name TEXT PRIMARY KEY,
                 data TEXT NOT NULL
             );",
        )?;
        let flusher = Arc::new(Flusher::default());
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        let hook = flusher.clone();
        conn.commit_hook(Some(move || {
            hook.lock().0 = true;
            hook.wake.notify_one();
            false
        }));
        let thread = flusher.clone();
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || thread.run(wal))
            .map_err(|e| StoreError::Corrupt {
                id: String::new(),
                message: format!("start the flusher thread: {e}"),
            })?;
        Ok(Store {
            conn: Mutex::new(conn),
            flusher,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (each
        // statement is atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Insert a new container; fails with `NameInUse` if the name is taken.
    pub fn insert<T: Serialize>(&self, id: &str, name: &str, record: &T) -> Result<(), StoreError> {
        let data = to_json(id, record)?;
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO containers (id, name, data) VALUES (?1, ?2, ?3)",
            params![id, name, data],
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_constraint(&e) => Err(name_in_use(&conn, name, id)?),
            Err(e) => Err(e.into()),
        }
    }

    pub fn update<T: Serialize>(&self, id: &str, record: &T) -> Result<(), StoreError> {
        let data = to_json(id, record)?;
        let n = self.conn().execute(
            "UPDATE containers SET data = ?2 WHERE id = ?1",
            params![id, data],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }

    pub fn rename(&self, id: &str, new_name: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        match conn.execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, new_name],
        ) {
            Ok(0) => Err(StoreError::NotFound(id.to_string())),
            Ok(_) => Ok(()),
            Err(e) if is_constraint(&e) => Err(name_in_use(&conn, new_name, "")?),
            Err(e) => Err(e.into()),
        }
    }

    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM containers WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Docker's lookup: full ID, exact name (with or without the leading '/'), then a
    /// unique ID prefix.
    pub fn resolve(&self, key: &str) -> Result<String, StoreError> {
        let conn = self.conn();
        let name = key.trim_start_matches('/');
        if let Some(id) = conn
            .query_row(
                "SELECT id FROM containers WHERE id = ?1",
                params![key],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            return Ok(id);
        }
        if let Some(id) = conn
            .query_row(
                "SELECT id FROM containers WHERE name = ?1",
                params![name],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            return Ok(id);
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound(key.to_string()));
        }
        let mut stmt = conn.prepare("SELECT id FROM containers WHERE id LIKE ?1 || '%' LIMIT 2")?;
        let ids: Vec<String> = stmt
            .query_map(params![key], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        match ids.len() {
            1 => Ok(ids[0].clone()),
            0 => Err(StoreError::NotFound(key.to_string())),
            _ => Err(StoreError::Ambiguous(key.to_string())),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, id: &str) -> Result<T, StoreError> {
        let data: Option<String> = self
            .conn()
            .query_row(
                "SELECT data FROM containers WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        let data = data.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        })
    }

    /// Every container's ID, whether or not its record decodes.
    pub fn ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM containers")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    pub fn all<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, data FROM containers")?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, data)| {
                serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
                    id,
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

/// Volumes: one row per volume, its record as JSON, keyed by its unique name.
impl Store {
    /// Insert a volume; `Ok(false)` when one of that name exists already.
    pub fn insert_volume<T: Serialize>(&self, name: &str, record: &T) -> Result<bool, StoreError> {
        let data = to_json(name, record)?;
        match self.conn().execute(
            "INSERT INTO volumes (name, data) VALUES (?1, ?2)",
            params![name, data],
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_constraint(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub fn get_volume<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let data: Option<String> = self
            .conn()
            .query_row(
                "SELECT data FROM volumes WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        data.map(|d| {
            serde_json::from_str(&d).map_err(|e| StoreError::Corrupt {
                id: name.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    pub fn all_volumes<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, data FROM volumes ORDER BY name")?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, data)| {
                serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
                    id,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    pub fn remove_volume(&self, name: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM volumes WHERE name = ?1", params![name])?;
        Ok(())
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// The `NameInUse` error for `name`, naming the container that holds it.
fn name_in_use(conn: &Connection, name: &str, fallback_id: &str) -> Result<StoreError, StoreError> {
    let owner: Option<String> = conn
        .query_row(
            "SELECT id FROM containers WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    Ok(StoreError::NameInUse {
        name: name.to_string(),
        id: owner.unwrap_or_else(|| fallback_id.to_string()),
    })
}

fn to_json<T: Serialize>(id: &str, record: &T) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn names_are_unique_under_concurrency() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("berth.db")).expect("open"));
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .insert(&format!("{i:064x}"), "web", &serde_json::json!({"n": i}))
                        .is_ok()
                })
            })
            .collect();
        let ok = handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .filter(|ok| *ok)
            .count();
        assert_eq!(ok, 1);
        let err = store
            .insert(&format!("{:064x}", 99), "web", &serde_json::json!({}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("is already in use"), "{err}");
    }

    #[test]
    fn resolve_and_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.db");
        {
            let store = Store::open(&path).expect("open");
            store
                .insert("abc123", "one", &serde_json::json!({"v": 1}))
                .expect("insert");
            store
                .insert("abd456", "two", &serde_json::json!({"v": 2}))
                .expect("insert");
            store
                .update("abc123", &serde_json::json!({"v": 3}))
                .expect("update");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.resolve("one").ok().as_deref(), Some("abc123"));
        assert_eq!(store.resolve("/two").ok().as_deref(), Some("abd456"));
        assert_eq!(store.resolve("abc").ok().as_deref(), Some("abc123"));
        assert!(matches!(store.resolve("ab"), Err(StoreError::Ambiguous(_))));
        assert!(matches!(store.resolve("zzz"), Err(StoreError::NotFound(_))));
        let v: serde_json::Value = store.get("abc123").expect("get");
        assert_eq!(v["v"], 3);
        store.rename("abc123", "uno").expect("rename");
        assert!(matches!(
            store.rename("abd456", "uno"),
            Err(StoreError::NameInUse { .. })
        ));
        store.remove("abc123").expect("remove");
        assert_eq!(
            store.all::<serde_json::Value>().map(|v| v.len()).ok(),
            Some(1)
        );
    }
}
