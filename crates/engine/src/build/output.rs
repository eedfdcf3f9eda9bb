//! The build's progress stream: Docker's JSON messages (`{"stream": ...}`, `{"aux": {"ID": ...}}`,
//! `{"errorDetail": ..., "error": ...}`), one per line, as the classic builder sends them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

/// Where a build writes its progress. Cheap to clone; sends never block (an unbounded channel:
/// the messages are small and a slow client only delays their delivery).
#[derive(Clone)]
pub struct Output {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    quiet: bool,
    sent: Arc<AtomicBool>,
}

impl Output {
    /// A stream and the receiving end the API turns into the response body.
    pub fn channel(quiet: bool) -> (Output, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Output {
                tx: Some(tx),
                quiet,
                sent: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// An output that discards everything (tests, internal builds).
    pub fn discard() -> Output {
        Output {
            tx: None,
            quiet: true,
            sent: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Whether the client went away (the receiving end is closed).
    pub fn closed(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.is_closed())
    }

    /// Whether any message went out (after that, errors must go into the stream).
    pub fn started(&self) -> bool {
        self.sent.load(Ordering::Relaxed)
    }

    fn send(&self, v: serde_json::Value) {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        self.sent.store(true, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            let _ = tx.send(Bytes::from(line));
        }
    }

    /// Progress text (suppressed with `q=1`).
    pub fn stream(&self, text: impl Into<String>) {
        if !self.quiet {
            self.send(json!({ "stream": text.into() }));
        }
    }

    /// Text sent even with `q=1` (the final id).
    pub fn stream_always(&self, text: impl Into<String>) {
        self.send(json!({ "stream": text.into() }));
    }

    /// Output of a RUN step's process, as it comes (lossy UTF-8, as Docker's stream is text).
    pub fn process_output(&self, data: &[u8]) {
        if !self.quiet && !data.is_empty() {
            self.send(json!({ "stream": String::from_utf8_lossy(data) }));
        }
    }

    /// A JSON message as is (pull progress), suppressed with `q=1`.
    pub fn message(&self, v: serde_json::Value) {
        if !self.quiet {
            self.send(v);
        }
    }

    /// The id of the built image (`{"aux":{"ID":"sha256:..."}}`; the CLI's --iidfile and -q).
    pub fn aux_id(&self, id: &str) {
        self.send(json!({ "aux": { "ID": id } }));
    }

    /// A failure after the stream started: Docker's error message (with a code for a RUN's exit).
    pub fn error(&self, message: &str, code: Option<i64>) {
        let detail = match code {
            Some(c) => json!({ "code": c, "message": message }),
            None => json!({ "message": message }),
        };
        self.send(json!({ "errorDetail": detail, "error": message }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_quiet() {
        let (o, mut rx) = Output::channel(false);
        assert!(!o.started());
        o.stream("Step 1/2 : FROM busybox\n");
        o.process_output(b"hi\xff\n");
        o.aux_id("sha256:abc");
        o.error("boom", Some(2));
        assert!(o.started());
        let lines: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        assert_eq!(lines[0], "{\"stream\":\"Step 1/2 : FROM busybox\\n\"}\n");
        assert!(lines[1].contains("hi\u{fffd}"));
        assert_eq!(lines[2], "{\"aux\":{\"ID\":\"sha256:abc\"}}\n");
        let v: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
        assert_eq!(v["errorDetail"]["code"], 2);
        assert_eq!(v["error"], "boom");

        let (q, mut rx) = Output::channel(true);
        q.stream("hidden");
        q.process_output(b"hidden");
        q.stream_always("sha256:x\n");
        let lines: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(lines.len(), 1);
    }
}
