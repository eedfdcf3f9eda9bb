//! Network isolation of parallel test engines: each `TestDaemon` gets its own bridge name,
//! `bip`, address pool and nftables table through a daemon.json, from a /18 of 10.0.0.0/8 that
//! it claims with a file in /tmp/berth-test-nets/ (no host route may overlap it), and removes
//! its bridges and table when dropped.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CLAIMS: &str = "/tmp/berth-test-nets";

pub struct TestNet {
    /// Second and third octet of the claimed 10.a.b.0/18.
    pub a: u8,
    pub b: u8,
    /// Default bridge device, e.g. "bt1a2b3c4d".
    pub bridge: String,
    /// nftables table (family ip).
    pub table: String,
    claim: PathBuf,
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// IPv4 routes of the host as (network, prefix).
fn host_routes() -> Vec<(u32, u8)> {
    let text = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        if let (Ok(d), Ok(m)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16)) {
            let prefix = m.count_ones() as u8;
            if prefix > 0 {
                out.push((u32::from(Ipv4Addr::from(d.to_le_bytes())), prefix));
            }
        }
    }
    out
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let p = a.1.min(b.1);
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    a.0 & mask == b.0 & mask
}

impl TestNet {
    pub fn claim(rand: &str) -> TestNet {
        let _ = fs::create_dir_all(CLAIMS);
        let routes = host_routes();
        let mut seed = u32::from_str_radix(&rand[..rand.len().min(8)], 16).unwrap_or(0) as usize;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let a = 64 + (seed >> 8) % 190; // 64..=253
            if a == 88 || a == 89 {
                continue; // berth's own defaults
            }
            let b = ((seed >> 4) % 4) * 64;
            let (a, b) = (a as u8, b as u8);
            let net = (u32::from(Ipv4Addr::new(10, a, b, 0)), 18u8);
            if routes.iter().any(|r| overlaps(*r, net)) {
                continue;
            }
            let claim = Path::new(CLAIMS).join(format!("10.{a}.{b}"));
            if let Ok(s) = fs::read_to_string(&claim) {
                let pid = s.trim().parse::<i32>().unwrap_or(0);
                if pid_alive(pid) {
                    continue;
                }
                let _ = fs::remove_file(&claim);
            }
            let Ok(mut f) = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&claim)
            else {
                continue;
            };
            let _ = write!(f, "{}", std::process::id());
            return TestNet {
                a,
                b,
                bridge: format!("bt{}", &rand[..8.min(rand.len())]),
                table: format!("berth_t{}", &rand[..8.min(rand.len())]),
                claim,
            };
        }
        panic!("no free 10.x.y.0/18 for a test engine's networks");
    }

    /// The default bridge's address, e.g. "10.77.64.1/24".
    pub fn bip(&self) -> String {
        format!("10.{}.{}.1/24", self.a, self.b)
    }
    /// The default bridge's gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.a, self.b, 1)
    }
    /// The pool user networks get subnets from: 16 /24s.
    pub fn pool(&self) -> String {
        format!("10.{}.{}.0/20", self.a, self.b + 16)
    }
    /// A /24 inside the claim that neither the bridge nor the pool uses (i < 32), for tests
    /// that pass `--subnet`.
    pub fn spare_subnet(&self, i: u8) -> String {
        format!("10.{}.{}.0/24", self.a, self.b + 32 + (i % 32))
    }

    /// The network keys of the daemon.json, merged into `base` (a test's own config file).
    pub fn daemon_json(&self, base: Option<serde_json::Value>) -> serde_json::Value {
        let mut v = base
            .filter(|v| v.is_object())
            .unwrap_or_else(|| serde_json::json!({}));
        let o = v.as_object_mut().expect("object");
        o.entry("bridge").or_insert(self.bridge.clone().into());
        o.entry("bip").or_insert(self.bip().into());
        o.entry("nft-table").or_insert(self.table.clone().into());
        o.entry("default-address-pools")
            .or_insert(serde_json::json!([{"base": self.pool(), "size": 24}]));
        v
    }

    /// `extra` daemon args with `--config-file` pointing at a daemon.json in `dir` that holds the
    /// network keys (merged with the test's own config file if it passed one).
    pub fn daemon_args(&self, extra: &[String], dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut base = None;
        let mut i = 0;
        while i < extra.len() {
            let a = &extra[i];
            if a == "--config-file" && i + 1 < extra.len() {
                base = Some(PathBuf::from(&extra[i + 1]));
                i += 2;
                continue;
            }
            if let Some(p) = a.strip_prefix("--config-file=") {
                base = Some(PathBuf::from(p));
                i += 1;
                continue;
            }
            out.push(a.clone());
            i += 1;
        }
        let base_json = base
            .and_then(|p| fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let path = dir.join("daemon-net.json");
        let text = serde_json::to_vec_pretty(&self.daemon_json(base_json)).unwrap_or_default();
        if let Err(e) = fs::write(&path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
        out.push("--config-file".into());
        out.push(path.display().to_string());
        out
    }

    /// Remove links and the table (after the engine and every container are gone).
    pub fn cleanup(&self, bridges: &[String]) {
        let mut names: Vec<String> = bridges.to_vec();
        names.push(self.bridge.clone());
        names.sort();
        names.dedup();
        for n in names {
            if link_exists(&n) {
                quiet(Command::new("ip").args(["link", "del", &n]));
            }
        }
        quiet(Command::new("nft").args(["delete", "table", "ip", &self.table]));
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.claim);
    }
}

fn quiet(cmd: &mut Command) {
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether nftables has table `ip <name>`.
pub fn nft_table_exists(name: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Bridge devices of the engine's networks (asked before the engine is killed).
pub fn bridges_of(socket: &Path) -> Vec<String> {
    let Ok((200, body)) =
        super::http_request(socket, "GET", "/networks", None, "", Duration::from_secs(5))
    else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(nets)) = serde_json::from_slice::<serde_json::Value>(&body)
    else {
        return Vec::new();
    };
    nets.iter()
        .filter(|n| n["Driver"] == "bridge")
        .filter_map(|n| {
            n["Options"]["com.docker.network.bridge.name"]
                .as_str()
                .map(String::from)
                .or_else(|| {
                    n["Id"]
                        .as_str()
                        .map(|id| format!("br-{}", &id[..12.min(id.len())]))
                })
        })
        .collect()
}
