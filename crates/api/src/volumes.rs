//! /volumes routes: list, create, inspect, remove, prune.

use std::collections::HashMap;

use axum::extract::{Path, Query as AxQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::volumes::{CreateVolume, VolumeFilters};
use serde::Deserialize;
use serde_json::json;

use crate::error::{blocking, ApiError, ApiResult};
use crate::query::{filters, flag, Query};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

fn bool_filter(key: &str, v: &str) -> ApiResult<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!("invalid filter '{key}={v}'"))),
    }
}

fn volume_filters(q: &Query, prune: bool) -> ApiResult<VolumeFilters> {
    let mut vf = VolumeFilters::default();
    for (k, vals) in filters(q)? {
        match k.as_str() {
            "dangling" if !prune => {
                if let Some(v) = vals.first() {
                    vf.dangling = Some(bool_filter("dangling", v)?);
                }
            }
            "name" if !prune => vf.names = vals,
            "driver" if !prune => vf.driver = vals,
            "label" => vf.labels = vals,
            "label!" if prune => vf.label_not = vals,
            "all" if prune => {
                if let Some(v) = vals.first() {
                    vf.all = bool_filter("all", v)?;
                }
            }
            _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        }
    }
    Ok(vf)
}

async fn list(State(e): State<AppState>, AxQuery(q): AxQuery<Query>) -> ApiResult<Response> {
    let vf = volume_filters(&q, false)?;
    let c = e.containers.clone();
    let vols = blocking(move || c.list_volumes(&vf)).await?;
    Ok(Json(json!({"Volumes": vols, "Warnings": []})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateBody {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Driver")]
    driver: Option<String>,
    #[serde(rename = "DriverOpts")]
    driver_opts: Option<HashMap<String, String>>,
    #[serde(rename = "Labels")]
    labels: Option<HashMap<String, String>>,
}

async fn create(State(e): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let b: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_request(err.to_string()))?
    };
    let req = CreateVolume {
        name: b.name.unwrap_or_default(),
        driver: b.driver.unwrap_or_default(),
        labels: b.labels.unwrap_or_default(),
        options: b.driver_opts.unwrap_or_default(),
    };
    let vols = e.volumes.clone();
    let (rec, created) = blocking(move || vols.create(req)).await?;
    if created {
        e.events.emit(
            "volume",
            "create",
            &rec.name,
            HashMap::from([("driver".to_string(), "local".to_string())]),
        );
    }
    Ok((StatusCode::CREATED, Json(e.volumes.to_json(&rec))).into_response())
}

async fn inspect(State(e): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let vols = e.volumes.clone();
    let n = name.clone();
    let rec = blocking(move || vols.get(&n)).await?;
    Ok(Json(e.volumes.to_json(&rec)).into_response())
}

async fn remove(
    State(e): State<AppState>,
    Path(name): Path<String>,
    AxQuery(q): AxQuery<Query>,
) -> ApiResult<Response> {
    e.containers.remove_volume(&name, flag(&q, "force")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(e): State<AppState>, AxQuery(q): AxQuery<Query>) -> ApiResult<Response> {
    let vf = volume_filters(&q, true)?;
    let (removed, space) = e.containers.prune_volumes(&vf).await?;
    Ok(Json(json!({"VolumesDeleted": removed, "SpaceReclaimed": space})).into_response())
}
