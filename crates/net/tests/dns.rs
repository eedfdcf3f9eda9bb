//! The embedded DNS server over real sockets on 127.0.0.x, with a fake upstream resolver.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use berth_net::dns::DnsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        b.push(l.len() as u8);
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b
}

struct Reply {
    id: u16,
    rcode: u16,
    flags: u16,
    addrs: Vec<Ipv4Addr>,
    ancount: u16,
}

/// Parse our own replies: question name uncompressed, answers with a name pointer.
fn parse(r: &[u8]) -> Reply {
    let flags = u16::from_be_bytes([r[2], r[3]]);
    let ancount = u16::from_be_bytes([r[6], r[7]]);
    let mut i = 12;
    while r[i] != 0 {
        i += r[i] as usize + 1;
    }
    i += 5;
    let mut addrs = Vec::new();
    for _ in 0..ancount {
        assert_eq!(r[i] & 0xC0, 0xC0, "name pointer");
        let rtype = u16::from_be_bytes([r[i + 2], r[i + 3]]);
        let len = u16::from_be_bytes([r[i + 10], r[i + 11]]) as usize;
        if rtype == 1 {
            assert_eq!(len, 4);
            addrs.push(Ipv4Addr::new(r[i + 12], r[i + 13], r[i + 14], r[i + 15]));
        }
        i += 12 + len;
    }
    Reply {
        id: u16::from_be_bytes([r[0], r[1]]),
        rcode: flags & 0xF,
        flags,
        addrs,
        ancount,
    }
}

async fn udp(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn tcp(server: SocketAddr, qs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut c = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    // Several queries on one connection.
    for q in qs {
        c.write_u16(q.len() as u16).await.unwrap();
        c.write_all(q).await.unwrap();
        let n = c.read_u16().await.unwrap();
        let mut r = vec![0u8; n as usize];
        c.read_exact(&mut r).await.unwrap();
        out.push(r);
    }
    out
}

/// A fake upstream on 127.0.0.1 answering every query with A 192.0.2.55 (plus a TXT-ish
/// marker record), reporting each answer it sent. `silent`: never answers.
fn fake_upstream(silent: bool) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            if silent {
                continue;
            }
            let q = &buf[..n];
            let mut r = q[..2].to_vec();
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..]);
            r.extend_from_slice(&[
                0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 55,
            ]);
            let _ = s.send_to(&r, peer);
            if tx.send(r).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

