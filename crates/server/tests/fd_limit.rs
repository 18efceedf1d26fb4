//! Running out of file descriptors (issue 11, item 4): accept errors such as EMFILE neither
//! spin nor stop the server, and half-sent requests give their descriptors back after the
//! header timeout, so the server recovers. Its own test binary: it lowers the process's
//! open-file limit for good.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn set_nofile(limit: u64) {
    let lim = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_stop_the_server() {
    let ts = TestServer::start_with(|c| {
        c.header_read_timeout = Duration::from_secs(1);
        c.max_unauthenticated_per_ip = 100_000;
    })
    .await;
    let mut a1 = ts.client("alice", "a1").await;
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_nofile(open + 40);
    // Half-sent requests until this process (client and server share it) is out of
    // descriptors.
    let mut conns = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect(ts.addr).await {
            Ok(mut t) => {
                let _ = t.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
                conns.push(t);
            }
            Err(_) => break,
        }
    }
    assert!(conns.len() < 200, "never ran out of descriptors");
    // The server hit the limit on accept, paused, and kept going.
    let m = &ts.server.state().metrics;
    for _ in 0..100 {
        if m.accept_errors.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = m.accept_errors.load(std::sync::atomic::Ordering::Relaxed);
    assert!(errors > 0, "accept never failed");
    // Retried after a pause, not spun on: far fewer errors than a busy loop would log.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = m.accept_errors.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        later - errors < 50,
        "{} accept errors in 0.5 s",
        later - errors
    );
    // The header timeout frees the server's descriptors; then it serves again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(conns);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ts.assert_healthy().await;
    a1.barrier(1).await;
    let mut b1 = ts.client("bob", "b1").await;
    b1.barrier(2).await;
}
