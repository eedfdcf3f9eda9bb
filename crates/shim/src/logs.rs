//! Docker's json-file log driver format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000000Z"}`,
//! rotated as `<path>`, `<path>.1`, ... `<path>.<max_file-1>` (oldest has the highest number).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::{Result, ShimError};

/// A partial line is written as an entry of its own once it reaches this size (Docker's 16 KiB).
const MAX_PARTIAL: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: DateTime<Utc>,
    /// The bytes, with their trailing newline when the line had one.
    pub line: Vec<u8>,
}

#[derive(Serialize)]
struct JsonLineOut<'a> {
    log: &'a str,
    stream: &'a str,
    time: String,
}

#[derive(Deserialize)]
struct JsonLineIn {
    log: String,
    stream: String,
    time: String,
}

fn io_err(context: impl Into<String>, source: std::io::Error) -> ShimError {
    ShimError::Io {
        context: context.into(),
        source,
    }
}

/// Encode one entry as a json-file line (with its trailing `\n`).
pub fn encode_entry(stream: Stream, time: DateTime<Utc>, line: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    let out = JsonLineOut {
        log: &text,
        stream: stream.name(),
        time: time.to_rfc3339_opts(SecondsFormat::Nanos, true),
    };
    // Serializing plain strings cannot fail.
    let mut v = serde_json::to_vec(&out).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Decode one json-file line (without or with its newline). None if corrupt.
pub fn decode_entry(line: &[u8]) -> Option<LogEntry> {
    let parsed: JsonLineIn = serde_json::from_slice(line).ok()?;
    let stream = match parsed.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let time = DateTime::parse_from_rfc3339(&parsed.time)
        .ok()?
        .with_timezone(&Utc);
    Some(LogEntry {
        stream,
        time,
        line: parsed.log.into_bytes(),
    })
}

fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Appends entries, splitting on newlines (a partial line is kept until its newline, or flushed as
/// an entry of its own at 16 KiB or at [`LogWriter::flush_partial`]), rotating by size.
pub struct LogWriter {
    path: PathBuf,
    max_size: Option<u64>,
    max_file: u32,
    file: File,
    size: u64,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    pub fn open(path: &Path, max_size: Option<u64>, max_file: u32) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_err(format!("open log {}", path.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| io_err(format!("stat log {}", path.display()), e))?
            .len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            max_size,
            max_file: max_file.max(1),
            file,
            size,
            partial: [Vec::new(), Vec::new()],
        })
    }

    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let idx = stream.index();
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(pos + 1);
            rest = tail;
            if self.partial[idx].is_empty() {
                self.emit(stream, line)?;
            } else {
                let mut buf = std::mem::take(&mut self.partial[idx]);
                buf.extend_from_slice(line);
                self.emit(stream, &buf)?;
            }
        }
        self.partial[idx].extend_from_slice(rest);
        while self.partial[idx].len() >= MAX_PARTIAL {
            let buf: Vec<u8> = self.partial[idx].drain(..MAX_PARTIAL).collect();
            self.emit(stream, &buf)?;
        }
        Ok(())
    }

    /// Write out buffered partial lines (at container exit).
    pub fn flush_partial(&mut self) -> Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let buf = std::mem::take(&mut self.partial[stream.index()]);
            if !buf.is_empty() {
                self.emit(stream, &buf)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, stream: Stream, line: &[u8]) -> Result<()> {
        let encoded = encode_entry(stream, Utc::now(), line);
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + encoded.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file
            .write_all(&encoded)
            .map_err(|e| io_err(format!("write log {}", self.path.display()), e))?;
        self.size += encoded.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let ctx = |p: &Path| format!("rotate log {}", p.display());
        if self.max_file <= 1 {
            // Only the current file is kept: start it over (new inode, so followers notice).
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(ctx(&self.path), e)),
            }
        } else {
            let oldest = rotated_path(&self.path, self.max_file - 1);
            match std::fs::remove_file(&oldest) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(ctx(&oldest), e)),
            }
            for n in (1..self.max_file - 1).rev() {
                let from = rotated_path(&self.path, n);
                match std::fs::rename(&from, rotated_path(&self.path, n + 1)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(ctx(&from), e)),
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))
                .map_err(|e| io_err(ctx(&self.path), e))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io_err(ctx(&self.path), e))?;
        self.size = 0;
        Ok(())
    }
}

fn parse_lines(data: &[u8], out: &mut Vec<LogEntry>) {
    for line in data.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if let Some(e) = decode_entry(line) {
            out.push(e);
        }
    }
}

