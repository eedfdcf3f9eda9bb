//! `berth commit [-a AUTHOR] [-c CHANGE]... [-m MSG] [-p|--no-pause] CONTAINER [REPO[:TAG]]`.

use clap::{ArgAction, Args};
use serde_json::Value;

use super::out;
use crate::client::{Client, Query};
use crate::error::{CliError, Result};

#[derive(Args, Debug, Default)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// Pause container during commit (default true)
    #[arg(short = 'p', long = "pause", action = ArgAction::Set, num_args = 0..=1,
          default_value = "true", default_missing_value = "true")]
    pub pause: bool,
    /// Disable pausing container during commit
    #[arg(long = "no-pause")]
    pub no_pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

/// Split `REPO[:TAG]` as docker's client does (a `:` after the last `/` starts the tag).
pub fn split_reference(r: &str) -> Result<(String, String)> {
    if r.contains('@') {
        return Err(CliError::other(
            "refusing to create a tag with a digest reference",
        ));
    }
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].rfind(':') {
        Some(i) => Ok((r[..slash + i].to_string(), r[slash + i + 1..].to_string())),
        None => Ok((r.to_string(), String::new())),
    }
}

pub async fn commit(c: &Client, a: CommitArgs) -> Result<i32> {
    let (repo, tag) = match a.reference.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => split_reference(r)?,
        None => (String::new(), String::new()),
    };
    let pause = a.pause && !a.no_pause;
    let mut q = Query::new()
        .add("container", a.container.as_str())
        .add_if(!repo.is_empty(), "repo", repo.as_str())
        .add_if(!tag.is_empty(), "tag", tag.as_str())
        .add_opt("comment", a.message.clone())
        .add_opt("author", a.author.clone())
        .add("pause", if pause { "1" } else { "0" });
    for ch in &a.change {
        q = q.add("changes", ch.as_str());
    }
    let v: Value = c.post_json(&format!("/commit{}", q.render()), None).await?;
    out(&format!("{}\n", super::s(&v, "Id")))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker() {
        let t = |r: &str| split_reference(r).unwrap();
        assert_eq!(t("img"), ("img".into(), "".into()));
        assert_eq!(t("img:v1"), ("img".into(), "v1".into()));
        assert_eq!(
            t("localhost:5000/a/b"),
            ("localhost:5000/a/b".into(), "".into())
        );
        assert_eq!(
            t("localhost:5000/a:t"),
            ("localhost:5000/a".into(), "t".into())
        );
        assert!(split_reference("a@sha256:00").is_err());
    }
}
