//! Tests of the pull-through cache's upstream client (URLs, challenges, tokens, redirects).

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

async fn serve(router: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, router).await });
    a
}

fn auth_of(h: &HeaderMap) -> String {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Bearer challenge → token from the realm with Basic credentials → retry; a blob redirect
/// to another host is followed without any Authorization header.
#[tokio::test]
async fn bearer_tokens_and_redirects() {
    use axum::response::IntoResponse;
    use axum::routing::get;
    let cdn_saw_auth = Arc::new(AtomicBool::new(false));
    let flag = cdn_saw_auth.clone();
    let cdn = serve(axum::Router::new().route(
        "/cdn/blob",
        get(move |h: HeaderMap| {
            let flag = flag.clone();
            async move {
                flag.store(!auth_of(&h).is_empty(), Ordering::SeqCst);
                "blob-bytes"
            }
        }),
    ))
    .await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap().to_string();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p")
    );
    let challenge = format!(
        "Bearer realm=\"http://{up}/token\",service=\"test\",scope=\"repository:lib/x:pull\""
    );
    let need = move |h: &HeaderMap| -> Option<Response> {
        (auth_of(h) != "Bearer tok-1").then(|| {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge.clone())],
            )
                .into_response()
        })
    };
    let need2 = need.clone();
    let router = axum::Router::new()
        .route(
            "/token",
            get(move |h: HeaderMap, uri: axum::http::Uri| async move {
                let q = uri.query().unwrap_or("").to_string();
                if auth_of(&h) == basic && q.contains("scope=repository%3Alib%2Fx%3Apull") {
                    r#"{"token":"tok-1"}"#.into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        )
        .route(
            "/v2/lib/x/manifests/v1",
            get(move |h: HeaderMap| async move {
                need(&h).unwrap_or_else(|| {
                    (
                        [(header::CONTENT_TYPE, OCI_INDEX)],
                        r#"{"schemaVersion":2}"#,
                    )
                        .into_response()
                })
            }),
        )
        .route(
            "/v2/lib/x/blobs/{d}",
            get(move |h: HeaderMap| async move {
                need2(&h).unwrap_or_else(|| {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, format!("http://{cdn}/cdn/blob"))],
                    )
                        .into_response()
                })
            }),
        );
    tokio::spawn(async move { axum::serve(l, router).await });

    let p = Proxy::new(&format!("http://{up}"), Some("u".into()), Some("p".into())).unwrap();
    let (body, ct) = p
        .fetch_manifest("lib/x", &Reference::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(&body[..], br#"{"schemaVersion":2}"#);
    assert_eq!(ct.as_deref(), Some(OCI_INDEX));
    let d = Digest::of(b"blob-bytes");
    let resp = p
        .request(
            "GET",
            &format!("/v2/lib/x/blobs/{d}"),
            &Proxy::scope("lib/x"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&b[..], b"blob-bytes");
    assert!(
        !cdn_saw_auth.load(Ordering::SeqCst),
        "credentials followed a redirect"
    );

    // Wrong credentials: the token endpoint refuses, the proxy reports upstream unavailable.
    let bad = Proxy::new(&format!("http://{up}"), Some("u".into()), Some("x".into())).unwrap();
    let e = bad
        .fetch_manifest("lib/x", &Reference::Tag("v1".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unavailable);
}

#[test]
fn urls() {
    let t = parse_url("https://registry-1.docker.io").unwrap();
    assert_eq!(
        (t.https, t.host.as_str(), t.port, t.path.as_str()),
        (true, "registry-1.docker.io", 443, "/")
    );
    let t = parse_url("http://127.0.0.1:5000/x?y=1").unwrap();
    assert_eq!(
        (t.https, t.host.as_str(), t.port, t.path.as_str()),
        (false, "127.0.0.1", 5000, "/x?y=1")
    );
    assert!(parse_url("ftp://x").is_err());
    let j = t.join("/v2/a").unwrap();
    assert_eq!((j.host.as_str(), j.path.as_str()), ("127.0.0.1", "/v2/a"));
    let j = t.join("https://cdn.example/blob").unwrap();
    assert_eq!((j.https, j.host.as_str()), (true, "cdn.example"));
}

#[test]
fn challenges() {
    let c = parse_challenge(
        "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/busybox:pull\"",
    )
    .unwrap();
    assert_eq!(c["realm"], "https://auth.docker.io/token");
    assert_eq!(c["service"], "registry.docker.io");
    assert_eq!(c["scope"], "repository:library/busybox:pull");
    assert!(parse_challenge("Basic realm=\"x\"").is_none());
    assert_eq!(
        query_escape("repository:a/b:pull"),
        "repository%3Aa%2Fb%3Apull"
    );
}
