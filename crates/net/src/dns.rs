//! The embedded DNS server of user-defined networks. It listens on each network's gateway
//! address (port 53, UDP and TCP), answers A queries for names of that network's scope, and
//! forwards other names to the host's upstream resolvers unless the scope is internal.
//!
//! A small hand-written server (RFC 1035 subset): the engine's names are answered from memory
//! (A; PTR for their addresses; NOERROR with no answer for other types of a known name); other
//! names are relayed byte for byte to the upstreams over UDP (over TCP again when the client
//! used TCP and the UDP answer was truncated), SERVFAIL when none answers in time.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::{NetError, Result};

const TTL: u32 = 600;
const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
const RCODE_FORMERR: u16 = 1;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
/// Forwarded UDP queries in flight at most (each holds a socket until answered or timed out).
const MAX_FORWARDS: usize = 512;
/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

pub struct DnsServer {
    inner: Arc<Inner>,
}

struct Inner {
    upstreams: Vec<SocketAddr>,
    /// Time allowed to each upstream.
    timeout: Duration,
    scopes: RwLock<HashMap<String, HashMap<String, Vec<Ipv4Addr>>>>,
    listeners: Mutex<HashMap<Ipv4Addr, Listening>>,
    rr: AtomicUsize,
    /// Forwarded UDP queries in flight.
    forwards: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, Clone)]
struct Cfg {
    scope: String,
    forward: bool,
}

struct Listening {
    port: u16,
    cfg: Arc<RwLock<Cfg>>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// A server that forwards to `upstreams` (the engine passes the host's resolv.conf servers).
    pub fn new(upstreams: Vec<SocketAddr>) -> Arc<DnsServer> {
        DnsServer::with_timeout(upstreams, Duration::from_secs(2))
    }
    /// As [`DnsServer::new`], with the time allowed to each upstream before trying the next.
    pub fn with_timeout(upstreams: Vec<SocketAddr>, timeout: Duration) -> Arc<DnsServer> {
        Arc::new(DnsServer {
            inner: Arc::new(Inner {
                upstreams,
                timeout,
                scopes: RwLock::new(HashMap::new()),
                listeners: Mutex::new(HashMap::new()),
                rr: AtomicUsize::new(0),
                forwards: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)),
            }),
        })
    }
    /// Start answering on `addr:port` for network `scope` (port 53 in production; tests may use
    /// another). `forward` false: unknown names get NXDOMAIN (internal networks).
    pub async fn listen(
        &self,
        scope: &str,
        addr: Ipv4Addr,
        port: u16,
        forward: bool,
    ) -> Result<()> {
        self.listen_port(scope, addr, port, forward)
            .await
            .map(|_| ())
    }
    /// As [`DnsServer::listen`]; port 0 picks a free port (the same for UDP and TCP), returned.
    /// Listening again on the same address and port only changes the scope and `forward`.
    pub async fn listen_port(
        &self,
        scope: &str,
        addr: Ipv4Addr,
        port: u16,
        forward: bool,
    ) -> Result<u16> {
        let cfg = Cfg {
            scope: scope.to_string(),
            forward,
        };
        {
            let map = lock(&self.inner.listeners);
            if let Some(l) = map.get(&addr) {
                if l.port == port || port == 0 {
                    *l.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
                    return Ok(l.port);
                }
            }
        }
        self.unlisten(addr).await;
        let (udp, tcp) = bind_pair(addr, port).await?;
        let bound = udp.local_addr()?.port();
        let cfg = Arc::new(RwLock::new(cfg));
        let udp = Arc::new(udp);
        let tasks = vec![
            tokio::spawn(serve_udp(self.inner.clone(), cfg.clone(), udp)),
            tokio::spawn(serve_tcp(self.inner.clone(), cfg.clone(), tcp)),
        ];
        let old = lock(&self.inner.listeners).insert(
            addr,
            Listening {
                port: bound,
                cfg,
                tasks,
            },
        );
        if let Some(old) = old {
            // A concurrent listen on the same address won the race: keep the newest.
            for t in old.tasks {
                t.abort();
            }
        }
        Ok(bound)
    }
    /// Stop answering on `addr`.
    pub async fn unlisten(&self, addr: Ipv4Addr) {
        let old = lock(&self.inner.listeners).remove(&addr);
        if let Some(old) = old {
            for t in &old.tasks {
                t.abort();
            }
            // The sockets are closed once the aborted tasks are dropped.
            for t in old.tasks {
                let _ = t.await;
            }
        }
    }
    /// Replace the names of `scope` (lower-cased by the server; a name may map to several
    /// addresses: round robin as Docker for aliases shared by containers).
    pub fn set_records(&self, scope: &str, records: HashMap<String, Vec<Ipv4Addr>>) {
        let mut lowered: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
        for (name, addrs) in records {
            let key = name.trim_end_matches('.').to_ascii_lowercase();
            let e = lowered.entry(key).or_default();
            for a in addrs {
                if !e.contains(&a) {
                    e.push(a);
                }
            }
        }
        let mut scopes = self.inner.scopes.write().unwrap_or_else(|e| e.into_inner());
        if lowered.is_empty() {
            scopes.remove(scope);
        } else {
            scopes.insert(scope.to_string(), lowered);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bind UDP and TCP on the same port; retries a busy port briefly (a listener that was just
/// stopped may still be closing), and a few different ports when `port` is 0.
async fn bind_pair(addr: Ipv4Addr, port: u16) -> Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        match bind_udp(addr, port) {
            Ok(udp) => {
                let p = udp.local_addr()?.port();
                match bind_tcp(addr, p) {
                    Ok(tcp) => return Ok((udp, tcp)),
                    Err(e) => last = Some(e),
                }
            }
            Err(e) => last = Some(e),
        }
        if port != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    Err(NetError::Dns(format!("listening on {addr}:{port}: {e}")))
}

/// A socket that may bind an address not (yet) on any interface (IP_FREEBIND): the server can
/// start before the bridge has its gateway address, and survives the bridge being recreated.
fn freebind_socket(ty: SockType) -> std::io::Result<std::os::fd::OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::IpFreebind, &true)?;
    Ok(fd)
}

