//! A RUN step: a real container from the parent image (the container service: the namespaces,
//! seccomp profile, capabilities and cgroup of `docker run`), its output streamed into the build
//! output, its exit code checked; the caller turns its upper dir into the layer.

use std::collections::HashMap;
use std::sync::Arc;

use berth_store::Digest;
use bollard_stubs::models::{ContainerCreateBody, HostConfig};
use tokio::io::AsyncReadExt;

use super::output::Output;
use crate::containers::{AttachStreams, ContainerService, CreateRequest, WaitCondition};
use crate::{EngineError, Result};

/// What a RUN step runs.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// The parent image (a full id).
    pub image: Option<Digest>,
    pub argv: Vec<String>,
    /// The whole environment (image Env, then build args).
    pub env: Vec<String>,
    /// none, host, or "" / default.
    pub network_mode: String,
    /// `src:dst[:ro]` binds (cache and bind mounts).
    pub binds: Vec<String>,
    /// tmpfs mounts: target → options.
    pub tmpfs: HashMap<String, String>,
}

/// Create and start the container, stream its output, wait for it. Returns (container id,
/// exit code). The container is left for the caller to commit and remove.
pub async fn run(
    containers: &Arc<ContainerService>,
    spec: &RunSpec,
    out: &Output,
) -> Result<(String, i64)> {
    let Some(image) = &spec.image else {
        return Err(EngineError::InvalidArgument(format!(
            "failed to create task for container: exec: {:?}: no such file or directory (the stage has no files yet)",
            spec.argv.first().cloned().unwrap_or_default()
        )));
    };
    let network_mode = match spec.network_mode.as_str() {
        "" | "default" => None,
        m => Some(m.to_string()),
    };
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(spec.argv.clone()),
        entrypoint: Some(Vec::new()),
        env: Some(spec.env.clone()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            network_mode,
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.clone()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let (id, _warnings) = containers
        .create(CreateRequest { name: None, body })
        .await?;
    out.stream(format!(" ---> Running in {}\n", &id[..12]));
    let res = run_created(containers, &id, out).await;
    match res {
        Ok(code) => Ok((id, code)),
        Err(e) => {
            let _ = containers.remove(&id, true, true).await;
            Err(e)
        }
    }
}

async fn run_created(containers: &Arc<ContainerService>, id: &str, out: &Output) -> Result<i64> {
    let (_tty, target) = containers
        .attach(
            id,
            AttachStreams {
                stdin: false,
                stdout: true,
                stderr: true,
            },
        )
        .await?;
    containers.start(id).await?;
    let mut stream = target.stream().await?;
    // Docker's multiplexed frames: [stream, 0, 0, 0, len u32 BE] + data.
    let mut hdr = [0u8; 8];
    let mut buf = Vec::new();
    loop {
        match stream.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        buf.resize(len, 0);
        stream.read_exact(&mut buf).await?;
        out.process_output(&buf);
    }
    let c = containers.get(id)?;
    containers.wait(c, WaitCondition::NotRunning).await
}
