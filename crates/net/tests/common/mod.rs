//! Fixtures of berth-net's kernel tests (run as root, in parallel): a bridge with a random
//! name, a 10.234.x.0/24 subnet reserved with an flock so that parallel tests (and test binaries)
//! never share one, namespaces in a temp dir; everything is removed in Drop.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_net::link::{self, Bridge, Endpoint};
use berth_net::{ipam, Ipv4Net};

pub fn hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    s[..n].to_string()
}

/// Reserve a free 10.234.x.0/24 for the life of the returned lock file.
fn reserve_subnet() -> (Ipv4Net, File) {
    let start = u8::from_str_radix(&hex(2), 16).unwrap();
    for i in 0..=255u16 {
        let x = start.wrapping_add(i as u8);
        // Kept (empty) after use: unlinking a lock file others may hold open would race.
        let dir = "/tmp/berth-net-test-locks";
        std::fs::create_dir_all(dir).expect("lock dir");
        let path = format!("{dir}/10.234.{x}");
        let f = File::create(&path).expect("lock file");
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return (Ipv4Net::parse(&format!("10.234.{x}.0/24")).unwrap(), f);
        }
    }
    panic!("no free 10.234.x.0/24");
}

pub struct TestNet {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dir: tempfile::TempDir,
    pub netns: Vec<PathBuf>,
    pub tables: Vec<String>,
    _lock: File,
}

impl TestNet {
    /// A bridge "bt" + 6 hex on a fresh subnet, up, with the gateway address.
    pub fn new() -> TestNet {
        let (subnet, lock) = reserve_subnet();
        let gateway = ipam::default_gateway(&subnet).unwrap();
        let t = TestNet {
            bridge: format!("bt{}", hex(6)),
            subnet,
            gateway,
            dir: tempfile::tempdir().unwrap(),
            netns: Vec::new(),
            tables: Vec::new(),
            _lock: lock,
        };
        link::ensure_bridge(&t.bridge_spec()).expect("ensure_bridge");
        t
    }
    pub fn bridge_spec(&self) -> Bridge {
        Bridge {
            name: self.bridge.clone(),
            address: Ipv4Net {
                addr: self.gateway,
                prefix: self.subnet.prefix,
            },
            mtu: None,
        }
    }
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        let o = self.subnet.addr.octets();
        Ipv4Addr::new(o[0], o[1], o[2], host)
    }
    pub fn endpoint_spec(&self, ns: &Path, host: u8, gateway: bool) -> Endpoint {
        let ip = self.ip(host);
        Endpoint {
            netns: ns.to_path_buf(),
            bridge: self.bridge.clone(),
            host_ifname: format!("vt{}", hex(8)),
            ifname: "eth0".into(),
            address: Ipv4Net {
                addr: ip,
                prefix: self.subnet.prefix,
            },
            gateway: gateway.then_some(self.gateway),
            mac: ipam::mac_for(ip),
            mtu: None,
        }
    }
    /// A new namespace with eth0 = subnet.<host> on the bridge, default route via the gateway.
    pub fn container(&mut self, host: u8) -> PathBuf {
        let ns = self.dir.path().join(format!("ns{host}"));
        link::create_netns(&ns).expect("create_netns");
        self.netns.push(ns.clone());
        link::attach(&self.endpoint_spec(&ns, host, true)).expect("attach");
        ns
    }
    pub fn table(&mut self) -> String {
        let t = format!("berth_t{}", hex(8));
        self.tables.push(t.clone());
        t
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for t in &self.tables {
            for family in ["ip", "bridge"] {
                let _ = Command::new("nft")
                    .args(["delete", "table", family, t])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        for ns in &self.netns {
            let _ = link::remove_netns(ns);
        }
        let _ = link::delete_link(&self.bridge);
    }
}

/// Run `f` on a new thread inside namespace `ns`; sockets it creates stay in that namespace
/// after it returns.
pub fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = File::open(ns).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("in_ns thread")
}

/// `busybox ping -c1 -W2 addr` from namespace `ns`.
pub fn ping(ns: &Path, addr: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["busybox", "ping", "-c1", "-W2", &addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Does a link named `name` exist in the host namespace?
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Connect to `addr` from inside `ns` (or the host with None), send `msg`, read until EOF.
pub fn tcp_exchange(
    ns: Option<&Path>,
    addr: std::net::SocketAddr,
    msg: &'static [u8],
) -> std::io::Result<Vec<u8>> {
    let run = move || -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(msg)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    };
    match ns {
        Some(ns) => in_ns(ns, run),
        None => run(),
    }
}

/// A TCP echo server bound inside `ns` on `port`, serving connections on a background thread
/// (answers "echo:" + what it read). Returns the bound address.
pub fn echo_server(ns: &Path, ip: Ipv4Addr, port: u16) -> std::net::SocketAddr {
    let l = in_ns(ns, move || {
        std::net::TcpListener::bind((ip, port)).expect("bind in ns")
    });
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buf = Vec::new();
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let _ = s.read_to_end(&mut buf);
                let mut out = b"echo:".to_vec();
                out.extend_from_slice(&buf);
                let _ = s.write_all(&out);
            });
        }
    });
    addr
}
