//! Instructions and options beyond the basics: the image config as Docker writes it, ONBUILD,
//! ADD of archives (hostile ones too) and URLs, heredocs, --chown/--chmod, RUN --mount, -q and
//! --iidfile.

use std::fs;
use std::io::{Read, Write};

use super::common::{self, TestDaemon};
use super::helpers::*;

#[test]
fn image_config_fields_as_docker_and_onbuild() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let df = r#"FROM busybox
ENV A=1
EXPOSE 80 53/udp
VOLUME /data
WORKDIR /w
LABEL l=v
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD echo ok
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/echo"]
CMD ["hi"]
ONBUILD RUN echo trig > /tmp/trig
USER 1000:1000
"#;
    let ctx = context(&d, "cfg", &[("Dockerfile", df)]);
    build_ok(&d, &["-t", "cfg:parent", ctx.to_str().unwrap()]);
    let c = inspect(&d, "cfg:parent")["Config"].clone();
    assert_eq!(c["Env"][1], "A=1", "{c}");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "80/tcp": {}}),
        "{c}"
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}), "{c}");
    assert_eq!(c["WorkingDir"], "/w");
    assert_eq!(c["Labels"], serde_json::json!({"l": "v"}));
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "echo ok"], "Interval": 5000000000i64, "Timeout": 2000000000i64, "Retries": 4}),
        "{c}"
    );
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(c["Cmd"], serde_json::json!(["hi"]));
    assert_eq!(
        c["OnBuild"],
        serde_json::json!(["RUN echo trig > /tmp/trig"])
    );
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(run_out(&d, "cfg:parent", &[]), "hi\n");
    let hist = d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "cfg:parent",
    ]);
    assert!(hist.contains("/bin/sh -ec #(nop)  CMD [\"hi\"]"), "{hist}");
    assert!(hist.contains("/bin/sh -c #(nop) WORKDIR /w"), "{hist}");
    assert!(
        hist.contains("/bin/sh -c #(nop)  EXPOSE 80 53/udp"),
        "{hist}"
    );

    // A child runs the trigger right after FROM, and does not inherit it.
    let ctx2 = context(
        &d,
        "child",
        &[("Dockerfile", "FROM cfg:parent\nCMD [\"child\"]\n")],
    );
    let out = build_ok(&d, &["-t", "cfg:child", ctx2.to_str().unwrap()]);
    assert!(out.contains("# Executing 1 build trigger"), "{out}");
    let trig = d.docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        "cfg:child",
        "/tmp/trig",
    ]);
    assert_eq!(trig, "trig\n");
    let c = inspect(&d, "cfg:child")["Config"].clone();
    assert!(
        c["OnBuild"].is_null() || c["OnBuild"] == serde_json::json!([]),
        "{c}"
    );
    // ENTRYPOINT keeps a CMD set in the same stage only.
    let ctx3 = context(
        &d,
        "ep",
        &[("Dockerfile", "FROM cfg:parent\nENTRYPOINT [\"/bin/cat\"]\n")],
    );
    build_ok(&d, &["-t", "cfg:ep", ctx3.to_str().unwrap()]);
    let c = inspect(&d, "cfg:ep")["Config"].clone();
    assert!(c["Cmd"].is_null(), "{c}");
}

fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

#[test]
fn add_archives_urls_heredocs_chown_chmod() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let ctx = context(&d, "add", &[("f", "file\n")]);
    fs::write(
        ctx.join("a.tar"),
        tar_with(&[("dir/in-tar.txt", b"from tar\n")]),
    )
    .unwrap();
    let gz = std::process::Command::new("gzip")
        .arg(ctx.join("a.tar"))
        .status()
        .unwrap();
    assert!(gz.success());
    // A server on loopback for ADD <url>.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nfrom url\n",
            );
        }
    });
    let df = format!(
        "FROM busybox\nADD a.tar.gz /x/\nADD http://127.0.0.1:{port}/files/remote.txt /r/\nCOPY --chown=1000:1000 --chmod=600 f /owned\nRUN <<EOF\necho heredoc-run > /hd\nEOF\nCOPY <<EOF /etc/hd.conf\nkey=value\nEOF\n"
    );
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    build_ok(&d, &["-t", "add:1", ctx.to_str().unwrap()]);
    let out = run_out(
        &d,
        "add:1",
        &["sh", "-c", "cat /x/dir/in-tar.txt /r/remote.txt /hd /etc/hd.conf; stat -c '%a %u %g' /owned /r/remote.txt"],
    );
    assert_eq!(
        out, "from tar\nfrom url\nheredoc-run\nkey=value\n600 1000 1000\n600 0 0\n",
        "{out}"
    );
}

#[test]
fn hostile_add_tar_stays_inside() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let marker = format!("berth-escape-{}", common::random_hex(8));
    let ctx = context(
        &d,
        "evil",
        &[("Dockerfile", "FROM busybox\nADD evil.tar /deep/dir/\n")],
    );
    let up = format!("../../../../../../../../../tmp/{marker}");
    fs::write(
        ctx.join("evil.tar"),
        tar_with(&[("ok.txt", b"ok"), (up.as_str(), b"pwned")]),
    )
    .unwrap();
    let err = build_err(&d, &[ctx.to_str().unwrap()]);
    assert!(
        err.to_lowercase().contains("invalid archive entry") || err.contains("unsafe"),
        "{err}"
    );
    assert!(!std::path::Path::new("/tmp").join(&marker).exists());
    let found = std::process::Command::new("find")
        .arg(d.data_root())
        .arg("-name")
        .arg(&marker)
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&found.stdout)
    );
    // Nothing of the failed step is left mounted.
    assert!(common::mounts_below(d.data_root())
        .iter()
        .all(|m| !m.to_string_lossy().contains("/tmp/")));
}