fn records() -> HashMap<String, Vec<Ipv4Addr>> {
    let mut m = HashMap::new();
    m.insert("web".to_string(), vec![Ipv4Addr::new(10, 0, 0, 2)]);
    m.insert("web.mynet".to_string(), vec![Ipv4Addr::new(10, 0, 0, 2)]);
    m.insert(
        "Shared".to_string(),
        vec![Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 4)],
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_names_and_forwards_others() {
    let (up, sent) = fake_upstream(false);
    let dns = DnsServer::new(vec![up]);
    dns.set_records("mynet", records());
    let port = dns
        .listen_port("mynet", Ipv4Addr::LOCALHOST, 0, true)
        .await
        .unwrap();
    let srv = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let r = parse(&udp(srv, &query(7, "web", 1)).await.expect("answer"));
    assert_eq!((r.id, r.rcode), (7, 0));
    assert_ne!(r.flags & 0x8000, 0, "QR");
    assert_eq!(r.addrs, vec![Ipv4Addr::new(10, 0, 0, 2)]);
    // Case-insensitive, trailing-dot-insensitive record names, several addresses rotating.
    let a = parse(&udp(srv, &query(8, "SHARED", 1)).await.unwrap());
    let b = parse(&udp(srv, &query(9, "shared", 1)).await.unwrap());
    assert_eq!(a.addrs.len(), 2);
    assert_eq!(b.addrs.len(), 2);
    assert_ne!(a.addrs[0], b.addrs[0], "round robin");
    // AAAA of a known name: NOERROR, no answer (not forwarded).
    let r = parse(&udp(srv, &query(10, "web.mynet", 28)).await.unwrap());
    assert_eq!((r.rcode, r.ancount), (0, 0));
    assert!(sent.try_recv().is_err(), "nothing forwarded yet");
    // Another name: the upstream's answer comes back byte for byte.
    let got = udp(srv, &query(11, "example.org", 1)).await.unwrap();
    let relayed = sent.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(got, relayed);
    assert_eq!(parse(&got).addrs, vec![Ipv4Addr::new(192, 0, 2, 55)]);

    // TCP: local and forwarded names on one connection.
    let rs = tcp(srv, &[query(12, "web", 1), query(13, "other.example", 1)]).await;
    assert_eq!(parse(&rs[0]).addrs, vec![Ipv4Addr::new(10, 0, 0, 2)]);
    assert_eq!(parse(&rs[1]).addrs, vec![Ipv4Addr::new(192, 0, 2, 55)]);
    assert_eq!(parse(&rs[1]).id, 13);

    // Records are replaced as a whole.
    let mut m = HashMap::new();
    m.insert("db".to_string(), vec![Ipv4Addr::new(10, 0, 0, 9)]);
    dns.set_records("mynet", m);
    let r = parse(&udp(srv, &query(14, "db", 1)).await.unwrap());
    assert_eq!(r.addrs, vec![Ipv4Addr::new(10, 0, 0, 9)]);
    let r = parse(&udp(srv, &query(15, "web", 1)).await.unwrap());
    assert_eq!(
        r.addrs,
        vec![Ipv4Addr::new(192, 0, 2, 55)],
        "web now forwarded"
    );

    // Stop: no more answers; listening again on the same port works.
    dns.unlisten(Ipv4Addr::LOCALHOST).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&query(16, "db", 1), srv).await.unwrap();
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.recv(&mut buf))
            .await
            .map(|r| r.is_err())
            .unwrap_or(true),
        "answered after unlisten"
    );
    assert!(TcpStream::connect(srv).await.is_err());
    dns.listen("mynet", Ipv4Addr::LOCALHOST, port, true)
        .await
        .unwrap();
    let r = parse(&udp(srv, &query(17, "db", 1)).await.unwrap());
    assert_eq!(r.addrs, vec![Ipv4Addr::new(10, 0, 0, 9)]);
    dns.unlisten(Ipv4Addr::LOCALHOST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_scope_gives_nxdomain_and_scopes_are_separate() {
    let (up, sent) = fake_upstream(false);
    let dns = DnsServer::new(vec![up]);
    dns.set_records("inner", records());
    let mut other = HashMap::new();
    other.insert("only-in-b".to_string(), vec![Ipv4Addr::new(10, 9, 0, 2)]);
    dns.set_records("b", other);
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let port = dns.listen_port("inner", ip, 0, false).await.unwrap();
    let srv = SocketAddr::from((ip, port));
    let r = parse(&udp(srv, &query(1, "example.org", 1)).await.unwrap());
    assert_eq!(r.rcode, 3, "NXDOMAIN");
    let r = parse(&udp(srv, &query(2, "only-in-b", 1)).await.unwrap());
    assert_eq!(r.rcode, 3, "another scope's name");
    let r = parse(&udp(srv, &query(3, "web", 1)).await.unwrap());
    assert_eq!(r.addrs, vec![Ipv4Addr::new(10, 0, 0, 2)]);
    assert!(sent.try_recv().is_err(), "internal scope forwarded");
    // Listening again on the same address switches scope and forwarding in place.
    assert_eq!(dns.listen_port("b", ip, port, true).await.unwrap(), port);
    let r = parse(&udp(srv, &query(4, "only-in-b", 1)).await.unwrap());
    assert_eq!(r.addrs, vec![Ipv4Addr::new(10, 9, 0, 2)]);
    let r = parse(&udp(srv, &query(5, "web", 1)).await.unwrap());
    assert_eq!(r.addrs, vec![Ipv4Addr::new(192, 0, 2, 55)]);
    dns.unlisten(ip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_gives_servfail() {
    let (dead, _rx) = fake_upstream(true);
    let dns = DnsServer::with_timeout(vec![dead], Duration::from_millis(200));
    let port = dns
        .listen_port("x", Ipv4Addr::LOCALHOST, 0, true)
        .await
        .unwrap();
    let srv = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let t = std::time::Instant::now();
    let r = parse(
        &udp(srv, &query(21, "example.org", 1))
            .await
            .expect("an answer"),
    );
    assert_eq!((r.id, r.rcode), (21, 2));
    assert!(t.elapsed() < Duration::from_secs(2));
    // Two upstreams: the second answers after the first times out.
    let (live, _rx2) = fake_upstream(false);
    let dns2 = DnsServer::with_timeout(vec![dead, live], Duration::from_millis(200));
    let port = dns2
        .listen_port("x", Ipv4Addr::new(127, 0, 0, 3), 0, true)
        .await
        .unwrap();
    let srv = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 3), port));
    let r = parse(&udp(srv, &query(22, "example.org", 1)).await.unwrap());
    assert_eq!(r.addrs, vec![Ipv4Addr::new(192, 0, 2, 55)]);
    dns.unlisten(Ipv4Addr::LOCALHOST).await;
    dns2.unlisten(Ipv4Addr::new(127, 0, 0, 3)).await;
}

