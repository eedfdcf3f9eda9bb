//! The executor's control flow: parse, resolve global ARGs, choose the stages the target needs,
//! run each stage's steps (cache lookup → execute → commit → cache record), tag the result.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use berth_build::ast::{Dockerfile, Instruction, InstructionKind};
use berth_store::Digest;

use super::context::Context;
use super::copy::{self, StepRoot};
use super::imagecfg::{self, ImageBlob, Parent, RunConfig, DEFAULT_PATH};
use super::output::Output;
use super::run::{self, RunSpec};
use super::sources::Item;
use super::{cache, BuildOptions, BuildService, Failure};
use crate::{EngineError, Result};

/// Build args Docker predefines: usable without an ARG, passed to RUN, kept out of history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
}

/// The state of the stage being built.
pub(super) struct StageState {
    pub idx: usize,
    pub parent: Parent,
    pub config: RunConfig,
    /// ARGs declared in the stage: (name, value); later ones win.
    pub args: Vec<(String, Option<String>)>,
    pub cmd_set: bool,
    /// The step being run (for logs).
    pub step: usize,
}

/// What a step does besides changing the config.
pub(super) enum Action {
    Meta,
    Run(Box<RunSpec>, Vec<BindSource>),
    Copy(Box<CopyPlan>),
    Workdir(String),
}

/// A RUN bind mount whose source is a stage, an image, or a writable view of the context:
/// mounted (overlay, throwaway upper) for the duration of the step.
pub(super) struct BindSource {
    pub lowers: Vec<PathBuf>,
    pub subpath: String,
    pub target: String,
    pub readonly: bool,
}

pub(super) struct CopyPlan {
    pub dest: String,
    pub items: Vec<Item>,
    /// Source root to mount (COPY --from a stage or an image): its layers' dirs, bottom first.
    pub from_layers: Option<Vec<crate::images::LayerRef>>,
    /// Sources as expanded words (resolved after the mount for --from).
    pub sources: Vec<String>,
    pub chown: Option<String>,
    pub opts: copy::CopyOpts,
    pub keyword: &'static str,
}

pub(super) struct StepPlan {
    pub config: RunConfig,
    /// The Cmd of Docker's build container; joined, the history's created_by.
    pub step_cmd: Vec<String>,
    /// More cache key material (mount specs, copy options...).
    pub key_extra: Vec<String>,
    pub author: Option<String>,
    pub action: Action,
    /// `cmd_set` after this step.
    pub cmd_set: bool,
}

pub(super) struct Builder {
    pub svc: Arc<BuildService>,
    pub opts: BuildOptions,
    pub ctx: Arc<Context>,
    pub out: Output,
    pub escape: char,
    pub total: usize,
    /// Step number before each stage's FROM (stages may build concurrently).
    pub offsets: HashMap<usize, usize>,
    pub work: PathBuf,
    pub seq: std::sync::atomic::AtomicUsize,
    pub results: std::sync::Mutex<HashMap<usize, Parent>>,
    pub names: Vec<Option<String>>,
    pub meta: Vec<(String, Option<String>)>,
    pub consumed: std::sync::Mutex<BTreeSet<String>>,
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

impl Builder {
    pub async fn run(
        svc: Arc<BuildService>,
        opts: BuildOptions,
        ctx: Arc<Context>,
        out: Output,
    ) -> std::result::Result<Digest, Failure> {
        let text = match &opts.dockerfile_text {
            Some(t) => t.clone(),
            None => ctx.dockerfile(&opts.dockerfile)?,
        };
        let df = berth_build::parse(&text).map_err(|e| {
            if e.line == 0 && e.message.contains("no instructions") {
                bad(format!(
                    "the Dockerfile ({}) cannot be empty",
                    if opts.dockerfile.is_empty() {
                        "Dockerfile"
                    } else {
                        &opts.dockerfile
                    }
                ))
            } else {
                bad(e.to_string())
            }
        })?;
        for t in &opts.tags {
            crate::images::normalize_tag(t)?;
        }
        let work = svc
            .cfg
            .tmp_dir()
            .join(format!("build-{}", berth_store::atomic::random_hex(8)));
        std::fs::create_dir_all(&work).map_err(EngineError::from)?;
        let mut b = Builder {
            svc,
            opts,
            ctx,
            out,
            escape: df.directives.escape,
            total: 0,
            offsets: HashMap::new(),
            work: work.clone(),
            seq: std::sync::atomic::AtomicUsize::new(0),
            results: std::sync::Mutex::new(HashMap::new()),
            names: df
                .stages
                .iter()
                .map(|s| s.name().map(str::to_string))
                .collect(),
            meta: Vec::new(),
            consumed: std::sync::Mutex::new(BTreeSet::new()),
        };
        let res = b.build_all(&df).await;
        // Unmount now; remove the step dirs (whole copies of what the steps wrote) after the
        // answer, off the critical path.
        let _ = blocking(move || {
            for m in berth_store::overlay::mounts_under(&work) {
                let _ = berth_store::overlay::unmount(&m);
            }
            std::thread::spawn(move || {
                if let Err(e) = std::fs::remove_dir_all(&work) {
                    tracing::warn!("removing build dir {work:?}: {e}");
                }
            });
            Ok(())
        })
        .await;
        res
    }

