//! The registry client used by the engine's pull and push.