/// Every entry in the log files (rotated ones first, oldest first). Corrupt lines are skipped.
pub fn read_all(path: &Path, max_file: u32) -> Result<Vec<LogEntry>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = (1..max_file.max(1))
        .rev()
        .map(|n| rotated_path(path, n))
        .collect();
    files.push(path.to_path_buf());
    for p in files {
        match std::fs::read(&p) {
            Ok(data) => parse_lines(&data, &mut out),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("read log {}", p.display()), e)),
        }
    }
    Ok(out)
}

/// Reads entries appended after it was opened (or from the start), following rotation.
pub struct LogFollower {
    path: PathBuf,
    /// The file being read, its (dev, inode) and the read offset.
    file: Option<(File, (u64, u64))>,
    pos: u64,
    /// Bytes of an incomplete last line.
    pending: Vec<u8>,
}

impl LogFollower {
    /// Start at the current end of the current file.
    pub fn from_end(path: &Path) -> Result<LogFollower> {
        let mut f = LogFollower::from_start(path)?;
        if let Some((file, _)) = &f.file {
            f.pos = file
                .metadata()
                .map_err(|e| io_err(format!("stat log {}", path.display()), e))?
                .len();
        }
        Ok(f)
    }

    /// Start at the beginning of the current file.
    pub fn from_start(path: &Path) -> Result<LogFollower> {
        let mut f = LogFollower {
            path: path.to_path_buf(),
            file: None,
            pos: 0,
            pending: Vec::new(),
        };
        f.file = f.open_current()?;
        Ok(f)
    }

