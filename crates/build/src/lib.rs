//! berth-build: the Dockerfile front end — parser (directives, continuations, heredocs), word
//! expansion (`${VAR:-x}`), `.dockerignore` patterns, and the instruction model the engine's
//! build executor runs.

mod args;
pub mod ast;
pub mod error;
pub mod ignore;
pub mod parser;
pub mod shell;

pub use error::{ExpandError, ParseError};
pub use parser::{parse, parse_instruction};