fn bind_udp(addr: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    let fd = freebind_socket(SockType::Datagram)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(addr, port)),
    )?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

fn bind_tcp(addr: Ipv4Addr, port: u16) -> std::io::Result<TcpListener> {
    let fd = freebind_socket(SockType::Stream)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(addr, port)),
    )?;
    listen(&fd, Backlog::new(1024)?)?;
    TcpListener::from_std(std::net::TcpListener::from(fd))
}

async fn serve_udp(inner: Arc<Inner>, cfg: Arc<RwLock<Cfg>>, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("dns: udp receive: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let cfg = cfg.read().unwrap_or_else(|e| e.into_inner()).clone();
        match answer(&inner, &cfg, &query, true) {
            Outcome::Reply(r) => {
                let _ = sock.send_to(&r, peer).await;
            }
            Outcome::Forward => {
                // Bounded: beyond MAX_FORWARDS queries in flight, answer SERVFAIL at once.
                let Ok(permit) = inner.forwards.clone().try_acquire_owned() else {
                    let _ = sock
                        .send_to(&error_reply(&query, RCODE_SERVFAIL), peer)
                        .await;
                    continue;
                };
                let (inner, sock) = (inner.clone(), sock.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let r = match forward_udp(&inner, &query).await {
                        Some(r) => r,
                        None => error_reply(&query, RCODE_SERVFAIL),
                    };
                    let _ = sock.send_to(&r, peer).await;
                });
            }
            Outcome::Ignore => {}
        }
    }
}

