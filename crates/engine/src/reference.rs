//! Image references as Docker parses them: `busybox` → `docker.io/library/busybox:latest`,
//! `host:port/ns/repo:tag`, `repo@sha256:...`, `repo:tag@sha256:...`. Names are shown the way
//! Docker shows them (familiar form: `busybox:latest`, `localhost:5000/x:1`).

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, e.g. `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path, e.g. `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parse a reference; errors carry Docker's messages ("invalid reference format", "invalid
    /// reference format: repository name (library/Busybox) must be lowercase").
    pub fn parse(s: &str) -> Result<Reference> {
        todo!("{s}")
    }

    /// The repository in familiar form: `busybox`, `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        todo!()
    }

    /// `familiar_name:tag` with the tag defaulting to `latest` when neither tag nor digest is set.
    pub fn familiar_tagged(&self) -> String {
        todo!()
    }

    /// The reference with `latest` added if it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_string());
        }
        self
    }
}
