//! The CLI against a scripted fake engine on a unix socket: checks the order of the run flow
//! (create → attach → wait → start), the exit code and the pull fallback.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    log: Vec<String>,
    create_body: Option<serde_json::Value>,
}

struct Fake {
    dir: PathBuf,
    sock: PathBuf,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn read_request(s: &mut UnixStream) -> Option<(String, String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}

fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![kind, 0, 0, 0];
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

async fn respond(s: &mut UnixStream, status: &str, body: &str) {
    let r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(r.as_bytes()).await;
}

async fn handle(
    mut s: UnixStream,
    state: Arc<Mutex<State>>,
    started: watch::Sender<bool>,
    image_ok: bool,
) {
    let Some((method, path, body)) = read_request(&mut s).await else {
        return;
    };
    let path = path.strip_prefix("/v1.47").unwrap_or(&path).to_string();
    state.lock().unwrap().log.push(format!("{method} {path}"));
    let mut rx = started.subscribe();
    if path.starts_with("/containers/create") {
        if !image_ok {
            return respond(
                &mut s,
                "404 Not Found",
                r#"{"message":"No such image: nope:latest"}"#,
            )
            .await;
        }
        state.lock().unwrap().create_body = serde_json::from_slice(&body).ok();
        respond(&mut s, "201 Created", r#"{"Id":"cid","Warnings":[]}"#).await;
    } else if path.starts_with("/images/create") {
        let body = "{\"status\":\"Pulling\"}\n{\"errorDetail\":{\"message\":\"pull access denied for nope\"},\"error\":\"pull access denied for nope\"}\n";
        respond(&mut s, "200 OK", body).await;
    } else if path.starts_with("/containers/cid/attach") {
        let _ = s
            .write_all(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            .await;
        let _ = rx.wait_for(|v| *v).await;
        let mut out = frame(1, b"hello\n");
        out.extend(frame(2, b"oops\n"));
        let _ = s.write_all(&out).await;
    } else if path.starts_with("/containers/cid/wait") {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let _ = rx.wait_for(|v| *v).await;
        let body = r#"{"StatusCode":3}"#;
        let _ = s
            .write_all(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes())
            .await;
    } else if path.starts_with("/containers/cid/start") {
        let _ = started.send(true);
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    } else if path.starts_with("/containers/json") {
        respond(&mut s, "200 OK", r#"[{"Id":"cid0123456789","Names":["/web"],"Image":"busybox","Command":"sh","Created":0,"Ports":[],"State":"running","Status":"Up 1 second"}]"#).await;
    } else {
        respond(&mut s, "404 Not Found", r#"{"message":"page not found"}"#).await;
    }
}

fn start_fake(tag: &str, image_ok: bool) -> Fake {
    let dir = std::env::temp_dir().join(format!("berth-cli-fake-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("engine.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(Mutex::new(State::default()));
    let listener = {
        let _g = rt.enter();
        UnixListener::bind(&sock).unwrap()
    };
    let st = state.clone();
    rt.spawn(async move {
        let (started, _) = watch::channel(false);
        loop {
            let Ok((s, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(handle(s, st.clone(), started.clone(), image_ok));
        }
    });
    Fake {
        dir,
        sock,
        state,
        _rt: rt,
    }
}

fn cli(fake: &Fake, args: &[&str]) -> i32 {
    let host = format!("unix://{}", fake.sock.display());
    let mut argv: Vec<std::ffi::OsString> = vec!["berth".into(), "-H".into(), host.into()];
    argv.extend(args.iter().map(|a| a.into()));
    berth_cli::run(argv)
}

#[test]
fn run_attaches_and_waits_before_start() {
    let fake = start_fake("run", true);
    let code = cli(
        &fake,
        &[
            "run", "--name", "t1", "--rm", "busybox", "sh", "-c", "exit 3",
        ],
    );
    assert_eq!(code, 3);
    let st = fake.state.lock().unwrap();
    let pos = |p: &str| {
        st.log
            .iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("{p} missing in {:?}", st.log))
    };
    let (create, attach, wait, start) = (
        pos("POST /containers/create?name=t1"),
        pos("POST /containers/cid/attach?stream=1&stdout=1&stderr=1"),
        pos("POST /containers/cid/wait?condition=removed"),
        pos("POST /containers/cid/start"),
    );
    assert!(
        create < attach && attach < wait && wait < start,
        "{:?}",
        st.log
    );
    let body = st.create_body.clone().unwrap();
    assert_eq!(body["Image"], "busybox");
    assert_eq!(body["Cmd"], serde_json::json!(["sh", "-c", "exit 3"]));
    assert_eq!(body["HostConfig"]["AutoRemove"], true);
}

#[test]
fn run_detached_prints_and_starts() {
    let fake = start_fake("detach", true);
    assert_eq!(cli(&fake, &["run", "-d", "busybox"]), 0);
    let st = fake.state.lock().unwrap();
    assert!(
        st.log.iter().any(|l| l == "POST /containers/cid/start"),
        "{:?}",
        st.log
    );
    assert!(!st.log.iter().any(|l| l.contains("attach")), "{:?}", st.log);
}

#[test]
fn missing_image_pull_failure_exits_125() {
    let fake = start_fake("pull", false);
    assert_eq!(cli(&fake, &["run", "nope"]), 125);
    let st = fake.state.lock().unwrap();
    assert!(
        st.log
            .iter()
            .any(|l| l == "POST /images/create?fromImage=docker.io%2Flibrary%2Fnope&tag=latest"),
        "{:?}",
        st.log
    );
}

#[test]
fn ps_and_errors() {
    let fake = start_fake("ps", true);
    assert_eq!(cli(&fake, &["ps", "-a", "--filter", "status=running"]), 0);
    {
        let st = fake.state.lock().unwrap();
        assert!(
            st.log
                .iter()
                .any(|l| l == "GET /containers/json?all=1&filters=%7B%22status%22%3A%7B%22running%22%3Atrue%7D%7D"),
            "{:?}",
            st.log
        );
    }
    // unknown endpoint → daemon error → exit 1
    assert_eq!(cli(&fake, &["pause", "zz"]), 1);
    // bad flag → 125
    assert_eq!(cli(&fake, &["ps", "--bogus"]), 125);
    // nothing listening → 1
    let dead = Fake {
        dir: fake.dir.join("none"),
        sock: fake.dir.join("none.sock"),
        state: Arc::default(),
        _rt: tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
    };
    assert_eq!(cli(&dead, &["ps"]), 1);
}
