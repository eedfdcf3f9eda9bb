//! `berth registry serve`: an OCI distribution server.
