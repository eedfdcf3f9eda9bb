//! Pull-through cache of another registry (`--proxy-remote`).

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use berth_store::Digest;

use super::error::{Code, RegError, RegResult};
use super::names::Reference;
use super::Registry;

pub struct Proxy {}

impl Proxy {
    pub fn new(_url: &str, _user: Option<String>, _pass: Option<String>) -> Result<Proxy, String> {
        Ok(Proxy {})
    }

    pub async fn manifest(
        &self,
        reg: &Registry,
        name: &str,
        r: &Reference,
        head: bool,
        _headers: &HeaderMap,
    ) -> RegResult<Response> {
        super::manifests::serve_local(reg, name, r, head).await
    }

    pub async fn blob(
        &self,
        _reg: &Arc<Registry>,
        _name: &str,
        d: &Digest,
        _head: bool,
        _headers: &HeaderMap,
    ) -> RegResult<Response> {
        Err(RegError::new(Code::BlobUnknown).detail(d.to_string()))
    }
}
