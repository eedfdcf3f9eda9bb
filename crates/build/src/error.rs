//! Errors of the Dockerfile front end.

use std::fmt;

/// A Dockerfile syntax error. Line 0 means "no line" (e.g. an empty Dockerfile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(
                f,
                "dockerfile parse error on line {}: {}",
                self.line, self.message
            )
        }
    }
}

impl std::error::Error for ParseError {}

/// A word that cannot be expanded (`${X:?msg}` with X unset, a bad substitution...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpandError(pub String);
