//! `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, paginated with `n` and `last` and a
//! `Link: <...>; rel="next"` header when more remain. Pages hold at most [`MAX_PAGE`] entries.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;

use super::error::{Code, RegError, RegResult};
use super::{empty, Registry};

/// The largest page served; a larger `n` is cut to this (the Link header tells the rest).
pub const MAX_PAGE: usize = 1000;

/// A page and, if more remain, the `(n, last)` of the next one.
pub type Page = (Vec<String>, Option<(usize, String)>);

/// One page of a sorted list, and the `(n, last)` of the next page if there is one.
pub fn page(all: Vec<String>, query: &HashMap<String, String>) -> RegResult<Page> {
    let n = match query.get("n") {
        Some(s) => s.parse::<usize>().map_err(|_| {
            RegError::new(Code::PaginationNumberInvalid).detail(serde_json::json!({ "n": s }))
        })?,
        None => MAX_PAGE,
    }
    .min(MAX_PAGE);
    let mut rest: Vec<String> = match query.get("last").filter(|l| !l.is_empty()) {
        Some(last) => all.into_iter().filter(|x| x > last).collect(),
        None => all,
    };
    let more = rest.len() > n;
    rest.truncate(n);
    let next = match (more, rest.last()) {
        (true, Some(l)) => Some((n, l.clone())),
        _ => None,
    };
    Ok((rest, next))
}

fn json_page(path: &str, body: serde_json::Value, next: Option<(usize, String)>) -> Response {
    let body = body.to_string();
    let mut hs = vec![
        (
            "content-type",
            "application/json; charset=utf-8".to_string(),
        ),
        ("content-length", body.len().to_string()),
    ];
    if let Some((n, last)) = next {
        hs.push((
            "link",
            format!("<{path}?last={}&n={n}>; rel=\"next\"", escape(&last)),
        ));
    }
    let mut r = empty(StatusCode::OK, &hs);
    *r.body_mut() = Body::from(body);
    r
}

/// Percent-encode what is not unreserved (repository names contain `/`).
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn catalog(reg: &Arc<Registry>, query: &HashMap<String, String>) -> RegResult<Response> {
    let all = reg.store.catalog().await?;
    let (items, next) = page(all, query)?;
    Ok(json_page(
        "/v2/_catalog",
        serde_json::json!({ "repositories": items }),
        next,
    ))
}

pub async fn tags(
    reg: &Arc<Registry>,
    name: &str,
    query: &HashMap<String, String>,
    raw_query: &str,
) -> RegResult<Response> {
    if let Some(p) = &reg.proxy {
        if let Some(resp) = p.tags(name, raw_query).await? {
            return Ok(resp);
        }
    }
    let all = reg.store.tags(name).await?.ok_or_else(|| {
        RegError::new(Code::NameUnknown).detail(serde_json::json!({ "name": name }))
    })?;
    let (items, next) = page(all, query)?;
    Ok(json_page(
        &format!("/v2/{name}/tags/list"),
        serde_json::json!({ "name": name, "tags": items }),
        next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn pages() {
        let all: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (p, next) = page(all.clone(), &q(&[("n", "2")])).unwrap();
        assert_eq!(p, ["a", "b"]);
        assert_eq!(next, Some((2, "b".to_string())));
        let (p, next) = page(all.clone(), &q(&[("n", "2"), ("last", "d")])).unwrap();
        assert_eq!(p, ["e"]);
        assert_eq!(next, None);
        let (p, next) = page(all.clone(), &q(&[])).unwrap();
        assert_eq!(p.len(), 5);
        assert!(next.is_none());
        assert!(page(all.clone(), &q(&[("n", "x")])).is_err());
        let (p, _) = page(all.clone(), &q(&[("n", "0")])).unwrap();
        assert!(p.is_empty());
        let many: Vec<String> = (0..1500).map(|i| format!("r{i:05}")).collect();
        let (p, next) = page(many, &q(&[("n", "5000")])).unwrap();
        assert_eq!(p.len(), MAX_PAGE);
        assert_eq!(next.map(|x| x.0), Some(MAX_PAGE));
        assert_eq!(escape("a/b c"), "a%2Fb%20c");
    }
}
