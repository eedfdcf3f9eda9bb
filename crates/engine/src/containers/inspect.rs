//! inspect and list (`docker ps`), in the Docker API's JSON shapes.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{ContainerService, Record, Status};
use crate::{EngineError, Result};

/// Docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

fn since(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        .unwrap_or(0)
}

fn unix(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// The STATUS column of `docker ps`.
pub fn status_text(r: &Record) -> String {
    let st = &r.state;
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", human_duration(since(&st.started_at))),
        Status::Paused => format!("Up {} (Paused)", human_duration(since(&st.started_at))),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            human_duration(since(&st.finished_at))
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Exited => {
            if st.finished_at == super::ZERO_TIME {
                "Created".into()
            } else {
                format!(
                    "Exited ({}) {} ago",
                    st.exit_code,
                    human_duration(since(&st.finished_at))
                )
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub all: bool,
    /// `-n`: the last n created (includes stopped ones). 0 or negative: no limit.
    pub limit: i64,
    /// Decoded `filters` (name → values).
    pub filters: HashMap<String, Vec<String>>,
}

fn label_match(labels: &HashMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(want),
    }
}

impl ContainerService {
    fn matches(&self, r: &Record, f: &HashMap<String, Vec<String>>) -> Result<bool> {
        for (key, values) in f {
            if values.is_empty() {
                continue;
            }
            let ok = match key.as_str() {
                "id" => values.iter().any(|v| r.id.starts_with(v.as_str())),
                "name" => values.iter().any(|v| {
                    r.name
                        .trim_start_matches('/')
                        .contains(v.trim_start_matches('/'))
                }),
                "status" => {
                    for v in values {
                        if ![
                            "created",
                            "restarting",
                            "running",
                            "removing",
                            "paused",
                            "exited",
                            "dead",
                        ]
                        .contains(&v.as_str())
                        {
                            return Err(EngineError::InvalidArgument(format!(
                                "invalid filter 'status={v}'"
                            )));
                        }
                    }
                    values.iter().any(|v| v == r.state.status.as_str())
                }
                "label" => {
                    let labels = r.config.labels.clone().unwrap_or_default();
                    values.iter().all(|v| label_match(&labels, v))
                }
                "exited" => {
                    r.state.status == Status::Exited
                        && r.state.finished_at != super::ZERO_TIME
                        && values
                            .iter()
                            .any(|v| v.parse::<i64>().ok() == Some(r.state.exit_code))
                }
                "ancestor" => values.iter().any(|v| {
                    v == &r.image_name
                        || r.image_id.to_string() == *v
                        || r.image_id.hex().starts_with(v.as_str())
                        || self
                            .images
                            .resolve(v)
                            .map(|img| img.id == r.image_id)
                            .unwrap_or(false)
                }),
                "before" | "since" => {
                    let Some(other) = values.iter().find_map(|v| self.get(v).ok()) else {
                        return Err(EngineError::NotFound(format!(
                            "No such container: {}",
                            values[0]
                        )));
                    };
                    let o = other.snapshot().created;
                    if key == "before" {
                        r.created < o
                    } else {
                        r.created > o
                    }
                }
                "network" => self.on_networks(r, values),
                "volume" | "publish" | "expose" | "health" | "isolation" | "is-task" => true,
                other => {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid filter '{other}'"
                    )));
                }
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub fn list(&self, opts: &ListOptions) -> Result<Vec<Value>> {
        let mut recs: Vec<Record> = self.all().iter().map(|c| c.snapshot()).collect();
        recs.sort_by(|a, b| b.created.cmp(&a.created));
        let status_filter =
            opts.filters.contains_key("status") || opts.filters.contains_key("exited");
        let show_all = opts.all || opts.limit > 0 || status_filter;
        let mut out = Vec::new();
        for r in recs {
            if !show_all && !r.state.status.is_live() && r.state.status != Status::Restarting {
                continue;
            }
            if !self.matches(&r, &opts.filters)? {
                continue;
            }
            out.push(self.summary(&r));
            if opts.limit > 0 && out.len() as i64 >= opts.limit {
                break;
            }
        }
        Ok(out)
    }

    fn summary(&self, r: &Record) -> Value {
        let (ports, net_settings) = self.network_summary_json(r);
        let mut command = vec![r.path.clone()];
        command.extend(r.args.iter().cloned());
        json!({
            "Id": r.id,
            "Names": [r.name],
            "Image": r.image_name,
            "ImageID": r.image_id.to_string(),
            "Command": command.join(" "),
            "Created": unix(&r.created),
            "Ports": ports,
            "Labels": r.config.labels.clone().unwrap_or_default(),
            "State": r.state.status.as_str(),
            "Status": status_text(r),
            "HostConfig": {"NetworkMode": r.host_config.network_mode.clone().unwrap_or_else(|| "bridge".into())},
            "NetworkSettings": net_settings,
            "Mounts": self.mounts_json(&r.id),
        })
    }

    pub fn inspect(&self, name: &str) -> Result<Value> {
        let c = self.get(name)?;
        let r = c.snapshot();
        let dir = self.dir(&r.id);
        let st = &r.state;
        let mut config =
            serde_json::to_value(&r.config).map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Some(o) = config.as_object_mut() {
            o.entry("Hostname").or_insert(json!(""));
            o.entry("Domainname").or_insert(json!(""));
            o.entry("User").or_insert(json!(""));
            o.entry("AttachStdin").or_insert(json!(false));
            o.entry("AttachStdout").or_insert(json!(false));
            o.entry("AttachStderr").or_insert(json!(false));
            o.entry("Tty").or_insert(json!(false));
            o.entry("OpenStdin").or_insert(json!(false));
            o.entry("StdinOnce").or_insert(json!(false));
            o.entry("Cmd").or_insert(Value::Null);
            o.entry("WorkingDir").or_insert(json!(""));
            o.entry("Entrypoint").or_insert(Value::Null);
            o.entry("OnBuild").or_insert(Value::Null);
        }
        let mut host_config = serde_json::to_value(&r.host_config)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Some(o) = host_config.as_object_mut() {
            o.entry("NetworkMode").or_insert(json!("bridge"));
            o.entry("RestartPolicy")
                .or_insert(json!({"Name": "no", "MaximumRetryCount": 0}));
            o.entry("LogConfig")
                .or_insert(json!({"Type": "json-file", "Config": {}}));
            o.entry("AutoRemove").or_insert(json!(false));
            o.entry("Privileged").or_insert(json!(false));
            o.entry("ReadonlyRootfs").or_insert(json!(false));
        }
        Ok(json!({
            "Id": r.id,
            "Created": r.created,
            "Path": r.path,
            "Args": r.args,
            "State": {
                "Status": st.status.as_str(),
                "Running": st.status.is_live(),
                "Paused": st.status == Status::Paused,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": st.pid,
                "ExitCode": st.exit_code,
                "Error": st.error,
                "StartedAt": st.started_at,
                "FinishedAt": st.finished_at,
            },
            "Image": r.image_id.to_string(),
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": self.log_path(&r.id),
            "Name": r.name,
            "RestartCount": r.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": Value::Null,
            "HostConfig": host_config,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "UpperDir": dir.join("upper"),
                    "WorkDir": dir.join("work"),
                    "MergedDir": dir.join("rootfs"),
                }
            },
            "Mounts": self.mounts_json(&r.id),
            "Config": config,
            "NetworkSettings": self.network_settings_json(&r),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(300), "5 minutes");
        assert_eq!(human_duration(4000), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
