//! `login` / `logout`, and the credentials of docker's `config.json` that `pull` and `push` send
//! as `X-Registry-Auth`.
//!
//! The file is docker's: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, with
//! `"auths": {"<host>": {"auth": base64("user:password")}}` (Docker Hub under
//! `https://index.docker.io/v1/`). Other keys of the file are kept as they are.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::error::{CliError, Result};

/// The key Docker Hub's credentials are stored under (docker's `IndexServer`).
pub const INDEX_SERVER: &str = "https://index.docker.io/v1/";
const DEFAULT_DOMAIN: &str = "docker.io";

#[derive(Args, Debug, Default)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password or Personal Access Token (PAT)
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the Password or Personal Access Token (PAT) from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// SERVER
    pub server: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct LogoutArgs {
    /// SERVER
    pub server: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// base64 (standard alphabet for config.json, URL-safe for X-Registry-Auth)

use base64::Engine as _;

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// URL-safe base64 with padding (Go's `base64.URLEncoding`, what docker sends).
pub fn base64url_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(data)
}

/// Decode standard or URL-safe base64, padded or not. None on invalid input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    const CFG: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    let s = s.trim();
    if s.contains(['-', '_']) {
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, CFG)
            .decode(s)
            .ok()
    } else {
        GeneralPurpose::new(&base64::alphabet::STANDARD, CFG)
            .decode(s)
            .ok()
    }
}

// ---------------------------------------------------------------------------------------------
// config.json

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker").join("config.json")
}

fn read_config() -> Result<Map<String, Value>> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(data) if data.iter().all(|b| b.is_ascii_whitespace()) => Ok(Map::new()),
        Ok(data) => match serde_json::from_slice::<Value>(&data) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(CliError::other(format!(
                "loading config file: {}: invalid JSON object",
                p.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(CliError::other(format!(
            "loading config file: {}: {e}",
            p.display()
        ))),
    }
}

/// Write the file as docker does (tab-indented JSON, mode 0600), through a temp file + rename.
fn write_config(cfg: &Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let p = config_path();
    let dir = p.parent().map(PathBuf::from).unwrap_or_else(|| ".".into());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let mut data = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut data, fmt);
    serde::Serialize::serialize(cfg, &mut ser)?;
    let tmp = dir.join(format!(".config.json.tmp-{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| CliError::other(format!("saving config file {}: {e}", p.display())))
}

/// docker's `ConvertToHostname`: drop the scheme and any path.
pub fn convert_to_hostname(s: &str) -> String {
    let s = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .unwrap_or(s);
    s.split('/').next().unwrap_or(s).to_string()
}

/// The key credentials for a registry host are stored under.
fn config_key(host: &str) -> String {
    if is_hub(host) {
        INDEX_SERVER.to_string()
    } else {
        host.to_string()
    }
}

fn is_hub(host: &str) -> bool {
    matches!(
        host,
        "" | DEFAULT_DOMAIN | "index.docker.io" | "registry-1.docker.io" | INDEX_SERVER
    )
}

/// The registry host of an image reference, as the docker CLI splits it: the first component
/// when it has a `.` or `:` or is `localhost`, else Docker Hub.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => DEFAULT_DOMAIN.to_string(),
    }
}

/// Stored credentials for `host`: (username, password, identity token).
pub fn stored_credentials(host: &str) -> Option<(String, String, String)> {
    let cfg = read_config().ok()?;
    let auths = cfg.get("auths")?.as_object()?;
    let key = config_key(host);
    let entry = auths.get(&key).or_else(|| {
        auths.iter().find_map(|(k, v)| {
            let h = convert_to_hostname(k);
            (h == key || (is_hub(&h) && is_hub(host))).then_some(v)
        })
    })?;
    let token = entry
        .get("identitytoken")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    let (mut user, mut pass) = (String::new(), String::new());
    if let Some(a) = entry.get("auth").and_then(|a| a.as_str()) {
        let raw = base64_decode(a)?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        user = u.to_string();
        pass = p.to_string();
    }
    if let Some(u) = entry.get("username").and_then(|u| u.as_str()) {
        if user.is_empty() {
            user = u.to_string();
        }
    }
    if let Some(p) = entry.get("password").and_then(|p| p.as_str()) {
        if pass.is_empty() {
            pass = p.to_string();
        }
    }
    if user.is_empty() && pass.is_empty() && token.is_empty() {
        return None;
    }
    Some((user, pass, token))
}

/// The `X-Registry-Auth` value for pulling or pushing `image` (a reference), from the stored
/// credentials of its registry; None when there are none. For REG-PULL's `pull` as well.
pub fn registry_auth_for(image: &str) -> Option<String> {
    let host = registry_host(image);
    let (user, pass, token) = stored_credentials(&host)?;
    Some(encode_auth(&user, &pass, &token, &config_key(&host)))
}

/// docker's encoding of an AuthConfig for the `X-Registry-Auth` header.
pub fn encode_auth(user: &str, pass: &str, token: &str, server: &str) -> String {
    let mut v = json!({"username": user, "password": pass, "serveraddress": server});
    if !token.is_empty() {
        v["identitytoken"] = json!(token);
    }
    base64url_encode(v.to_string().as_bytes())
}

// ---------------------------------------------------------------------------------------------
// commands

fn read_line_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Read a password from the terminal without echo (plain line when stdin is not a terminal).
fn read_password(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let mut e = std::io::stderr().lock();
    write!(e, "{prompt}")?;
    e.flush()?;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return read_line_stdin();
    }
    let saved = tcgetattr(&stdin).map_err(|e| CliError::other(e.to_string()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|e| CliError::other(e.to_string()))?;
    let line = read_line_stdin();
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    writeln!(e)?;
    line
}

