//! The metadata database: redb, with JSON values in named tables. Every change is a transaction.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Result, StoreError};

pub struct Db {
    db: redb::Database,
}

/// A set of changes applied atomically by [`Db::write`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
}

enum Op {
    Put {
        table: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        table: String,
        key: String,
    },
}

impl Batch {
    pub fn put<T: Serialize>(&mut self, table: &str, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_vec(value).map_err(|e| crate::StoreError::Db(e.to_string()))?;
        self.ops.push(Op::Put {
            table: table.into(),
            key: key.into(),
            value,
        });
        Ok(())
    }
    pub fn delete(&mut self, table: &str, key: &str) {
        self.ops.push(Op::Delete {
            table: table.into(),
            key: key.into(),
        });
    }
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// redb panics on an empty table name: check it first.
fn def(table: &str) -> Result<TableDefinition<'_, &'static str, &'static [u8]>> {
    if table.is_empty() {
        return Err(StoreError::Db("empty table name".into()));
    }
    Ok(TableDefinition::new(table))
}

impl Db {
    /// Open or create the database file.
    pub fn open(path: &Path) -> Result<Db> {
        let db = redb::Database::create(path)
            .map_err(|e| StoreError::Db(format!("open {path:?}: {e}")))?;
        Ok(Db { db })
    }

    /// Apply all operations of `batch` in one durable transaction.
    pub fn write(&self, batch: Batch) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        for op in &batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    let mut t = txn.open_table(def(table)?).map_err(db_err)?;
                    t.insert(key.as_str(), value.as_slice()).map_err(db_err)?;
                }
                Op::Delete { table, key } => {
                    // Opening creates the table; deleting from a missing table is a no-op anyway.
                    let mut t = txn.open_table(def(table)?).map_err(db_err)?;
                    t.remove(key.as_str()).map_err(db_err)?;
                }
            }
        }
        // Default durability of a write transaction is Immediate (fsynced on commit).
        txn.commit().map_err(db_err)
    }

    /// [`Db::put`] without the fsync: visible at once, on disk with the next durable commit
    /// (a crash before that one loses it). For state that a durable write follows anyway.
    pub fn put_lazy<T: Serialize>(&self, table: &str, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_vec(value).map_err(db_err)?;
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(redb::Durability::None).map_err(db_err)?;
        {
            let mut t = txn.open_table(def(table)?).map_err(db_err)?;
            t.insert(key, value.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    pub fn put<T: Serialize>(&self, table: &str, key: &str, value: &T) -> Result<()> {
        let mut b = Batch::default();
        b.put(table, key, value)?;
        self.write(b)
    }

    pub fn delete(&self, table: &str, key: &str) -> Result<()> {
        let mut b = Batch::default();
        b.delete(table, key);
        self.write(b)
    }

    pub fn get<T: DeserializeOwned>(&self, table: &str, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = match txn.open_table(def(table)?) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        match t.get(key).map_err(db_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Db(format!("decode {table}/{key}: {e}"))),
        }
    }

    /// Every (key, value) of a table; a missing table is empty. Values that fail to decode are
    /// skipped with a warning (never a panic).
    pub fn list<T: DeserializeOwned>(&self, table: &str) -> Result<Vec<(String, T)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = match txn.open_table(def(table)?) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            match serde_json::from_slice(v.value()) {
                Ok(val) => out.push((k.value().to_string(), val)),
                Err(e) => {
                    tracing::warn!(table, key = k.value(), error = %e, "skipping undecodable value")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct V {
        n: u32,
    }

    #[test]
    fn put_get_list_delete_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metadata.db");
        {
            let db = Db::open(&p).unwrap();
            assert!(db.list::<V>("missing").unwrap().is_empty());
            assert_eq!(db.get::<V>("missing", "k").unwrap(), None);
            db.put("t", "a", &V { n: 1 }).unwrap();
            let mut b = Batch::default();
            b.put("t", "b", &V { n: 2 }).unwrap();
            b.put("other", "x", &V { n: 3 }).unwrap();
            b.delete("t", "a");
            b.delete("nonexistent", "y");
            db.write(b).unwrap();
            assert_eq!(db.get::<V>("t", "a").unwrap(), None);
            assert_eq!(db.get::<V>("t", "b").unwrap(), Some(V { n: 2 }));
            // An undecodable value is skipped by list.
            db.put("t", "c", &"not a V").unwrap();
            assert_eq!(
                db.list::<V>("t").unwrap(),
                vec![("b".to_string(), V { n: 2 })]
            );
            assert!(db.put("", "k", &V { n: 0 }).is_err());
        }
        let db = Db::open(&p).unwrap();
        assert_eq!(db.get::<V>("other", "x").unwrap(), Some(V { n: 3 }));
        db.delete("other", "x").unwrap();
        assert!(db.list::<V>("other").unwrap().is_empty());
    }
}
