//! /networks routes: list, inspect, create, remove, prune, connect, disconnect.

use std::collections::HashMap;

use axum::extract::{Path, Query as AxQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::networks::{CreateNetwork, IpamPool, NetworkFilters};
use bollard_stubs::models::EndpointSettings;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::query::{filters, Query};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// `until`: RFC 3339, unix seconds, or a Go duration before now ("10m", "24h").
fn parse_until(s: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if let Some(t) = chrono::DateTime::from_timestamp(secs as i64, 0) {
            return Ok(t);
        }
    }
    let bad = || ApiError::bad_request(format!("invalid filter 'until={s}'"));
    let idx = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (n, unit) = s.split_at(idx);
    let n: f64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Ok(chrono::Utc::now() - chrono::Duration::milliseconds((secs * 1000.0) as i64))
}

fn network_filters(q: &Query, prune: bool) -> ApiResult<NetworkFilters> {
    let mut f = NetworkFilters::default();
    for (k, vals) in filters(q)? {
        match k.as_str() {
            "name" if !prune => f.name = vals,
            "id" if !prune => f.id = vals,
            "driver" if !prune => f.driver = vals,
            "type" if !prune => {
                for v in &vals {
                    if v != "custom" && v != "builtin" {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter: 'type'='{v}'"
                        )));
                    }
                }
                f.typ = vals
            }
            "scope" if !prune => {
                if vals.iter().any(|v| v != "local") {
                    f.name = vec!["\u{0}no-such-network".into()];
                }
            }
            "dangling" if !prune => {}
            "label" => f.label = vals,
            "label!" if prune => f.label_not = vals,
            "until" if prune => {
                if let Some(v) = vals.first() {
                    f.until = Some(parse_until(v)?);
                }
            }
            _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        }
    }
    Ok(f)
}

async fn list(State(e): State<AppState>, AxQuery(q): AxQuery<Query>) -> ApiResult<Response> {
    let f = network_filters(&q, false)?;
    Ok(Json(e.containers.network_list(&f)).into_response())
}

async fn inspect(State(e): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(e.containers.network_inspect(&id)?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IpamConfigBody {
    #[serde(rename = "Subnet")]
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    #[serde(rename = "Gateway")]
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IpamBody {
    #[serde(rename = "Driver")]
    driver: Option<String>,
    #[serde(rename = "Config")]
    config: Option<Vec<IpamConfigBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateBody {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Driver")]
    driver: Option<String>,
    #[serde(rename = "Internal")]
    internal: Option<bool>,
    #[serde(rename = "Attachable")]
    attachable: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    #[serde(rename = "Options")]
    options: Option<HashMap<String, String>>,
    #[serde(rename = "Labels")]
    labels: Option<HashMap<String, String>>,
}

async fn create(State(e): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let b: CreateBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?;
    if b.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request(
            "berth networks are IPv4 only: EnableIPv6 is not supported",
        ));
    }
    let ipam = b.ipam.unwrap_or_default();
    if let Some(d) = ipam.driver.as_deref() {
        if !d.is_empty() && d != "default" {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("plugin \"{d}\" not found"),
            ));
        }
    }
    let req = CreateNetwork {
        name: b.name.unwrap_or_default(),
        driver: b.driver.unwrap_or_default(),
        internal: b.internal.unwrap_or(false),
        attachable: b.attachable.unwrap_or(false),
        ipam: ipam
            .config
            .unwrap_or_default()
            .into_iter()
            .map(|c| IpamPool {
                subnet: c.subnet,
                gateway: c.gateway,
                ip_range: c.ip_range,
            })
            .collect(),
        options: b.options.unwrap_or_default(),
        labels: b.labels.unwrap_or_default(),
    };
    let n = e.containers.network_create(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": n.id, "Warning": ""})),
    )
        .into_response())
}

async fn remove(State(e): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    e.containers.network_remove(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(e): State<AppState>, AxQuery(q): AxQuery<Query>) -> ApiResult<Response> {
    let f = network_filters(&q, true)?;
    let removed = e.containers.network_prune(&f).await?;
    Ok(Json(json!({"NetworksDeleted": removed})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConnectBody {
    #[serde(rename = "Container")]
    container: String,
    #[serde(rename = "EndpointConfig")]
    endpoint_config: Option<EndpointSettings>,
    #[serde(rename = "Force")]
    force: bool,
}

fn connect_body(body: &[u8]) -> ApiResult<ConnectBody> {
    let b: ConnectBody = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?;
    if b.container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    Ok(b)
}

async fn connect(
    State(e): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let b = connect_body(&body)?;
    e.containers
        .network_connect(&id, &b.container, b.endpoint_config)
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn disconnect(
    State(e): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let b = connect_body(&body)?;
    e.containers
        .network_disconnect(&id, &b.container, b.force)
        .await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until() {
        assert!(parse_until("2026-01-01T00:00:00Z").is_ok());
        assert!(parse_until("1700000000").is_ok());
        let t = parse_until("1h").unwrap();
        assert!(t < chrono::Utc::now());
        assert!(parse_until("x").is_err());
    }

    #[test]
    fn filters_decode() {
        let q: Query = HashMap::from([(
            "filters".to_string(),
            r#"{"type":["custom"],"label":["a=b"]}"#.to_string(),
        )]);
        let f = network_filters(&q, false).unwrap();
        assert_eq!(f.typ, vec!["custom".to_string()]);
        assert!(network_filters(&q, true).is_err());
        let q: Query = HashMap::from([("filters".to_string(), r#"{"bogus":["x"]}"#.to_string())]);
        assert!(network_filters(&q, false).is_err());
    }
}
