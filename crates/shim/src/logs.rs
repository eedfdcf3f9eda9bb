//! Docker's json-file log driver format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000000Z"}`,
//! rotated as `<path>`, `<path>.1`, ... `<path>.<max_file-1>` (oldest has the highest number).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: DateTime<Utc>,
    /// The bytes, with their trailing newline when the line had one.
    pub line: Vec<u8>,
}

/// Appends entries, splitting on newlines (a partial line is kept until its newline, or flushed as
/// an entry of its own at 16 KiB or at [`LogWriter::flush_partial`]), rotating by size.
pub struct LogWriter {
    path: PathBuf,
}

impl LogWriter {
    pub fn open(path: &Path, max_size: Option<u64>, max_file: u32) -> Result<LogWriter> {
        todo!("{path:?} {max_size:?} {max_file}")
    }

    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        todo!("{:?} {stream:?} {}", self.path, data.len())
    }

    /// Write out buffered partial lines (at container exit).
    pub fn flush_partial(&mut self) -> Result<()> {
        todo!()
    }
}

/// Every entry in the log files (rotated ones first, oldest first). Corrupt lines are skipped.
pub fn read_all(path: &Path, max_file: u32) -> Result<Vec<LogEntry>> {
    todo!("{path:?} {max_file}")
}

/// Reads entries appended after it was opened (or from the start), following rotation.
pub struct LogFollower {
    path: PathBuf,
}

impl LogFollower {
    /// Start at the current end of the current file.
    pub fn from_end(path: &Path) -> Result<LogFollower> {
        todo!("{path:?}")
    }

    /// Entries appended since the last call (complete lines only).
    pub fn poll(&mut self) -> Result<Vec<LogEntry>> {
        todo!("{:?}", self.path)
    }
}
