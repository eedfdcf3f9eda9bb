//! API versions. berth speaks 1.50 (docker CLI 28's own) and accepts clients down to 1.24.

use axum::extract::Request;
use axum::http::Uri;

pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.24";

/// The `X.Y` of a version string, as a comparable pair.
pub fn parse(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Requested API version, recorded on the request by [`strip_version`].
#[derive(Debug, Clone, Copy)]
pub struct ApiVersion(pub (u32, u32));

/// Remove a `/vX.Y` prefix from the path (keeping the version as an extension) so routes match
/// both versioned and unversioned paths.
pub fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return req;
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return req,
    };
    let Some(v) = parse(ver) else { return req };
    let mut parts = req.uri().clone().into_parts();
    let pq = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
            req.extensions_mut().insert(ApiVersion(v));
        }
    }
    req
}

/// Refuse versions outside the supported range with Docker's messages.
pub async fn check(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(ApiVersion(v)) = req.extensions().get::<ApiVersion>().copied() {
        let max = parse(API_VERSION).unwrap_or((1, 50));
        let min = parse(MIN_API_VERSION).unwrap_or((1, 24));
        let msg = if v > max {
            Some(format!(
                "client version {}.{} is too new. Maximum supported API version is {API_VERSION}",
                v.0, v.1
            ))
        } else if v < min {
            Some(format!(
                "client version {}.{} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version",
                v.0, v.1
            ))
        } else {
            None
        };
        if let Some(m) = msg {
            return crate::error::ApiError(axum::http::StatusCode::BAD_REQUEST, m).into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn strip(uri: &str) -> (String, Option<(u32, u32)>) {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let req = strip_version(req);
        let v = req.extensions().get::<ApiVersion>().map(|v| v.0);
        (req.uri().to_string(), v)
    }

    #[test]
    fn strips_prefix_and_keeps_query() {
        assert_eq!(
            strip("/v1.47/containers/json?all=1"),
            ("/containers/json?all=1".into(), Some((1, 47)))
        );
        assert_eq!(strip("/v1.50/_ping"), ("/_ping".into(), Some((1, 50))));
    }

    #[test]
    fn leaves_unversioned_and_odd_paths() {
        assert_eq!(strip("/containers/json"), ("/containers/json".into(), None));
        assert_eq!(strip("/version"), ("/version".into(), None));
        assert_eq!(strip("/vx.y/version"), ("/vx.y/version".into(), None));
        assert_eq!(strip("/v1.47"), ("/v1.47".into(), None));
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse("1.24"), Some((1, 24)));
        assert!(parse("1.50") > parse("1.9"));
        assert_eq!(parse("abc"), None);
    }
}
