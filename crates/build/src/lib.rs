//! berth-build: the Dockerfile front end — parser (directives, continuations, heredocs), word
//! expansion (`${VAR:-x}`), `.dockerignore` patterns, and the instruction model the engine's
//! build executor runs.

mod args;
pub mod ast;
pub mod context;
pub mod error;
pub mod ignore;
pub mod parser;
pub mod shell;
pub mod statcache;
pub mod tarpad;

pub use context::{Context, ContextError, Entry, EntryKind, Match};
pub use error::{ExpandError, ParseError};
pub use parser::{parse, parse_instruction};
pub use statcache::StatCache;