#[test]
fn run_mounts_quiet_and_iidfile() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let df = "FROM busybox\nRUN --mount=type=cache,target=/cache echo x >> /cache/log && echo lines=$(wc -l < /cache/log)\nRUN --mount=type=bind,source=f,target=/m/f cat /m/f > /copied\nRUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch\n";
    let ctx = context(&d, "mnt", &[("Dockerfile", df), ("f", "bound\n")]);
    let out = build_ok(&d, &["-t", "mnt:1", ctx.to_str().unwrap()]);
    assert!(out.contains("lines=1"), "{out}");
    let out = build_ok(&d, &["--no-cache", "-t", "mnt:1", ctx.to_str().unwrap()]);
    assert!(out.contains("lines=2"), "{out}");
    assert_eq!(run_out(&d, "mnt:1", &["cat", "/copied"]), "bound\n");
    let ls = run_out(
        &d,
        "mnt:1",
        &[
            "sh",
            "-c",
            "ls -A /scratch 2>/dev/null | wc -l; ls /cache 2>/dev/null | wc -l",
        ],
    );
    assert_eq!(
        ls, "0\n0\n",
        "tmpfs and cache contents stay out of the image"
    );
    let bad = context(
        &d,
        "mnt2",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,id=../x,target=/c true\n",
        )],
    );
    let err = build_err(&d, &[bad.to_str().unwrap()]);
    assert!(err.contains("invalid cache mount id"), "{err}");

    // -q prints the id only; --iidfile writes it.
    let iid = d.scratch_dir().join("iid");
    let q = build_ok(
        &d,
        &[
            "-q",
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    let id = q.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{q}");
    assert_eq!(fs::read_to_string(&iid).unwrap().trim(), id);
}

#[test]
fn from_an_image_missing_locally_is_pulled() {
    let d = TestDaemon::start();
    let reg = common::registry::Registry::start();
    reg.push_busybox(&d, "bb/base:1", false);
    let name = format!("{}/bb/base:1", reg.addr());
    let df = format!("FROM {name}\nRUN echo pulled > /p\n");
    let ctx = context(&d, "pull", &[("Dockerfile", df.as_str())]);
    let out = build_ok(&d, &["-t", "pulled:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Pulling from bb/base"), "{out}");
    assert_eq!(run_out(&d, "pulled:1", &["cat", "/p"]), "pulled\n");
    // --pull pulls again even though the image is there; the steps still hit the cache.
    let out = build_ok(&d, &["--pull", "-t", "pulled:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Pulling from bb/base"), "{out}");
    assert_eq!(cache_hits(&out), 1, "{out}");
}

#[test]
fn named_build_context_and_add_checksum() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    let extra = context(&d, "extra", &[("lib/x.txt", "from extra\n")]);
    let ctx = context(
        &d,
        "named",
        &[(
            "Dockerfile",
            "FROM busybox\nCOPY --from=extra lib/ /lib2/\nRUN --mount=type=bind,from=extra,target=/e cat /e/lib/x.txt > /seen\n",
        )],
    );
    let bc = format!("extra={}", extra.display());
    let out = d.berth(&[
        "build",
        "--build-context",
        &bc,
        "-t",
        "named:1",
        ctx.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", d.describe(&out));
    let got = run_out(&d, "named:1", &["cat", "/lib2/x.txt", "/seen"]);
    assert_eq!(got, "from extra\nfrom extra\n");
    // A change in the named context invalidates the COPY.
    write(&extra, "lib/x.txt", "changed\n");
    let out = d.berth(&[
        "build",
        "--build-context",
        &bc,
        "-t",
        "named:2",
        ctx.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", d.describe(&out));
    assert_eq!(run_out(&d, "named:2", &["cat", "/lib2/x.txt"]), "changed\n");

    // ADD --checksum: a mismatch fails the build.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndata",
            );
        }
    });
    let bad = format!("sha256:{}", "0".repeat(64));
    let df = format!("FROM busybox\nADD --checksum={bad} http://127.0.0.1:{port}/f /f\n");
    let ctx2 = context(&d, "ck", &[("Dockerfile", df.as_str())]);
    let err = build_err(&d, &[ctx2.to_str().unwrap()]);
    assert!(err.contains("digest mismatch"), "{err}");
}

#[test]
fn independent_stages_build_in_parallel() {
    let d = TestDaemon::start();
    d.import_busybox("busybox:latest");
    // A rendezvous through a shared cache mount: each stage's RUN announces itself, then waits
    // (polling, 60 s deadline) for the other one. Built one after the other, the first waits in
    // vain and fails.
    let id = format!("rv-{}", common::random_hex(8));
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id={id},target=/c touch /c/{me} && i=0; while [ ! -e /c/{other} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.1; done; echo {me} > /{me}\n"
        )
    };
    let df = format!(
        "FROM busybox AS a\n{}FROM busybox AS b\n{}FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        wait("a", "b"),
        wait("b", "a")
    );
    let ctx = context(&d, "par", &[("Dockerfile", df.as_str())]);
    let out = build_ok(&d, &["-t", "par:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Step 3/7 : FROM busybox AS b"), "{out}");
    assert_eq!(run_out(&d, "par:1", &["cat", "/a", "/b"]), "a\nb\n");
}