    fn open_current(&self) -> Result<Option<(File, (u64, u64))>> {
        match File::open(&self.path) {
            Ok(file) => {
                let md = file
                    .metadata()
                    .map_err(|e| io_err(format!("stat log {}", self.path.display()), e))?;
                Ok(Some((file, (md.dev(), md.ino()))))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("open log {}", self.path.display()), e)),
        }
    }

    /// Read from the current file to its end, parsing complete lines.
    fn drain(&mut self, out: &mut Vec<LogEntry>) -> Result<()> {
        let Some((file, _)) = self.file.as_mut() else {
            return Ok(());
        };
        let ctx = || format!("read log {}", self.path.display());
        let len = file.metadata().map_err(|e| io_err(ctx(), e))?.len();
        if len < self.pos {
            // Truncated in place: start over.
            self.pos = 0;
            self.pending.clear();
        }
        file.seek(SeekFrom::Start(self.pos))
            .map_err(|e| io_err(ctx(), e))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(|e| io_err(ctx(), e))?;
        self.pos += buf.len() as u64;
        self.pending.extend_from_slice(&buf);
        if let Some(last_nl) = self.pending.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = self.pending.drain(..=last_nl).collect();
            parse_lines(&complete, out);
        }
        Ok(())
    }

    /// Entries appended since the last call (complete lines only).
    pub fn poll(&mut self) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        // Rotated? The path now names another file: finish the old one (done above), switch.
        let current = self.open_current()?;
        let switched = match (&self.file, &current) {
            (Some((_, old)), Some((_, new))) => old != new,
            (None, Some(_)) => true,
            _ => false,
        };
        if switched {
            self.file = current;
            self.pos = 0;
            self.pending.clear();
            self.drain(&mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(entries: &[LogEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.line).into_owned())
            .collect()
    }

    #[test]
    fn format_is_docker_json_file() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let v = encode_entry(Stream::Stdout, t, b"hi \"x\"\n");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "{\"log\":\"hi \\\"x\\\"\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05.500000000Z\"}\n"
        );
        let e = decode_entry(
            b"{\"log\":\"a\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-02T03:04:05.000000001Z\"}",
        )
        .unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert_eq!(e.line, b"a\n");
        assert_eq!(e.time.timestamp_subsec_nanos(), 1);
        assert!(decode_entry(b"garbage").is_none());
    }

    #[test]
    fn partial_lines_are_joined_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::open(&p, None, 1).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"err1\nerr").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        assert_eq!(lines(&read_all(&p, 1).unwrap()), ["err1\n", "hello\n"]);
        w.flush_partial().unwrap();
        let all = read_all(&p, 1).unwrap();
        assert_eq!(lines(&all), ["err1\n", "hello\n", "wor", "err"]);
        assert_eq!(all[2].stream, Stream::Stdout);
        assert_eq!(all[3].stream, Stream::Stderr);
    }

    #[test]
    fn long_partial_line_is_split_at_16k() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::open(&p, None, 1).unwrap();
        w.write(Stream::Stdout, &vec![b'a'; 40 * 1024]).unwrap();
        let all = read_all(&p, 1).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|e| e.line.len() == MAX_PARTIAL));
        w.write(Stream::Stdout, b"\n").unwrap();
        assert_eq!(read_all(&p, 1).unwrap()[2].line.len(), 8 * 1024 + 1);
    }

    #[test]
    fn rotation_keeps_max_file_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let one = encode_entry(Stream::Stdout, Utc::now(), b"line-00\n").len() as u64;
        // Room for exactly two entries per file.
        let mut w = LogWriter::open(&p, Some(one * 2), 3).unwrap();
        for i in 0..9 {
            w.write(Stream::Stdout, format!("line-{i:02}\n").as_bytes())
                .unwrap();
        }
        assert!(p.exists() && rotated_path(&p, 1).exists() && rotated_path(&p, 2).exists());
        assert!(!rotated_path(&p, 3).exists());
        for f in [&p, &rotated_path(&p, 1), &rotated_path(&p, 2)] {
            assert!(std::fs::metadata(f).unwrap().len() <= one * 2);
        }
        // 9 lines, 3 files of at most 2: the newest 5 survive (2 + 2 + 1).
        assert_eq!(
            lines(&read_all(&p, 3).unwrap()),
            [
                "line-04\n",
                "line-05\n",
                "line-06\n",
                "line-07\n",
                "line-08\n"
            ]
        );
    }

    #[test]
    fn rotation_with_one_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let one = encode_entry(Stream::Stdout, Utc::now(), b"x1\n").len() as u64;
        let mut w = LogWriter::open(&p, Some(one), 1).unwrap();
        w.write(Stream::Stdout, b"x1\nx2\nx3\n").unwrap();
        assert_eq!(lines(&read_all(&p, 1).unwrap()), ["x3\n"]);
        assert!(!rotated_path(&p, 1).exists());
    }

    #[test]
    fn reopen_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        LogWriter::open(&p, None, 1)
            .unwrap()
            .write(Stream::Stdout, b"a\n")
            .unwrap();
        LogWriter::open(&p, None, 1)
            .unwrap()
            .write(Stream::Stdout, b"b\n")
            .unwrap();
        assert_eq!(lines(&read_all(&p, 1).unwrap()), ["a\n", "b\n"]);
    }

    #[test]
    fn read_all_skips_corrupt_lines_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        assert!(read_all(&p, 3).unwrap().is_empty());
        let mut data = encode_entry(Stream::Stdout, Utc::now(), b"ok1\n");
        data.extend_from_slice(b"{not json\n");
        data.extend(encode_entry(Stream::Stdout, Utc::now(), b"ok2\n"));
        data.extend_from_slice(b"{\"log\":\"trunc");
        std::fs::write(&p, data).unwrap();
        assert_eq!(lines(&read_all(&p, 3).unwrap()), ["ok1\n", "ok2\n"]);
    }

    #[test]
    fn follower_reads_new_lines_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        // The follower may start before the file exists.
        let mut f_start = LogFollower::from_start(&p).unwrap();
        let one = encode_entry(Stream::Stdout, Utc::now(), b"l0\n").len() as u64;
        let mut w = LogWriter::open(&p, Some(one * 2), 2).unwrap();
        w.write(Stream::Stdout, b"l0\n").unwrap();
        let mut f_end = LogFollower::from_end(&p).unwrap();
        assert!(f_end.poll().unwrap().is_empty());
        w.write(Stream::Stdout, b"l1\n").unwrap();
        assert_eq!(lines(&f_end.poll().unwrap()), ["l1\n"]);
        // A partial JSON line is not returned until complete.
        let mut raw = OpenOptions::new().append(true).open(&p).unwrap();
        let enc = encode_entry(Stream::Stderr, Utc::now(), b"l2\n");
        raw.write_all(&enc[..5]).unwrap();
        assert!(f_end.poll().unwrap().is_empty());
        raw.write_all(&enc[5..]).unwrap();
        drop(raw);
        assert_eq!(lines(&f_end.poll().unwrap()), ["l2\n"]);
        // Rotation (the file now holds 3 entries): the follower finishes the old file and switches.
        w.write(Stream::Stdout, b"l3\n").unwrap();
        assert!(rotated_path(&p, 1).exists());
        assert_eq!(lines(&f_end.poll().unwrap()), ["l3\n"]);
        w.write(Stream::Stdout, b"l4\n").unwrap();
        assert_eq!(lines(&f_end.poll().unwrap()), ["l4\n"]);
        w.write(Stream::Stdout, b"l5\n").unwrap();
        assert_eq!(lines(&f_end.poll().unwrap()), ["l5\n"]);
        assert!(f_end.poll().unwrap().is_empty());
        assert_eq!(lines(&f_start.poll().unwrap()), ["l5\n"]);
    }
}
