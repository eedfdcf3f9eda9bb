//! One instruction → a step plan: the new image config, the build container's Cmd (history's
//! created_by, as Docker's classic builder writes it), cache key material, and the action (run,
//! copy, mkdir, or nothing for metadata). Words are expanded here with the stage's ENV and ARGs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_build::ast::{Args, Copy, Instruction, InstructionKind, MountKind, RunMount};

use super::copy::{self, CopyOpts};
use super::executor::{
    blocking, Action, BindSource, Builder, CopyPlan, StageState, StepPlan, PROXY_ARGS,
};
use super::fetch;
use super::format::{abs_path, expose_ports, go_duration, go_quote, go_quote_list, nop, nop1};
use super::run::RunSpec;
use super::sources::{self, Item};
use crate::{EngineError, Result};

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

impl Builder {
    /// The variables visible to expansion in a stage: ARGs (with values), then ENV (wins).
    fn vars(&self, st: &StageState) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = st
            .args
            .iter()
            .filter_map(|(k, val)| val.clone().map(|x| (k.clone(), x)))
            .collect();
        for kv in st.config.env_list() {
            match kv.split_once('=') {
                Some((k, x)) => v.push((k.to_string(), x.to_string())),
                None => v.push((kv.clone(), String::new())),
            }
        }
        v
    }

    fn expand(&self, st: &StageState, word: &str) -> Result<String> {
        let vars = self.vars(st);
        let l = berth_build::shell::pairs_lookup(&vars);
        berth_build::shell::expand(word, self.escape, &l).map_err(|e| bad(e.to_string()))
    }

    fn expand_words(&self, st: &StageState, word: &str) -> Result<Vec<String>> {
        let vars = self.vars(st);
        let l = berth_build::shell::pairs_lookup(&vars);
        berth_build::shell::expand_words(word, self.escape, &l).map_err(|e| bad(e.to_string()))
    }

    pub(super) async fn plan(&self, st: &mut StageState, ins: &Instruction) -> Result<StepPlan> {
        let mut config = st.config.clone();
        let mut cmd_set = st.cmd_set;
        let mut key_extra = Vec::new();
        let mut author = None;
        let mut action = Action::Meta;
        let shell = config.shell_or_default();
        let step_cmd = match &ins.kind {
            InstructionKind::Env(pairs) => {
                let mut text = String::from("ENV");
                let mut set = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand(st, k)?;
                    let v = self.expand(st, v)?;
                    if k.is_empty() {
                        return Err(bad("ENV names can not be blank"));
                    }
                    text.push_str(&format!(" {k}={v}"));
                    set.push((k, v));
                }
                for (k, v) in set {
                    config.env_set(&k, &v);
                }
                nop(&shell, text)
            }
            InstructionKind::Label(pairs) => {
                let mut text = String::from("LABEL");
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                let mut set = Vec::new();
                for (k, v) in pairs {
                    set.push((self.expand(st, k)?, self.expand(st, v)?));
                }
                for (k, v) in set {
                    if k.is_empty() {
                        return Err(bad("LABEL names can not be blank"));
                    }
                    text.push_str(&format!(" {k}={v}"));
                    labels.insert(k, v);
                }
                nop(&shell, text)
            }
            InstructionKind::Arg(decls) => {
                let mut text = String::from("ARG");
                for (i, d) in decls.iter().enumerate() {
                    let default = match &d.default {
                        Some(x) => Some(self.expand(st, x)?),
                        None => None,
                    };
                    let _ = i;
                    text.push(' ');
                    text.push_str(&d.name);
                    if let Some(x) = &default {
                        text.push('=');
                        text.push_str(x);
                    }
                    let value = match self.opts.buildargs.get(&d.name) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => default.or_else(|| {
                            self.meta
                                .iter()
                                .rev()
                                .find(|(n, _)| n == &d.name)
                                .and_then(|(_, v)| v.clone())
                        }),
                    };
                    self.consume_arg(&d.name);
                    st.args.retain(|(n, _)| n != &d.name);
                    st.args.push((d.name.clone(), value));
                }
                // The value in use is part of the key (it changes what later RUNs see).
                key_extra.push(format!("{:?}", st.args));
                nop(&shell, text)
            }
            InstructionKind::Cmd(a) => {
                let cmd = match a {
                    Args::Shell(s) => {
                        let mut v = shell.clone();
                        v.push(s.clone());
                        v
                    }
                    Args::Exec(v) => v.clone(),
                };
                let text = format!("CMD {}", go_quote_list(&cmd));
                config.cmd = Some(cmd);
                cmd_set = true;
                nop(&shell, text)
            }
            InstructionKind::Entrypoint(a) => {
                let ep = match a {
                    Args::Shell(s) => {
                        let mut v = shell.clone();
                        v.push(s.clone());
                        v
                    }
                    Args::Exec(v) => v.clone(),
                };
                let text = format!("ENTRYPOINT {}", go_quote_list(&ep));
                config.entrypoint = Some(ep);
                if !st.cmd_set {
                    config.cmd = None;
                }
                nop(&shell, text)
            }
            InstructionKind::Shell(v) => {
                if v.is_empty() {
                    return Err(bad("SHELL requires at least one argument"));
                }
                config.shell = Some(v.clone());
                nop(v, format!("SHELL [{}]", v.join(" ")))
            }
            InstructionKind::Expose(words) => {
                let mut all = Vec::new();
                for w in words {
                    all.extend(self.expand_words(st, w)?);
                }
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for w in &all {
                    for p in expose_ports(w)? {
                        ports.insert(p, serde_json::json!({}));
                    }
                }
                nop(&shell, format!("EXPOSE {}", all.join(" ")))
            }
            InstructionKind::Volume(words) => {
                let mut all = Vec::new();
                for w in words {
                    all.extend(self.expand_words(st, w)?);
                }
                let vols = config.volumes.get_or_insert_with(BTreeMap::new);
                for v in &all {
                    if v.trim().is_empty() {
                        return Err(bad("VOLUME specified can not be an empty string"));
                    }
                    vols.insert(v.clone(), serde_json::json!({}));
                }
                nop(&shell, format!("VOLUME {}", go_quote_list(&all)))
            }
            InstructionKind::Workdir(w) => {
                let w = self.expand(st, w)?;
                let p = abs_path(&config.working_dir, &w);
                let p = if p.len() > 1 {
                    p.trim_end_matches('/').to_string()
                } else {
                    p
                };
                config.working_dir = p.clone();
                action = Action::Workdir(p.clone());
                nop1(&shell, format!("WORKDIR {p}"))
            }
            InstructionKind::User(u) => {
                let u = self.expand(st, u)?;
                config.user = u.clone();
                nop(&shell, format!("USER {u}"))
            }
            InstructionKind::Stopsignal(s) => {
                let s = self.expand(st, s)?;
                config.stop_signal = Some(s.clone());
                nop(&shell, format!("STOPSIGNAL {s}"))
            }
            InstructionKind::Maintainer(m) => {
                let m = self.expand(st, m)?;
                author = Some(m.clone());
                nop(&shell, format!("MAINTAINER {m}"))
            }
            InstructionKind::Onbuild(inner) => {
                let t = inner.original.clone();
                config.on_build.get_or_insert_with(Vec::new).push(t.clone());
                nop(&shell, format!("ONBUILD {t}"))
            }
            InstructionKind::Healthcheck(h) => {
                let test = h.test();
                let mut hc = serde_json::Map::new();
                hc.insert("Test".into(), serde_json::json!(test));
                let mut fields = Vec::new();
                for (name, v) in [
                    ("Interval", h.interval),
                    ("Timeout", h.timeout),
                    ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval),
                ] {
                    if let Some(ns) = v.filter(|n| *n != 0) {
                        hc.insert(name.into(), serde_json::json!(ns));
                    }
                    fields.push(go_quote(&go_duration(v.unwrap_or(0))));
                }
                if let Some(r) = h.retries.filter(|r| *r != 0) {
                    hc.insert("Retries".into(), serde_json::json!(r));
                }
                let retries = h.retries.unwrap_or(0);
                let text = if h.cmd.is_none() {
                    format!(
                        "HEALTHCHECK &{{[\"NONE\"] {} '\\x{:02x}'}}",
                        fields.join(" "),
                        retries
                    )
                } else {
                    format!(
                        "HEALTHCHECK &{{{} {} '\\x{:02x}'}}",
                        go_quote_list(&test),
                        fields.join(" "),
                        retries
                    )
                };
                config.healthcheck = Some(serde_json::Value::Object(hc));
                nop(&shell, text)
            }
            InstructionKind::Run(r) => {
                let (spec, binds, step_cmd, extra) = self.plan_run(st, ins, r, &shell).await?;
                key_extra.extend(extra);
                action = Action::Run(Box::new(spec), binds);
                step_cmd
            }
            InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                let is_add = matches!(ins.kind, InstructionKind::Add(_));
                let (plan, step_cmd, extra) = self.plan_copy(st, ins, c, is_add, &shell).await?;
                key_extra.extend(extra);
                action = Action::Copy(Box::new(plan));
                step_cmd
            }
        };
        Ok(StepPlan {
            config,
            step_cmd,
            key_extra,
            author,
            action,
            cmd_set,
        })
    }

    async fn plan_run(
        &self,
        st: &StageState,
        ins: &Instruction,
        r: &berth_build::ast::Run,
        shell: &[String],
    ) -> Result<(RunSpec, Vec<BindSource>, Vec<String>, Vec<String>)> {
        let argv = match &r.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(s) => {
                let mut line = s.clone();
                let only_heredoc = ins.heredocs.len() == 1 && {
                    let t = s.trim();
                    let t = t.trim_start_matches("<<").trim_start_matches('-');
                    t.trim_matches(|c| c == '"' || c == '\'') == ins.heredocs[0].name
                };
                if only_heredoc {
                    line = ins.heredocs[0].body.clone();
                } else {
                    for h in &ins.heredocs {
                        line.push('\n');
                        line.push_str(&h.body);
                        line.push_str(&h.name);
                    }
                }
                let mut v = shell.to_vec();
                v.push(line);
                v
            }
        };
        // Build args in use (declared, with a value, not overridden by ENV).
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &st.args {
            if let Some(v) = v {
                if st.config.env_get(k).is_none() {
                    args.insert(k.clone(), v.clone());
                }
            } else {
                args.remove(k);
            }
        }
        let arg_env: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut step_cmd = argv.clone();
        if !arg_env.is_empty() {
            let mut c = vec![format!("|{}", arg_env.len())];
            c.extend(arg_env.iter().cloned());
            c.extend(argv.iter().cloned());
            step_cmd = c;
        }
        let mut env = st.config.env_list().to_vec();
        env.extend(arg_env.iter().cloned());
        for p in PROXY_ARGS {
            if let Some(Some(v)) = self.opts.buildargs.get(*p) {
                if !args.contains_key(*p) {
                    env.push(format!("{p}={v}"));
                }
            }
        }
        let network = match &r.network {
            Some(n) => self.expand(st, n)?,
            None => self.opts.network_mode.clone(),
        };
        let mut spec = RunSpec {
            image: None,
            argv,
            env,
            network_mode: network.clone(),
            binds: Vec::new(),
            tmpfs: Default::default(),
        };
        let mut binds = Vec::new();
        let mut extra = vec![format!("network={network}")];
        for m in &r.mounts {
            let m = self.expand(st, m)?;
            extra.push(format!("mount={m}"));
            let mut rm = RunMount::parse(&m).map_err(|e| {
                bad(format!(
                    "dockerfile parse error on line {}: {}",
                    ins.line, e.message
                ))
            })?;
            let target = rm.target.take().unwrap_or_default();
            match rm.kind {
                MountKind::Cache => {
                    let id = rm.id.clone().unwrap_or_else(|| target.clone());
                    if id.split('/').any(|c| c == "..") {
                        return Err(bad(format!(
                            "invalid cache mount id {id:?}: must not contain '..'"
                        )));
                    }
                    let dir = self
                        .svc
                        .cache_mounts_dir()
                        .join(berth_store::Digest::of(id.as_bytes()).hex());
                    let (uid, gid, mode) = (rm.uid, rm.gid, rm.mode);
                    let d2 = dir.clone();
                    blocking(move || {
                        if !d2.exists() {
                            std::fs::create_dir_all(&d2)?;
                            use std::os::unix::fs::PermissionsExt;
                            std::fs::set_permissions(
                                &d2,
                                std::fs::Permissions::from_mode(mode.unwrap_or(0o755)),
                            )?;
                            std::os::unix::fs::chown(&d2, uid.or(Some(0)), gid.or(Some(0)))?;
                        }
                        Ok(())
                    })
                    .await?;
                    spec.binds.push(format!("{}:{target}", dir.display()));
                }
                MountKind::Tmpfs => {
                    let opts = rm.size.map(|s| format!("size={s}")).unwrap_or_default();
                    spec.tmpfs.insert(target, opts);
                }
                MountKind::Bind => {
                    let readonly = rm.readonly.unwrap_or(true);
                    let src = super::context::clean_source(rm.source.as_deref().unwrap_or(""))?;
                    match rm.from.as_deref() {
                        None => {
                            let root = self.ctx.root().to_path_buf();
                            if readonly {
                                let p = contained(&root, &src)?;
                                spec.binds.push(format!("{}:{target}:ro", p.display()));
                            } else {
                                binds.push(BindSource {
                                    lowers: vec![root],
                                    subpath: src,
                                    target,
                                    readonly: false,
                                });
                            }
                        }
                        Some(from) => {
                            let lowers = match self.opts.build_contexts.get(from) {
                                Some(dir) => vec![dir.clone()],
                                None => self
                                    .source_layers(st, from)
                                    .await?
                                    .iter()
                                    .map(|l| self.svc.images.layers.dir(&l.chain_id))
                                    .collect(),
                            };
                            binds.push(BindSource {
                                lowers,
                                subpath: src,
                                target,
                                readonly,
                            });
                        }
                    }
                }
                MountKind::Secret | MountKind::Ssh => {
                    if rm.required {
                        let id = rm.id.clone().unwrap_or_else(|| target.clone());
                        return Err(bad(format!(
                            "secret {id}: not provided (berth's classic builder takes no secrets)"
                        )));
                    }
                }
            }
        }
        Ok((spec, binds, step_cmd, extra))
    }

    /// Layers of what `--from=X` names: an earlier stage, or an image.
    async fn source_layers(
        &self,
        st: &StageState,
        from: &str,
    ) -> Result<Vec<crate::images::LayerRef>> {
        let from = self.expand_meta(from)?;
        if let Some(j) = self.stage_ref(&from, st.idx) {
            return Ok(self.result(j).map(|p| p.layers).unwrap_or_default());
        }
        Ok(self.image_parent(&from).await?.layers)
    }

    async fn plan_copy(
        &self,
        st: &StageState,
        ins: &Instruction,
        c: &Copy,
        is_add: bool,
        shell: &[String],
    ) -> Result<(CopyPlan, Vec<String>, Vec<String>)> {
        let keyword = if is_add { "ADD" } else { "COPY" };
        let dest_word = self.expand(st, &c.dest)?;
        let dest = abs_path(&st.config.working_dir, &dest_word);
        let chown = match &c.chown {
            Some(x) => Some(self.expand(st, x)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(x) => {
                let x = self.expand(st, x)?;
                Some(
                    u32::from_str_radix(&x, 8)
                        .map_err(|_| bad(format!("invalid chmod parameter: {x}")))?,
                )
            }
            None => None,
        };
        let extra = vec![format!(
            "chown={chown:?} chmod={chmod:?} link={} dest={dest}",
            c.link
        )];
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(st, s)?);
        }
        let mut excludes = Vec::new();
        for x in &c.excludes {
            excludes.push(self.expand(st, x)?);
        }
        let opts = CopyOpts {
            owner: None,
            chmod,
            extract_archives: is_add && c.unpack != Some(false),
            excludes: berth_build::ignore::Ignore::from_patterns(&excludes),
        };
        // `--build-context name=dir` (berth build): a named directory, copied like the context.
        let named = c
            .from
            .as_ref()
            .and_then(|f| self.opts.build_contexts.get(f).cloned());
        if let Some(dir) = named {
            let mut items = Vec::new();
            for s in &sources {
                let (d2, s2) = (dir.clone(), s.clone());
                let rels = blocking(move || sources::expand_source(&d2, &s2, keyword)).await?;
                items.extend(rels.into_iter().map(|rel| Item::Path {
                    root: dir.clone(),
                    rel,
                }));
            }
            let (it2, ex) = (items.clone(), opts.excludes.clone());
            let hash = blocking(move || sources::hash_items(&it2, None, &ex)).await?;
            let text = format!("{keyword} {hash} in {dest_word} ");
            let plan = CopyPlan {
                dest,
                items,
                from_layers: None,
                sources,
                chown,
                opts,
                keyword,
            };
            return Ok((plan, nop1(shell, text), extra));
        }
        if let Some(from) = &c.from {
            let from_x = self.expand_meta(from)?;
            let (src_id, layers) = match self.stage_ref(&from_x, st.idx) {
                Some(j) => {
                    let p = self
                        .result(j)
                        .ok_or_else(|| EngineError::Internal(format!("stage {j} was not built")))?;
                    (p.id_string(), p.layers)
                }
                None => {
                    let p = self.image_parent(&from_x).await?;
                    (p.id_string(), p.layers)
                }
            };
            let text = format!(
                "{keyword} from:{src_id} {} in {dest_word} ",
                sources.join(" ")
            );
            let plan = CopyPlan {
                dest,
                items: Vec::new(),
                from_layers: Some(layers),
                sources,
                chown,
                opts,
                keyword,
            };
            return Ok((plan, nop1(shell, text), extra));
        }
        let mut items = Vec::new();
        for s in &sources {
            let hname = s
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(|c| c == '"' || c == '\'');
            let heredoc = s.starts_with("<<") || ins.heredocs.iter().any(|h| &h.name == s);
            if let Some(h) = ins.heredocs.iter().find(|h| heredoc && h.name == hname) {
                let body = if h.expand {
                    self.expand(st, &h.body).unwrap_or_else(|_| h.body.clone())
                } else {
                    h.body.clone()
                };
                items.push(Item::Data {
                    name: h.name.clone(),
                    data: body.into_bytes(),
                    mode: 0o644,
                    mtime: 0,
                });
                continue;
            }
            if is_add && fetch::is_url(s) {
                let url = s.clone();
                let f = blocking(move || fetch::get(&url)).await?;
                if let Some(want) = &c.checksum {
                    let want = self.expand(st, want)?;
                    let got = berth_store::Digest::of(&f.data).to_string();
                    if want != got {
                        return Err(bad(format!(
                            "digest mismatch for {s}: expected {want}, got {got}"
                        )));
                    }
                }
                items.push(Item::Data {
                    name: f.name,
                    data: f.data,
                    mode: 0o600,
                    mtime: f.mtime,
                });
                continue;
            }
            if fetch::is_url(s) {
                return Err(bad(format!("source can't be a URL for {keyword}")));
            }
            items.extend(sources::resolve_context(&self.ctx, s, keyword)?);
        }
        if items.is_empty() {
            return Err(bad(format!(
                "{keyword} failed: no source files were specified"
            )));
        }
        if items.len() > 1 && !dest_word.ends_with('/') {
            return Err(bad(format!("When using {keyword} with more than one source file, the destination must be a directory and end with a /")));
        }
        let (it2, ctx, ex) = (items.clone(), self.ctx.clone(), opts.excludes.clone());
        let t0 = std::time::Instant::now();
        let hash = blocking(move || sources::hash_items(&it2, Some(&ctx), &ex)).await?;
        tracing::debug!(
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "build: sources hashed"
        );
        let text = format!("{keyword} {hash} in {dest_word} ");
        let plan = CopyPlan {
            dest,
            items,
            from_layers: None,
            sources,
            chown,
            opts,
            keyword,
        };
        Ok((plan, nop1(shell, text), extra))
    }

    /// Run a COPY/ADD plan: mount the parent (and the --from source), write, commit. Returns
    /// the layer and, for --from, the created_by with the content hash.
    pub(super) async fn execute_copy(
        &self,
        st: &StageState,
        cp: CopyPlan,
    ) -> Result<(Option<crate::images::LayerRef>, Option<Vec<String>>)> {
        let d = self.step_dir();
        let images = self.svc.images.clone();
        let layers = st.parent.layers.clone();
        let ctx = self.ctx.clone();
        let from_dir = self.step_dir();
        let shell = st.config.shell_or_default();
        blocking(move || {
            let mut created_by = None;
            let mut src_root = None;
            let mut items = cp.items.clone();
            if let Some(fl) = &cp.from_layers {
                let root = copy::StepRoot::mount(&images, fl, &from_dir)?;
                let rootfs = root.rootfs();
                items.clear();
                for s in &cp.sources {
                    for rel in sources::expand_source(&rootfs, s, cp.keyword)? {
                        items.push(Item::Path {
                            root: rootfs.clone(),
                            rel,
                        });
                    }
                }
                if items.is_empty() {
                    return Err(bad(format!(
                        "{} failed: no source files were specified",
                        cp.keyword
                    )));
                }
                let hash =
                    sources::hash_items(&items, None, &berth_build::ignore::Ignore::default())?;
                created_by = Some(nop1(
                    &shell,
                    format!("{} {hash} in {} ", cp.keyword, cp.dest),
                ));
                src_root = Some(root);
            }
            let preserve = cp.from_layers.is_some();
            let layer = copy::write_step(&images, &layers, &d, |rootfs, upper| {
                let mut o = cp.opts.clone();
                o.owner = match &cp.chown {
                    Some(spec) => Some(copy::parse_chown(rootfs, spec)?),
                    None if preserve => None,
                    None => Some((0, 0)),
                };
                copy::copy_into(
                    rootfs,
                    Some(upper),
                    &cp.dest,
                    &items,
                    if preserve { None } else { Some(&ctx) },
                    &o,
                )
            })?;
            drop(src_root);
            Ok((layer, created_by))
        })
        .await
    }
}

/// `rel` inside `root` with symlinks resolved, refused if it leads out.
fn contained(root: &Path, rel: &str) -> Result<PathBuf> {
    let croot = root.canonicalize()?;
    let p = croot
        .join(rel)
        .canonicalize()
        .map_err(|e| bad(format!("mount source {rel:?}: {e}")))?;
    if !p.starts_with(&croot) {
        return Err(bad(format!(
            "forbidden path outside the build context: {rel}"
        )));
    }
    Ok(p)
}
