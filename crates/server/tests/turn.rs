//! TURN end to end against a real coturn (`turnserver`, Debian package `coturn`): the
//! credentials rcall hands out in `AuthResult.ice_servers` allocate a relay; tampered and
//! expired ones are refused.
//!
//! Without `turnserver` the test prints why and passes, unless `CI` is set: then a missing
//! binary is a failure.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use hmac::Mac as _;
use md5::Digest as _;
use rtc_core::proto::server_frame::Body as S;
use tokio::net::UdpSocket;

const SECRET: &str = "coturn-shared-secret";
const REALM: &str = "rcall.test";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_turnserver() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/bin")])
        .map(|d| d.join("turnserver"))
        .find(|p| p.is_file())
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- a minimal STUN/TURN client (RFC 5389 / RFC 5766) ------------------------------------

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const ALLOCATE_OK: u16 = 0x0103;
const ALLOCATE_ERR: u16 = 0x0113;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;

fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&kind.to_be_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
    buf.extend_from_slice(value);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn set_len(buf: &mut [u8], len: usize) {
    buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

/// An Allocate request; with `auth = (username, password, realm, nonce)` it carries
/// MESSAGE-INTEGRITY with the long-term key MD5(username:realm:password).
fn allocate(txid: [u8; 12], auth: Option<(&str, &str, &str, &[u8])>) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&ALLOCATE.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&MAGIC.to_be_bytes());
    buf.extend_from_slice(&txid);
    push_attr(&mut buf, ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    if let Some((user, pass, realm, nonce)) = auth {
        push_attr(&mut buf, ATTR_USERNAME, user.as_bytes());
        push_attr(&mut buf, ATTR_REALM, realm.as_bytes());
        push_attr(&mut buf, ATTR_NONCE, nonce);
        // The length covers MESSAGE-INTEGRITY itself when computing it.
        let len = buf.len() - 20 + 24;
        set_len(&mut buf, len);
        let key = md5::Md5::digest(format!("{user}:{realm}:{pass}").as_bytes());
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
        mac.update(&buf);
        let mi = mac.finalize().into_bytes();
        push_attr(&mut buf, ATTR_MESSAGE_INTEGRITY, &mi);
    }
    let len = buf.len() - 20;
    set_len(&mut buf, len);
    buf
}

#[derive(Debug)]
struct Response {
    kind: u16,
    error: Option<u16>,
    realm: Option<String>,
    nonce: Option<Vec<u8>>,
    relayed: bool,
}

fn parse(buf: &[u8]) -> Response {
    assert!(buf.len() >= 20, "short STUN message");
    let kind = u16::from_be_bytes([buf[0], buf[1]]);
    let mut r = Response {
        kind,
        error: None,
        realm: None,
        nonce: None,
        relayed: false,
    };
    let mut i = 20;
    while i + 4 <= buf.len() {
        let t = u16::from_be_bytes([buf[i], buf[i + 1]]);
        let l = u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize;
        let v = &buf[i + 4..(i + 4 + l).min(buf.len())];
        match t {
            ATTR_ERROR_CODE if v.len() >= 4 => {
                r.error = Some(u16::from(v[2]) * 100 + u16::from(v[3]))
            }
            ATTR_REALM => r.realm = Some(String::from_utf8_lossy(v).into_owned()),
            ATTR_NONCE => r.nonce = Some(v.to_vec()),
            ATTR_XOR_RELAYED_ADDRESS => r.relayed = true,
            _ => {}
        }
        i += 4 + l.div_ceil(4) * 4;
    }
    r
}

async fn roundtrip(sock: &UdpSocket, turn: SocketAddr, msg: &[u8]) -> Option<Response> {
    sock.send_to(msg, turn).await.ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(parse(&buf[..n]))
}

/// Runs the two-step long-term-credential Allocate; returns the final response.
async fn try_allocate(turn: SocketAddr, username: &str, password: &str) -> Response {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let challenge = roundtrip(&sock, turn, &allocate([1; 12], None))
        .await
        .expect("coturn answers");
    assert_eq!((challenge.kind, challenge.error), (ALLOCATE_ERR, Some(401)));
    let realm = challenge.realm.expect("realm in the 401");
    assert_eq!(realm, REALM);
    let nonce = challenge.nonce.expect("nonce in the 401");
    let msg = allocate([2; 12], Some((username, password, &realm, &nonce)));
    roundtrip(&sock, turn, &msg).await.expect("coturn answers")
}

#[tokio::test]
async fn credentials_from_the_server_allocate_a_relay_on_coturn() {
    let Some(bin) = find_turnserver() else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        assert!(
            !ci,
            "CI is set but `turnserver` is missing: apt-get install -y coturn"
        );
        println!("SKIPPED credentials_from_the_server_allocate_a_relay_on_coturn: `turnserver` not found (apt-get install -y coturn)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let relay_min = 40_000 + (std::process::id() % 2000) as u16 * 10;
    let child = Command::new(bin)
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            &format!("--min-port={relay_min}"),
            &format!("--max-port={}", relay_min + 9),
            "--use-auth-secret",
            &format!("--static-auth-secret={SECRET}"),
            &format!("--realm={REALM}"),
            "--fingerprint",
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-tcp-relay",
            "--log-file=stdout",
            "--simple-log",
        ])
        .arg(format!(
            "--pidfile={}",
            dir.path().join("turn.pid").display()
        ))
        .arg(format!("--userdb={}", dir.path().join("turndb").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver starts");
    let _turn = KillOnDrop(child);
    let turn: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Wait until coturn answers.
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut up = false;
    for _ in 0..40 {
        if roundtrip(&probe, turn, &allocate([9; 12], None))
            .await
            .is_some()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "turnserver did not answer on {turn}");

    let ts = TestServer::start_with(|c| {
        c.turn_urls = vec![format!("turn:127.0.0.1:{port}?transport=udp")];
        c.turn_secret = Some(SECRET.into());
        c.turn_ttl = Duration::from_secs(600);
    })
    .await;
    let mut c = Client::authenticate(ts.addr, &ts.token("alice"), "a1", 0).await;
    let ice = match c.recv().await.body {
        Some(S::AuthResult(a)) => a.ice_servers,
        other => panic!("expected AuthResult, got {other:?}"),
    };
    let server = ice
        .iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .expect("a TURN server");
    let url = &server.urls[0];
    let hostport = url.trim_start_matches("turn:").split('?').next().unwrap();
    let target: SocketAddr = hostport.parse().unwrap();
    assert_eq!(target, turn);

    let ok = try_allocate(target, &server.username, &server.credential).await;
    assert_eq!(ok.kind, ALLOCATE_OK, "{ok:?}");
    assert!(ok.relayed, "no XOR-RELAYED-ADDRESS: {ok:?}");

    // A tampered password and an expired username are refused.
    let bad = try_allocate(target, &server.username, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=").await;
    assert_eq!((bad.kind, bad.error), (ALLOCATE_ERR, Some(401)), "{bad:?}");
    let past = now_ms() / 1000 - 60;
    let (user, pass) = rcall_server::ice::turn_credentials(SECRET, "alice", past);
    let expired = try_allocate(target, &user, &pass).await;
    assert_eq!(
        (expired.kind, expired.error),
        (ALLOCATE_ERR, Some(401)),
        "{expired:?}"
    );
}