/// A client on TCP whose forwarded UDP answer comes back truncated gets the upstream's TCP
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_udp_answer_is_retried_over_tcp() {
    // Upstream: UDP answers with TC set and no records; TCP (same port) answers 192.0.2.77.
    let up_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let up = up_udp.local_addr().unwrap();
    let up_tcp = std::net::TcpListener::bind(up).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = up_udp.recv_from(&mut buf) {
            let q = &buf[..n];
            let mut r = q[..2].to_vec();
            r.extend_from_slice(&[0x83, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..]);
            let _ = up_udp.send_to(&r, peer);
        }
    });
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for c in up_tcp.incoming() {
            let Ok(mut c) = c else { break };
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if c.read_exact(&mut q).is_err() {
                continue;
            }
            let mut r = q[..2].to_vec();
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..]);
            r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 77]);
            let _ = c.write_all(&(r.len() as u16).to_be_bytes());
            let _ = c.write_all(&r);
        }
    });
    let dns = DnsServer::new(vec![up]);
    let port = dns
        .listen_port("s", Ipv4Addr::LOCALHOST, 0, true)
        .await
        .unwrap();
    let srv = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Over UDP the client gets the truncated answer as is (it retries over TCP itself).
    let r = parse(&udp(srv, &query(31, "big.example", 1)).await.unwrap());
    assert_ne!(r.flags & 0x0200, 0, "TC relayed");
    // Over TCP berth retries upstream over TCP.
    let rs = tcp(srv, &[query(32, "big.example", 1)]).await;
    let r = parse(&rs[0]);
    assert_eq!((r.id, r.rcode), (32, 0));
    assert_eq!(r.addrs, vec![Ipv4Addr::new(192, 0, 2, 77)]);
    dns.unlisten(Ipv4Addr::LOCALHOST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_answer_latency() {
    let dns = DnsServer::new(vec![]);
    dns.set_records("l", records());
    let port = dns
        .listen_port("l", Ipv4Addr::LOCALHOST, 0, false)
        .await
        .unwrap();
    let srv = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query(41, "web", 1);
    let mut buf = [0u8; 512];
    let n = 1000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        s.send_to(&q, srv).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf))
            .await
            .expect("answer")
            .unwrap();
        assert_eq!(parse(&buf[..got]).addrs, vec![Ipv4Addr::new(10, 0, 0, 2)]);
    }
    eprintln!("{n} sequential local A queries: {:?} each", t.elapsed() / n);
    dns.unlisten(Ipv4Addr::LOCALHOST).await;
}

/// The server can listen on an address no interface has yet (the bridge may get its gateway
/// address later); no traffic is sent there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_before_the_address_exists() {
    let dns = DnsServer::new(vec![]);
    let absent = Ipv4Addr::new(192, 0, 2, 200);
    let port = dns.listen_port("x", absent, 0, false).await.unwrap();
    assert_ne!(port, 0);
    // A second listen on the same address is an in-place update, not a second bind.
    assert_eq!(
        dns.listen_port("y", absent, port, true).await.unwrap(),
        port
    );
    dns.unlisten(absent).await;
    // The port is free again afterwards.
    let again = dns.listen_port("x", absent, port, false).await.unwrap();
    assert_eq!(again, port);
    dns.unlisten(absent).await;
}