async fn serve_tcp(inner: Arc<Inner>, cfg: Arc<RwLock<Cfg>>, l: TcpListener) {
    loop {
        let Ok((conn, _)) = l.accept().await else {
            // e.g. out of file descriptors: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(tcp_conn(inner.clone(), cfg.clone(), conn));
    }
}

async fn tcp_conn(inner: Arc<Inner>, cfg: Arc<RwLock<Cfg>>, mut conn: TcpStream) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, conn.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if !matches!(
            tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let c = cfg.read().unwrap_or_else(|e| e.into_inner()).clone();
        let reply = match answer(&inner, &c, &query, false) {
            Outcome::Reply(r) => r,
            Outcome::Forward => match forward_udp(&inner, &query).await {
                Some(r) if flags_of(&r) & FLAG_TC != 0 => {
                    forward_tcp(&inner, &query).await.unwrap_or(r)
                }
                Some(r) => r,
                None => match forward_tcp(&inner, &query).await {
                    Some(r) => r,
                    None => error_reply(&query, RCODE_SERVFAIL),
                },
            },
            Outcome::Ignore => return,
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        if conn.write_u16(len).await.is_err() || conn.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Send `query` to each upstream in turn over UDP; the first answer with the query's id.
async fn forward_udp(inner: &Inner, query: &[u8]) -> Option<Vec<u8>> {
    let id = id_of(query)?;
    for up in &inner.upstreams {
        let local: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(local).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let deadline = tokio::time::Instant::now() + inner.timeout;
        let mut buf = vec![0u8; 65535];
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Ok(Ok(n)) if n >= 12 && id_of(&buf[..n]) == Some(id) => {
                    buf.truncate(n);
                    return Some(buf);
                }
                Ok(Ok(_)) => continue,
                Ok(Err(_)) | Err(_) => break,
            }
        }
    }
    None
}

/// The same over TCP (for answers too big for UDP).
async fn forward_tcp(inner: &Inner, query: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(query.len()).ok()?;
    for up in &inner.upstreams {
        let attempt = async {
            let mut c = TcpStream::connect(up).await.ok()?;
            c.write_u16(len).await.ok()?;
            c.write_all(query).await.ok()?;
            let n = c.read_u16().await.ok()?;
            let mut r = vec![0u8; usize::from(n)];
            c.read_exact(&mut r).await.ok()?;
            Some(r)
        };
        if let Ok(Some(r)) = tokio::time::timeout(inner.timeout, attempt).await {
            return Some(r);
        }
    }
    None
}

enum Outcome {
    Reply(Vec<u8>),
    Forward,
    Ignore,
}

struct Query<'a> {
    flags: u16,
    /// Lower case, without the trailing dot.
    name: String,
    qtype: u16,
    qclass: u16,
    /// The raw question section (name, type, class), copied into the reply.
    question: &'a [u8],
}

fn id_of(b: &[u8]) -> Option<u16> {
    (b.len() >= 2).then(|| u16::from_be_bytes([b[0], b[1]]))
}

fn flags_of(b: &[u8]) -> u16 {
    if b.len() >= 4 {
        u16::from_be_bytes([b[2], b[3]])
    } else {
        0
    }
}

/// Parse a query with exactly one question. Err(true): malformed but answerable (FORMERR);
/// Err(false): not worth an answer.
fn parse_query(b: &[u8]) -> std::result::Result<Query<'_>, bool> {
    if b.len() < 12 {
        return Err(false);
    }
    let flags = flags_of(b);
    if flags & FLAG_QR != 0 {
        return Err(false); // a response, not a query
    }
    let qdcount = u16::from_be_bytes([b[4], b[5]]);
    if qdcount != 1 {
        return Err(true);
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*b.get(i).ok_or(true)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return Err(true); // no compression in a question
        }
        let l = b.get(i..i + len).ok_or(true)?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        i += len;
        if i - 12 > 255 {
            return Err(true);
        }
    }
    let t = b.get(i..i + 4).ok_or(true)?;
    Ok(Query {
        flags,
        name: labels.join("."),
        qtype: u16::from_be_bytes([t[0], t[1]]),
        qclass: u16::from_be_bytes([t[2], t[3]]),
        question: &b[12..i + 4],
    })
}

fn error_reply(query: &[u8], rcode: u16) -> Vec<u8> {
    match parse_query(query) {
        Ok(q) => reply(query, &q, rcode, false, &[], usize::MAX),
        Err(_) => {
            let id = id_of(query).unwrap_or(0);
            let rd = flags_of(query) & FLAG_RD;
            let mut r = Vec::with_capacity(12);
            r.extend_from_slice(&id.to_be_bytes());
            r.extend_from_slice(&(FLAG_QR | rd | FLAG_RA | rcode).to_be_bytes());
            r.extend_from_slice(&[0; 8]);
            r
        }
    }
}

