//! Image verbs: images, tag, rmi, image prune, history, import, load, save.

use std::io::{IsTerminal, Write};

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{confirm, out, s};
use crate::cli::{
    HistoryArgs, ImagePruneArgs, ImagesArgs, ImportArgs, LoadArgs, RmiArgs, SaveArgs, TagArgs,
};
use crate::client::{
    body_stream, encode, filters_json, for_each_json_line, stream_body, stream_error, Client, Query,
};
use crate::error::{CliError, Result};
use crate::format::{ellipsis, render_list, short_id};
use crate::units::{human_size, human_size_prec, time_ago};

const IMAGES_DEFAULT: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const IMAGES_DIGESTS: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

fn images_headers() -> Value {
    json!({
        "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
        "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
    })
}

fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(|x| x.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `repo:tag` split at the last colon after the last slash.
fn split_tag(r: &str) -> (String, String) {
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].rfind(':') {
        Some(i) => (r[..slash + i].to_string(), r[slash + i + 1..].to_string()),
        None => (r.to_string(), "<none>".to_string()),
    }
}

/// Rows of `docker images` for one image summary (one per tag, or a `<none>` row).
pub fn image_rows(img: &Value, trunc: bool) -> Vec<Value> {
    let id = s(img, "Id");
    let id = if trunc { short_id(id) } else { id.to_string() };
    let created = super::i(img, "Created");
    let size = super::i(img, "Size");
    let shared = super::i(img, "SharedSize");
    let tags = str_list(img, "RepoTags");
    let digests = str_list(img, "RepoDigests");
    let digest_for = |repo: &str| {
        digests
            .iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(r, _)| *r == repo)
                    .map(|(_, h)| h.to_string())
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for t in tags.iter().filter(|t| t.as_str() != "<none>:<none>") {
        let (repo, tag) = split_tag(t);
        let d = digest_for(&repo);
        pairs.push((repo, tag, d));
    }
    if pairs.is_empty() {
        match digests.first().and_then(|d| d.split_once('@')) {
            Some((repo, d)) => pairs.push((repo.to_string(), "<none>".into(), d.to_string())),
            None => pairs.push(("<none>".into(), "<none>".into(), "<none>".into())),
        }
    }
    let containers = match super::i(img, "Containers") {
        n if n < 0 => "N/A".to_string(),
        n => n.to_string(),
    };
    let created_at = chrono::DateTime::from_timestamp(created, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default();
    let shared_size = if shared < 0 {
        "N/A".to_string()
    } else {
        human_size(shared as f64)
    };
    let unique_size = if shared < 0 {
        "N/A".to_string()
    } else {
        human_size((size - shared) as f64)
    };
    pairs
        .into_iter()
        .map(|(repo, tag, digest)| {
            json!({
                "ID": id, "Repository": repo, "Tag": tag, "Digest": digest,
                "CreatedSince": time_ago(created),
                "CreatedAt": created_at,
                "Size": human_size(size as f64),
                "VirtualSize": crate::units::human_size_prec(size as f64, 4),
                "SharedSize": shared_size,
                "UniqueSize": unique_size,
                "Containers": containers,
            })
        })
        .collect()
}

pub async fn images(c: &Client, a: ImagesArgs) -> Result<i32> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let q = Query::new()
        .add_if(a.all, "all", "1")
        .add_if(a.digests, "digests", "1")
        .add_opt("filters", filters_json(&filters)?);
    let list: Vec<Value> = c.get_json(&format!("/images/json{}", q.render())).await?;
    if a.quiet {
        let mut seen = Vec::new();
        for img in &list {
            let id = s(img, "Id");
            let id = if a.no_trunc {
                id.to_string()
            } else {
                short_id(id)
            };
            if !seen.contains(&id) {
                out(&format!("{id}\n"))?;
                seen.push(id);
            }
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .flat_map(|i| image_rows(i, !a.no_trunc))
        .collect();
    let default = if a.digests {
        IMAGES_DIGESTS
    } else {
        IMAGES_DEFAULT
    };
    out(&render_list(
        a.format.as_deref(),
        default,
        &images_headers(),
        &rows,
    )?)?;
    Ok(0)
}

pub async fn tag(c: &Client, a: TagArgs) -> Result<i32> {
    let (repo, tag) = crate::commands::run::split_reference(&a.target);
    let q = Query::new().add("repo", repo).add("tag", tag).render();
    c.post_discard(&format!("/images/{}/tag{q}", encode(&a.source)))
        .await?;
    Ok(0)
}

fn print_delete_items(items: &Value, upper: bool) -> String {
    let mut text = String::new();
    for it in items.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        for (key, label) in [("Untagged", "Untagged"), ("Deleted", "Deleted")] {
            let v = s(it, key);
            if !v.is_empty() {
                let label = if upper {
                    label.to_string()
                } else {
                    label.to_lowercase()
                };
                text.push_str(&format!("{label}: {v}\n"));
            }
        }
    }
    text
}

pub async fn rmi(c: &Client, a: RmiArgs) -> Result<i32> {
    let q = Query::new()
        .add_if(a.force, "force", "1")
        .add_if(a.no_prune, "noprune", "1")
        .render();
    let mut failed = false;
    for name in &a.images {
        let r: Result<Value> = async {
            let resp = c.delete(&format!("/images/{}{q}", encode(name))).await?;
            crate::client::read_json(resp).await
        }
        .await;
        match r {
            Ok(v) => out(&print_delete_items(&v, true))?,
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

pub async fn prune(c: &Client, a: ImagePruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning)? {
        return Ok(0);
    }
    let mut filters = a.filter.clone();
    filters.push(format!("dangling={}", !a.all));
    let q = Query::new()
        .add_opt("filters", filters_json(&filters)?)
        .render();
    let r: Value = c.post_json(&format!("/images/prune{q}"), None).await?;
    let mut text = String::new();
    let deleted = r.get("ImagesDeleted").cloned().unwrap_or(Value::Null);
    let items = print_delete_items(&deleted, false);
    if !items.is_empty() {
        text.push_str("Deleted Images:\n");
        text.push_str(&items);
        text.push('\n');
    }
    let space = super::i(&r, "SpaceReclaimed");
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size_prec(space as f64, 4)
    ));
    out(&text)?;
    Ok(0)
}

pub fn history_row(h: &Value, trunc: bool, human: bool) -> Value {
    let id = s(h, "Id");
    let id = if id == "<missing>" || !trunc {
        id.to_string()
    } else {
        short_id(id)
    };
    let created = super::i(h, "Created");
    let created_at = chrono::DateTime::from_timestamp(created, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let by = s(h, "CreatedBy").replace('\t', " ");
    let size = super::i(h, "Size");
    json!({
        "ID": id,
        "CreatedSince": if human { time_ago(created) } else { created_at.clone() },
        "CreatedAt": created_at,
        "CreatedBy": if trunc { ellipsis(&by, 45) } else { by },
        "Size": if human { human_size(size as f64) } else { size.to_string() },
        "Comment": s(h, "Comment"),
        "Tags": str_list(h, "Tags").join(", "),
    })
}

pub async fn history(c: &Client, a: HistoryArgs) -> Result<i32> {
    let list: Vec<Value> = c
        .get_json(&format!("/images/{}/history", encode(&a.image)))
        .await?;
    let rows: Vec<Value> = list
        .iter()
        .map(|h| history_row(h, !a.no_trunc, a.human))
        .collect();
    let headers = json!({
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
        "Size": "SIZE", "Comment": "COMMENT", "Tags": "TAGS",
    });
    let format = if a.quiet {
        Some("{{.ID}}".to_string())
    } else {
        a.format.clone()
    };
    let default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    out(&render_list(format.as_deref(), default, &headers, &rows)?)?;
    Ok(0)
}

/// A request body streamed from a file, or from stdin for "-".
async fn file_or_stdin(path: Option<&str>) -> Result<crate::client::ReqBody> {
    match path {
        Some(p) if p != "-" => {
            let f = tokio::fs::File::open(p)
                .await
                .map_err(|e| CliError::other(format!("open {p}: {e}")))?;
            Ok(stream_body(tokio_util::io::ReaderStream::new(f)))
        }
        _ => Ok(stream_body(tokio_util::io::ReaderStream::new(
            tokio::io::stdin(),
        ))),
    }
}

pub async fn import(c: &Client, a: ImportArgs) -> Result<i32> {
    let is_url = a.source.starts_with("http://") || a.source.starts_with("https://");
    let mut q = Query::new()
        .add("fromSrc", if is_url { a.source.as_str() } else { "-" })
        .add_opt("repo", a.reference.clone())
        .add_opt("message", a.message.clone())
        .add_opt("platform", a.platform.clone());
    for ch in &a.change {
        q = q.add("changes", ch.as_str());
    }
    let body = if is_url {
        crate::client::empty_body()
    } else {
        file_or_stdin(Some(&a.source)).await?
    };
    let resp = c
        .request(
            hyper::Method::POST,
            &format!("/images/create{}", q.render()),
            Some("application/x-tar"),
            body,
        )
        .await?;
    let mut failure = None;
    for_each_json_line(resp, |m| {
        if let Some(e) = stream_error(&m) {
            failure = Some(e);
        } else if !s(&m, "status").is_empty() {
            out(&format!("{}\n", s(&m, "status")))?;
        }
        Ok(())
    })
    .await?;
    match failure {
        Some(message) => Err(CliError::Daemon {
            status: 500,
            message,
        }),
        None => Ok(0),
    }
}

pub async fn load(c: &Client, a: LoadArgs) -> Result<i32> {
    if a.input.is_none() && std::io::stdin().is_terminal() {
        return Err(CliError::other(
            "requested load from stdin, but stdin is empty",
        ));
    }
    let body = file_or_stdin(a.input.as_deref()).await?;
    let q = Query::new().add_if(a.quiet, "quiet", "1").render();
    let resp = c
        .request(
            hyper::Method::POST,
            &format!("/images/load{q}"),
            Some("application/x-tar"),
            body,
        )
        .await?;
    let mut failure = None;
    for_each_json_line(resp, |m| {
        if let Some(e) = stream_error(&m) {
            failure = Some(e);
        } else if !s(&m, "stream").is_empty() {
            out(s(&m, "stream"))?;
        } else if !a.quiet
            && !s(&m, "status").is_empty()
            && m.get("progressDetail")
                .and_then(|p| p.get("current"))
                .is_none()
        {
            out(&format!("{}\n", s(&m, "status")))?;
        }
        Ok(())
    })
    .await?;
    match failure {
        Some(message) => Err(CliError::Daemon {
            status: 500,
            message,
        }),
        None => Ok(0),
    }
}

pub async fn save(c: &Client, a: SaveArgs) -> Result<i32> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::other(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let mut q = Query::new();
    for n in &a.images {
        q = q.add("names", n.as_str());
    }
    let resp = c
        .request(
            hyper::Method::GET,
            &format!("/images/get{}", q.render()),
            None,
            crate::client::empty_body(),
        )
        .await?;
    let mut sink: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| CliError::other(format!("failed to save image: {p}: {e}")))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut stream = body_stream(resp);
    while let Some(chunk) = stream.next().await {
        sink.write_all(&chunk?)?;
    }
    sink.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_rows_like_docker() {
        let img = json!({"Id": "sha256:0123456789abcdef", "RepoTags": ["busybox:latest", "localhost:5000/bb:1"],
            "RepoDigests": ["busybox@sha256:dd"], "Created": 0, "Size": 4261000, "SharedSize": -1, "Containers": -1});
        let rows = image_rows(&img, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Repository"], "busybox");
        assert_eq!(rows[0]["Tag"], "latest");
        assert_eq!(rows[0]["Digest"], "sha256:dd");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[1]["Repository"], "localhost:5000/bb");
        assert_eq!(rows[1]["Tag"], "1");
        let dangling = image_rows(
            &json!({"Id": "sha256:ab", "RepoTags": [], "Created": 0, "Size": 0}),
            false,
        );
        assert_eq!(dangling[0]["Repository"], "<none>");
        assert_eq!(dangling[0]["Tag"], "<none>");
        assert_eq!(dangling[0]["ID"], "sha256:ab");
        let t = render_list(None, IMAGES_DEFAULT, &images_headers(), &rows[..1]).unwrap();
        assert!(
            t.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
            "{t}"
        );
    }

    #[test]
    fn history_rows() {
        let h = json!({"Id": "<missing>", "Created": 0, "CreatedBy": "/bin/sh -c #(nop)\tADD file:0123456789abcdef0123456789 in /",
            "Size": 1234, "Comment": "", "Tags": null});
        let r = history_row(&h, true, true);
        assert_eq!(r["ID"], "<missing>");
        assert_eq!(r["CreatedBy"].as_str().unwrap().chars().count(), 45);
        assert_eq!(r["Size"], "1.23kB");
        let r = history_row(&h, false, false);
        assert_eq!(r["Size"], "1234");
        assert_eq!(r["CreatedSince"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn delete_items() {
        let v = json!([{"Untagged": "busybox:latest"}, {"Deleted": "sha256:ab"}]);
        assert_eq!(
            print_delete_items(&v, true),
            "Untagged: busybox:latest\nDeleted: sha256:ab\n"
        );
        assert_eq!(
            print_delete_items(&v, false),
            "untagged: busybox:latest\ndeleted: sha256:ab\n"
        );
    }
}