    /// A fresh work dir for one step.
    pub fn step_dir(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.work.join(format!("s{n}"))
    }

    /// The result of an already built stage.
    pub fn result(&self, idx: usize) -> Option<Parent> {
        lock(&self.results).get(&idx).cloned()
    }

    pub fn consume_arg(&self, name: &str) {
        lock(&self.consumed).insert(name.to_string());
    }

    /// Lookup over global ARGs.
    fn meta_lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |k| {
            self.meta
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
        }
    }

    pub fn expand_meta(&self, word: &str) -> Result<String> {
        let l = self.meta_lookup();
        berth_build::shell::expand(word, self.escape, &l).map_err(|e| bad(e.to_string()))
    }

    /// The stage a name or index refers to (only stages before `before`).
    pub fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        if let Ok(i) = name.parse::<usize>() {
            return (i < before).then_some(i);
        }
        let lower = name.to_ascii_lowercase();
        self.names[..before.min(self.names.len())]
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
    }

    async fn build_all(&mut self, df: &Dockerfile) -> std::result::Result<Digest, Failure> {
        // ARG before FROM.
        for a in &df.global_args {
            if let InstructionKind::Arg(decls) = &a.kind {
                for d in decls {
                    let v = match self.opts.buildargs.get(&d.name) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => match &d.default {
                            Some(def) => Some(self.expand_meta(def)?),
                            None => None,
                        },
                    };
                    self.consume_arg(&d.name);
                    self.meta.push((d.name.clone(), v));
                }
            }
        }
        let target = if self.opts.target.is_empty() {
            df.stages.len().saturating_sub(1)
        } else {
            let t = self.opts.target.to_ascii_lowercase();
            self.names
                .iter()
                .position(|n| n.as_deref() == Some(t.as_str()))
                .ok_or_else(|| {
                    bad(format!(
                        "failed to reach build target {} in Dockerfile",
                        self.opts.target
                    ))
                })?
        };
        let needed = self.needed_stages(df, target)?;
        self.total = needed
            .iter()
            .map(|&i| 1 + df.stages[i].instructions.len())
            .sum::<usize>()
            + usize::from(!self.opts.labels.is_empty());
        let mut step = 0;
        for &i in &needed {
            self.offsets.insert(i, step);
            step += 1 + df.stages[i].instructions.len();
        }
        // Stages whose dependencies are built run together (their output interleaves).
        let mut done: BTreeSet<usize> = BTreeSet::new();
        while done.len() < needed.len() {
            let mut wave = Vec::new();
            for &i in &needed {
                if !done.contains(&i) && self.stage_deps(df, i)?.iter().all(|j| done.contains(j)) {
                    wave.push(i);
                }
            }
            if wave.is_empty() {
                return Err(EngineError::Internal("stage dependencies form a cycle".into()).into());
            }
            let this = &*self;
            let results = futures_util::future::join_all(
                wave.iter().map(|&i| this.build_stage(df, i, i == target)),
            )
            .await;
            for r in results {
                r?;
            }
            done.extend(wave);
        }
        let fin = self
            .result(target)
            .ok_or_else(|| bad("No image was generated. Is your Dockerfile empty?"))?;
        let Some(id) = fin.id else {
            return Err(bad("No image was generated. Is your Dockerfile empty?").into());
        };
        let unused: Vec<&String> = self
            .opts
            .buildargs
            .keys()
            .filter(|k| !lock(&self.consumed).contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.out.stream(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                list.join(" ")
            ));
        }
        self.out.aux_id(&id.to_string());
        self.out
            .stream(format!("Successfully built {}\n", id.short()));
        let images = self.svc.images.clone();
        let tags = self.opts.tags.clone();
        let id2 = id.clone();
        let shown = blocking(move || {
            let mut shown = Vec::new();
            for t in &tags {
                let n = crate::images::normalize_tag(t)?;
                images.tag(&id2.to_string(), &n, None)?;
                shown.push(n);
            }
            Ok(shown)
        })
        .await?;
        for t in shown {
            self.out.stream(format!("Successfully tagged {t}\n"));
        }
        if self.out.quiet() {
            self.out.stream_always(format!("{id}\n"));
        }
        Ok(id)
    }

    /// The stages the target depends on (FROM a stage, COPY --from, RUN --mount from=), in
    /// file order.
    fn needed_stages(&self, df: &Dockerfile, target: usize) -> Result<Vec<usize>> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            todo.extend(self.stage_deps(df, i)?);
        }
        Ok(need.into_iter().collect())
    }

    /// The earlier stages stage `i` reads from (FROM, COPY --from, RUN --mount from=; a named
    /// build context shadows a stage of the same name).
    fn stage_deps(&self, df: &Dockerfile, i: usize) -> Result<Vec<usize>> {
        let mut deps = Vec::new();
        let st = &df.stages[i];
        let from = self.expand_meta(&st.from.image)?;
        if let Some(j) = self
            .stage_ref(&from, i)
            .filter(|_| from.parse::<usize>().is_err())
        {
            deps.push(j);
        }
        for ins in &st.instructions {
            for r in stage_refs(ins) {
                let r = self.expand_meta(&r).unwrap_or(r);
                if self.opts.build_contexts.contains_key(&r) {
                    continue;
                }
                if let Some(j) = self.stage_ref(&r, i) {
                    deps.push(j);
                }
            }
        }
        Ok(deps)
    }

    async fn build_stage(
        &self,
        df: &Dockerfile,
        idx: usize,
        is_target: bool,
    ) -> std::result::Result<(), Failure> {
        let st = &df.stages[idx];
        let mut step = self.offsets.get(&idx).copied().unwrap_or(0) + 1;
        self.out.stream(format!(
            "Step {}/{} : {}\n",
            step, self.total, st.from.original
        ));
        let image = self.expand_meta(&st.from.image)?;
        let parent = match self
            .stage_ref(&image, idx)
            .filter(|_| image.parse::<usize>().is_err())
        {
            Some(j) => self
                .result(j)
                .ok_or_else(|| EngineError::Internal(format!("stage {j} was not built")))?,
            None if image.eq_ignore_ascii_case("scratch") => Parent {
                id: None,
                layers: Vec::new(),
                blob: ImageBlob::scratch(),
            },
            None => self.image_parent(&image).await?,
        };
        if let Some(id) = &parent.id {
            self.out.stream(format!(" ---> {}\n", id.short()));
        }
        let mut config = parent.blob.config.clone();
        if config.env_get("PATH").is_none() {
            let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", ""));
            config.env_set(k, v);
        }
        let triggers = config.on_build.take().unwrap_or_default();
        let mut state = StageState {
            idx,
            parent,
            config,
            args: Vec::new(),
            cmd_set: false,
            step,
        };
        if !triggers.is_empty() {
            self.out.stream(format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in &triggers {
                let ins = berth_build::parse_instruction(t, self.escape)
                    .map_err(|e| bad(format!("failed to parse ONBUILD trigger {t:?}: {e}")))?;
                self.step_instruction(&mut state, &ins).await?;
            }
        }
        for ins in &st.instructions {
            step += 1;
            state.step = step;
            self.out
                .stream(format!("Step {}/{} : {}\n", step, self.total, ins.original));
            self.step_instruction(&mut state, ins).await?;
        }
        if is_target && !self.opts.labels.is_empty() {
            let mut line = "LABEL".to_string();
            for (k, v) in &self.opts.labels {
                line.push_str(&format!(" {k:?}='{}'", v.replace('\'', "")));
            }
            let ins = berth_build::parse_instruction(&line, self.escape)
                .map_err(|e| bad(e.to_string()))?;
            step += 1;
            state.step = step;
            self.out
                .stream(format!("Step {}/{} : {}\n", step, self.total, line));
            self.step_instruction(&mut state, &ins).await?;
        }
        lock(&self.results).insert(idx, state.parent);
        Ok(())
    }

    /// An image as a step parent: local, else pulled (always pulled first with `pull=1`).
    pub async fn image_parent(&self, name: &str) -> Result<Parent> {
        if self.opts.pull {
            self.pull(name).await?;
        }
        let images = self.svc.images.clone();
        let n = name.to_string();
        let local = blocking(move || Parent::of_image(&images, &images.resolve(&n)?)).await;
        match local {
            Err(EngineError::NotFound(_)) if !self.opts.pull => {
                self.pull(name).await?;
                let images = self.svc.images.clone();
                let n = name.to_string();
                blocking(move || Parent::of_image(&images, &images.resolve(&n)?)).await
            }
            r => r,
        }
    }

    /// Pull `name` with the engine's registry settings; its progress goes to the build output.
    async fn pull(&self, name: &str) -> Result<()> {
        let r = crate::reference::Reference::parse(name)?;
        let tag = match (&r.digest, &r.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let req = crate::images::pull::PullRequest {
            from_image: r.familiar_name(),
            tag: Some(tag),
            ..Default::default()
        };
        let opts = crate::images::registries::options_of(&self.svc.cfg.daemon);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = self.out.clone();
        let fwd = tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                out.message(v);
            }
        });
        let res = crate::images::pull::pull(self.svc.images.clone(), opts, req, tx).await;
        let _ = fwd.await;
        res
    }

    async fn step_instruction(
        &self,
        state: &mut StageState,
        ins: &Instruction,
    ) -> std::result::Result<(), Failure> {
        if self.out.closed() {
            return Err(bad("build canceled: the client went away").into());
        }
        let plan = self.plan(state, ins).await.map_err(|e| match e {
            EngineError::InvalidArgument(m) if !m.contains("line") && ins.line > 0 => {
                EngineError::InvalidArgument(m)
            }
            e => e,
        })?;
        self.execute(state, plan).await
    }

    async fn execute(
        &self,
        state: &mut StageState,
        plan: StepPlan,
    ) -> std::result::Result<(), Failure> {
        let mut keycfg = plan.config.clone();
        keycfg.image.clear();
        let cfg_json = serde_json::to_string(&keycfg).unwrap_or_default();
        let mut parts: Vec<&str> = vec![&cfg_json];
        let cmd = plan.step_cmd.join("\u{1}");
        parts.push(&cmd);
        let author = plan.author.clone().unwrap_or_default();
        parts.push(&author);
        for e in &plan.key_extra {
            parts.push(e);
        }
        let key = cache::key(&state.parent.id_string(), &parts);
        let images = self.svc.images.clone();
        if !self.opts.nocache {
            let (i2, k2) = (images.clone(), key.clone());
            let hit = blocking(move || match cache::lookup(&i2, &k2)? {
                Some(rec) => Parent::of_image(&i2, &rec).map(Some),
                None => Ok(None),
            })
            .await?;
            if let Some(p) = hit {
                self.out.stream(" ---> Using cache\n");
                if let Some(id) = &p.id {
                    self.out.stream(format!(" ---> {}\n", id.short()));
                }
                state.config = p.blob.config.clone();
                state.parent = p;
                state.cmd_set = plan.cmd_set;
                return Ok(());
            }
        }
        let t0 = std::time::Instant::now();
        let mut parent = state.parent.clone();
        if let Some(a) = &plan.author {
            parent.blob.author = Some(a.clone());
        }
        let mut step_cmd = plan.step_cmd.clone();
        let mut removing = None;
        let layer = match plan.action {
            Action::Meta => None,
            Action::Run(spec, binds) => {
                let (layer, cid) = self.execute_run(&state.parent, *spec, binds).await?;
                removing = cid;
                layer
            }
            Action::Copy(cp) => {
                let (layer, created_by) = self.execute_copy(state, *cp).await?;
                if let Some(c) = created_by {
                    step_cmd = c;
                }
                layer
            }
            Action::Workdir(dir) => {
                let d = self.step_dir();
                let layers = state.parent.layers.clone();
                blocking(move || {
                    copy::write_step(&images, &layers, &d, |root, _upper| {
                        berth_store::safepath::mkdir_all_in_root(
                            root,
                            std::path::Path::new(&dir),
                            0o755,
                        )?;
                        Ok(())
                    })
                })
                .await?
            }
        };
        let t_action = t0.elapsed();
        let images = self.svc.images.clone();
        let db = self.svc.db.clone();
        let config = plan.config.clone();
        let next = blocking(move || {
            let size = layer.as_ref().map(|l| l.size).unwrap_or(0);
            let next = imagecfg::commit(&images, &parent, &config, &step_cmd, layer)?;
            // Recorded with --no-cache too: the next build may use it.
            if let Some(id) = &next.id {
                cache::store(&db, &key, id, &step_cmd.join(" "), size)?;
            }
            Ok(next)
        })
        .await?;
        tracing::debug!(
            step = state.step,
            action_ms = t_action.as_secs_f64() * 1e3,
            commit_ms = (t0.elapsed() - t_action).as_secs_f64() * 1e3,
            "build step executed"
        );
        if let Some(cid) = removing {
            self.out.stream(format!(
                "Removing intermediate container {}\n",
                &cid[..12.min(cid.len())]
            ));
            let _ = self.svc.containers.remove(&cid, true, true).await;
        }
        if let Some(id) = &next.id {
            self.out.stream(format!(" ---> {}\n", id.short()));
        }
        state.config = plan.config;
        state.parent = next;
        state.cmd_set = plan.cmd_set;
        Ok(())
    }

    /// RUN: mount the bind sources, run the container, commit its upper dir. Returns the layer
    /// and the container to remove (None when it was already removed).
    async fn execute_run(
        &self,
        parent: &Parent,
        mut spec: RunSpec,
        binds: Vec<BindSource>,
    ) -> std::result::Result<(Option<crate::images::LayerRef>, Option<String>), Failure> {
        let mut roots = Vec::new();
        for b in binds {
            let d = self.step_dir();
            let lowers = b.lowers.clone();
            let root = blocking(move || StepRoot::mount_dirs(lowers, &d)).await?;
            let src = root.rootfs().join(b.subpath.trim_start_matches('/'));
            spec.binds.push(format!(
                "{}:{}{}",
                src.display(),
                b.target,
                if b.readonly { ":ro" } else { "" }
            ));
            roots.push(root);
        }
        spec.image = parent.id.clone();
        let containers = self.svc.containers.clone();
        let res = run::run(&containers, &spec, &self.out).await;
        let (cid, code) = match res {
            Ok(x) => x,
            Err(e) => {
                drop_roots(roots).await;
                return Err(e.into());
            }
        };
        drop_roots(roots).await;
        if code != 0 {
            if self.opts.forcerm {
                let _ = containers.remove(&cid, true, true).await;
            }
            let msg = format!(
                "The command '{}' returned a non-zero code: {code}",
                spec.argv.join(" ")
            );
            return Err(Failure {
                error: EngineError::InvalidArgument(msg),
                code: Some(code),
            });
        }
        let upper = containers.dir(&cid).join("upper");
        let images = self.svc.images.clone();
        let chain = parent.chain_id().cloned();
        // The container is removed next (rm, the default): its upper dir becomes the layer.
        let consume = self.opts.rm || self.opts.forcerm;
        let layer = blocking(move || {
            let opts = super::copy::layer_opts();
            if consume {
                crate::layerdiff::commit_upper_consume(&images, chain.as_ref(), &upper, &opts)
            } else {
                crate::layerdiff::commit_upper_with(&images, chain.as_ref(), &upper, &opts)
            }
        })
        .await;
        let layer = match layer {
            Ok(l) => l,
            Err(e) => {
                let _ = containers.remove(&cid, true, true).await;
                return Err(e.into());
            }
        };
        let remove = if self.opts.rm || self.opts.forcerm {
            Some(cid)
        } else {
            None
        };
        Ok((layer, remove))
    }
}

async fn drop_roots(roots: Vec<StepRoot>) {
    let _ = tokio::task::spawn_blocking(move || drop(roots)).await;
}

/// Stage names/indexes an instruction reads from (COPY --from, RUN --mount from=).
fn stage_refs(ins: &Instruction) -> Vec<String> {
    match &ins.kind {
        InstructionKind::Copy(c) | InstructionKind::Add(c) => c.from.iter().cloned().collect(),
        InstructionKind::Run(r) => r
            .mounts
            .iter()
            .filter_map(|m| {
                m.split(',')
                    .find_map(|f| f.trim().strip_prefix("from=").map(|v| v.trim().to_string()))
            })
            .collect(),
        _ => Vec::new(),
    }
}