/// One answer record for the question's name (a pointer to offset 12).
struct Rr {
    rtype: u16,
    rdata: Vec<u8>,
}

/// Build a reply; at most `max` bytes (UDP: 512), dropping answers and setting TC beyond it.
fn reply(query: &[u8], q: &Query, rcode: u16, aa: bool, answers: &[Rr], max: usize) -> Vec<u8> {
    let id = id_of(query).unwrap_or(0);
    let mut flags = FLAG_QR | (q.flags & FLAG_RD) | FLAG_RA | rcode;
    if aa {
        flags |= FLAG_AA;
    }
    let mut body = Vec::new();
    let mut count: u16 = 0;
    for a in answers {
        let size = 12 + a.rdata.len();
        if 12 + q.question.len() + body.len() + size > max {
            flags |= FLAG_TC;
            break;
        }
        body.extend_from_slice(&[0xC0, 0x0C]);
        body.extend_from_slice(&a.rtype.to_be_bytes());
        body.extend_from_slice(&CLASS_IN.to_be_bytes());
        body.extend_from_slice(&TTL.to_be_bytes());
        body.extend_from_slice(&(a.rdata.len() as u16).to_be_bytes());
        body.extend_from_slice(&a.rdata);
        count += 1;
    }
    let mut r = Vec::with_capacity(12 + q.question.len() + body.len());
    r.extend_from_slice(&id.to_be_bytes());
    r.extend_from_slice(&flags.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&count.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(q.question);
    r.extend_from_slice(&body);
    r
}

fn answer(inner: &Inner, cfg: &Cfg, query: &[u8], udp: bool) -> Outcome {
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(true) => return Outcome::Reply(error_reply(query, RCODE_FORMERR)),
        Err(false) => return Outcome::Ignore,
    };
    let opcode = (q.flags >> 11) & 0xF;
    if opcode != 0 {
        return Outcome::Reply(reply(query, &q, RCODE_NOTIMP, false, &[], usize::MAX));
    }
    let max = if udp { 512 } else { 65535 };
    let local = if q.qclass == CLASS_IN || q.qclass == CLASS_ANY {
        lookup(inner, cfg, &q)
    } else {
        None
    };
    match local {
        Some(answers) => Outcome::Reply(reply(query, &q, 0, true, &answers, max)),
        None if cfg.forward && !inner.upstreams.is_empty() => Outcome::Forward,
        None if cfg.forward => Outcome::Reply(reply(query, &q, RCODE_SERVFAIL, false, &[], max)),
        None => Outcome::Reply(reply(query, &q, RCODE_NXDOMAIN, true, &[], max)),
    }
}

/// Some(answers) when the name belongs to the scope (possibly no answer of the asked type).
fn lookup(inner: &Inner, cfg: &Cfg, q: &Query) -> Option<Vec<Rr>> {
    let scopes = inner.scopes.read().unwrap_or_else(|e| e.into_inner());
    let names = scopes.get(&cfg.scope)?;
    if let Some(addrs) = names.get(&q.name) {
        if q.qtype != TYPE_A || addrs.is_empty() {
            return Some(Vec::new());
        }
        let start = inner.rr.fetch_add(1, Ordering::Relaxed) % addrs.len();
        let answers = addrs
            .iter()
            .cycle()
            .skip(start)
            .take(addrs.len())
            .map(|a| Rr {
                rtype: TYPE_A,
                rdata: a.octets().to_vec(),
            })
            .collect();
        return Some(answers);
    }
    if q.qtype == TYPE_PTR {
        let ip = ptr_addr(&q.name)?;
        // Prefer a qualified name ("web.mynet"), then the shortest.
        let best = names
            .iter()
            .filter(|(_, v)| v.contains(&ip))
            .map(|(n, _)| n)
            .min_by_key(|n| (!n.contains('.'), n.len(), n.as_str()))?;
        return Some(vec![Rr {
            rtype: TYPE_PTR,
            rdata: encode_name(best),
        }]);
    }
    None
}