/// `berth login [-u USER] [-p PASS | --password-stdin] [SERVER]`.
pub async fn login(c: &Client, a: LoginArgs) -> Result<i32> {
    if a.password.is_some() && a.password_stdin {
        return Err(CliError::Usage(
            "--password and --password-stdin are mutually exclusive".into(),
        ));
    }
    if a.password_stdin && a.username.as_deref().unwrap_or("").is_empty() {
        return Err(CliError::Usage(
            "Must provide --username with --password-stdin".into(),
        ));
    }
    let server = match a.server.as_deref() {
        Some(s) if !s.is_empty() && s != DEFAULT_DOMAIN => s.to_string(),
        _ => INDEX_SERVER.to_string(),
    };
    let host = convert_to_hostname(&server);
    let key = config_key(&host);
    if a.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    // No credentials given: the stored ones are tried first, as docker does.
    if a.username.is_none() && a.password.is_none() && !a.password_stdin {
        if let Some((u, p, _)) =
            stored_credentials(&host).filter(|(u, p, _)| !u.is_empty() && !p.is_empty())
        {
            eprintln!("Authenticating with existing credentials... [Username: {u}]");
            let body = json!({"username": u, "password": p, "serveraddress": server});
            match c.post_json::<Value>("/auth", Some(&body)).await {
                Ok(_) => {
                    super::out("Login Succeeded\n")?;
                    return Ok(0);
                }
                Err(e) => eprintln!("Login did not succeed, error: {e}"),
            }
        }
    }
    let mut user = a.username.clone().unwrap_or_default();
    let mut pass = a.password.clone().unwrap_or_default();
    if a.password_stdin {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)?;
        pass = s.trim_end_matches(['\n', '\r']).to_string();
    }
    if user.is_empty() {
        let mut e = std::io::stderr().lock();
        write!(e, "Username: ")?;
        e.flush()?;
        user = read_line_stdin()?.trim().to_string();
        if user.is_empty() {
            return Err(CliError::other("Error: Non-null Username Required"));
        }
    }
    if pass.is_empty() {
        pass = read_password("Password: ")?;
        if pass.is_empty() {
            return Err(CliError::other("Error: Password Required"));
        }
    }
    let body = json!({"username": user, "password": pass, "serveraddress": server});
    let resp: Value = c.post_json("/auth", Some(&body)).await?;
    let token = resp
        .get("IdentityToken")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    let mut cfg = read_config()?;
    let auths = cfg
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let mut entry = Map::new();
    if token.is_empty() {
        entry.insert(
            "auth".into(),
            json!(base64_encode(format!("{user}:{pass}").as_bytes())),
        );
    } else {
        entry.insert(
            "auth".into(),
            json!(base64_encode(format!("{user}:").as_bytes())),
        );
        entry.insert("identitytoken".into(), json!(token));
    }
    if let Some(m) = auths.as_object_mut() {
        m.insert(key, Value::Object(entry));
    }
    write_config(&cfg)?;
    eprintln!(
        "WARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
        config_path().display()
    );
    let status = resp
        .get("Status")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("Login Succeeded");
    super::out(&format!("{status}\n"))?;
    Ok(0)
}

/// `berth logout [SERVER]`.
pub async fn logout(_c: &Client, a: LogoutArgs) -> Result<i32> {
    let (server, shown) = match a.server.as_deref() {
        Some(s) if !s.is_empty() && !is_hub(&convert_to_hostname(s)) => {
            (s.to_string(), convert_to_hostname(s))
        }
        _ => (INDEX_SERVER.to_string(), INDEX_SERVER.to_string()),
    };
    let mut cfg = read_config()?;
    let candidates = [
        server.clone(),
        shown.clone(),
        format!("http://{shown}"),
        format!("https://{shown}"),
    ];
    let Some(auths) = cfg.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        super::out(&format!("Not logged in to {shown}\n"))?;
        return Ok(0);
    };
    if !candidates.iter().any(|k| auths.contains_key(k)) {
        super::out(&format!("Not logged in to {shown}\n"))?;
        return Ok(0);
    }
    super::out(&format!("Removing login credentials for {shown}\n"))?;
    for k in &candidates {
        auths.remove(k);
    }
    write_config(&cfg)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user:pass", "ü?>>~~~"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).unwrap(), s.as_bytes(), "{s}");
            let u = base64url_encode(s.as_bytes());
            assert_eq!(base64_decode(&u).unwrap(), s.as_bytes(), "{s}");
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8=");
        assert_eq!(base64_decode("YWI").unwrap(), b"ab");
        assert!(base64_decode("Y").is_none());
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn hosts_as_docker_splits_them() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox:1"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/x/y:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("localhost/x"), "localhost");
        assert_eq!(
            registry_host("reg.example.com/x@sha256:00"),
            "reg.example.com"
        );
        assert_eq!(convert_to_hostname("https://a.b:5000/v2/"), "a.b:5000");
        assert_eq!(config_key("docker.io"), INDEX_SERVER);
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn auth_header_is_base64url_json() {
        let h = encode_auth("u", "p?>", "", "127.0.0.1:5000");
        let v: Value = serde_json::from_slice(&base64_decode(&h).unwrap()).unwrap();
        assert_eq!(v["username"], "u");
        assert_eq!(v["password"], "p?>");
        assert_eq!(v["serveraddress"], "127.0.0.1:5000");
        assert!(v.get("identitytoken").is_none());
    }
}
