//! An HTTP proxy in front of a test Janus that can start **holding** requests: from
//! [`HoldingProxy::hold`] on, every request it reads is accepted and never answered (the
//! connection stays open), as a Janus that hangs would, until [`HoldingProxy::release`]. Before that it forwards each request
//! to the real Janus and returns its answer. [`HoldingProxy::hold_matching`] holds only the
//! requests whose path or body contains a string (one handle's requests: a slow device). Loopback only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct HoldingProxy {
    addr: SocketAddr,
    hold: Arc<AtomicBool>,
    matching: Arc<Mutex<Option<String>>>,
    held: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingProxy {
    /// A proxy to `upstream` (a Janus base URL such as `http://127.0.0.1:PORT/janus`).
    pub async fn start(upstream: &str) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let matching = Arc::new(Mutex::new(None));
        let origin = {
            let u = reqwest::Url::parse(upstream).unwrap();
            format!("http://{}:{}", u.host_str().unwrap(), u.port().unwrap())
        };
        let http = reqwest::Client::new();
        let (h, m, n) = (hold.clone(), matching.clone(), held.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(
                    sock,
                    origin.clone(),
                    http.clone(),
                    h.clone(),
                    m.clone(),
                    n.clone(),
                ));
            }
        });
        HoldingProxy {
            addr,
            hold,
            matching,
            held,
            task,
        }
    }

    /// The proxy's Janus base URL.
    pub fn url(&self) -> String {
        format!("http://{}/janus", self.addr)
    }

    /// From now on requests are read and never answered.
    pub fn hold(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// From now on the requests whose path or body contains `needle` are read and never
    /// answered (the others go on).
    #[allow(dead_code)] // (sfu_relay.rs: one device's requests held)
    pub fn hold_matching(&self, needle: &str) {
        *self.matching.lock().unwrap() = Some(needle.to_owned());
    }

    /// From now on requests are forwarded again (those held stay held).
    #[allow(dead_code)] // (sfu_pool.rs: a Janus cut off, then back)
    pub fn release(&self) {
        *self.matching.lock().unwrap() = None;
        self.hold.store(false, Ordering::SeqCst);
    }

    /// Requests held so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    origin: String,
    http: reqwest::Client,
    hold: Arc<AtomicBool>,
    matching: Arc<Mutex<Option<String>>>,
    held: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        // One request: head up to the blank line, then `content-length` bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let matches = matching.lock().unwrap().as_ref().is_some_and(|m| {
            head.lines().next().unwrap_or_default().contains(m.as_str())
                || String::from_utf8_lossy(&body).contains(m.as_str())
        });
        if hold.load(Ordering::SeqCst) || matches {
            held.fetch_add(1, Ordering::SeqCst);
            // Accepted, never answered: keep the socket until the peer gives up.
            let mut sink = [0u8; 4096];
            while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        let mut first = head.lines().next().unwrap_or_default().split(' ');
        let (method, path) = (first.next().unwrap_or("GET"), first.next().unwrap_or("/"));
        let url = format!("{origin}{path}");
        let req = match method {
            "POST" => http
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
            _ => http.get(&url),
        };
        let (status, bytes) = match req.send().await {
            Ok(r) => (r.status().as_u16(), r.bytes().await.unwrap_or_default()),
            Err(_) => (502, Default::default()),
        };
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            bytes.len()
        );
        if sock.write_all(reply.as_bytes()).await.is_err() || sock.write_all(&bytes).await.is_err()
        {
            return;
        }
    }
}