/// "4.3.2.1.in-addr.arpa" → 1.2.3.4.
fn ptr_addr(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse::<u8>().ok())
        .collect::<Option<_>>()?;
    if parts.len() != 4 {
        return None;
    }
    Some(Ipv4Addr::new(parts[3], parts[2], parts[1], parts[0]))
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for l in name.split('.').filter(|l| !l.is_empty()) {
        let l = &l.as_bytes()[..l.len().min(63)];
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, qtype: u16) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend(encode_name(name));
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&CLASS_IN.to_be_bytes());
        b
    }

    fn inner(forward_to: Vec<SocketAddr>) -> Inner {
        let mut names = HashMap::new();
        names.insert("web".to_string(), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        names.insert("web.net1".to_string(), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        let mut scopes = HashMap::new();
        scopes.insert("net1".to_string(), names);
        Inner {
            upstreams: forward_to,
            timeout: Duration::from_millis(100),
            scopes: RwLock::new(scopes),
            listeners: Mutex::new(HashMap::new()),
            rr: AtomicUsize::new(0),
            forwards: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)),
        }
    }

    fn cfg(forward: bool) -> Cfg {
        Cfg {
            scope: "net1".into(),
            forward,
        }
    }

    fn reply_of(o: Outcome) -> Vec<u8> {
        match o {
            Outcome::Reply(r) => r,
            _ => panic!("not a reply"),
        }
    }

    #[test]
    fn answers_a_and_ptr() {
        let i = inner(vec![]);
        let r = reply_of(answer(&i, &cfg(false), &q("WEB.", TYPE_A), true));
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(flags_of(&r) & 0xF, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2]);
        let r = reply_of(answer(
            &i,
            &cfg(false),
            &q("2.0.0.10.in-addr.arpa", TYPE_PTR),
            true,
        ));
        let tail = encode_name("web.net1");
        assert_eq!(&r[r.len() - tail.len()..], &tail[..]);
        assert_eq!(
            ptr_addr("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(ptr_addr("3.2.1.in-addr.arpa"), None);
    }

    #[test]
    fn unknown_names() {
        let i = inner(vec![]);
        let r = reply_of(answer(&i, &cfg(false), &q("nope", TYPE_A), true));
        assert_eq!(flags_of(&r) & 0xF, RCODE_NXDOMAIN);
        let r = reply_of(answer(&i, &cfg(true), &q("nope", TYPE_A), true));
        assert_eq!(
            flags_of(&r) & 0xF,
            RCODE_SERVFAIL,
            "forwarding without upstreams"
        );
        let i = inner(vec!["127.0.0.1:9".parse().unwrap()]);
        assert!(matches!(
            answer(&i, &cfg(true), &q("nope", TYPE_A), true),
            Outcome::Forward
        ));
    }

    #[test]
    fn malformed() {
        let i = inner(vec![]);
        assert!(matches!(
            answer(&i, &cfg(false), &[1, 2, 3], true),
            Outcome::Ignore
        ));
        let mut b = q("web", TYPE_A);
        b.truncate(b.len() - 2);
        let r = reply_of(answer(&i, &cfg(false), &b, true));
        assert_eq!(flags_of(&r) & 0xF, RCODE_FORMERR);
        let mut resp = q("web", TYPE_A);
        resp[2] |= 0x80;
        assert!(matches!(
            answer(&i, &cfg(false), &resp, true),
            Outcome::Ignore
        ));
    }

    #[test]
    fn truncates_big_udp_answers() {
        let i = inner(vec![]);
        let many: Vec<Ipv4Addr> = (0..100).map(|n| Ipv4Addr::new(10, 1, 0, n)).collect();
        i.scopes
            .write()
            .unwrap()
            .get_mut("net1")
            .unwrap()
            .insert("many".into(), many);
        let r = reply_of(answer(&i, &cfg(false), &q("many", TYPE_A), true));
        assert!(r.len() <= 512);
        assert_ne!(flags_of(&r) & FLAG_TC, 0);
        let r = reply_of(answer(&i, &cfg(false), &q("many", TYPE_A), false));
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 100);
    }
}
