//! HTTP side: Server API getToken, dev token, health, static files, database, the binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

async fn json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "content-type was {ct:?}"
    );
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn get_token_with_valid_signature_returns_a_token_that_authenticates() {
    let ts = TestServer::start().await;
    let resp = get_token_request(
        &ts,
        APP_KEY,
        APP_SECRET,
        &[("userId", "alice"), ("name", "Alice")],
    )
    .await;
    let (status, body) = json(resp).await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], 200);
    assert_eq!(body["userId"], "alice");
    let token = body["token"].as_str().unwrap();
    assert!(token.contains('.'));
    let c = Client::login(ts.addr, token, "d1").await;
    assert_eq!(c.user_id, "alice");
}

#[tokio::test]
async fn signature_is_compared_case_insensitively() {
    let ts = TestServer::start().await;
    let nonce = &fresh_nonce();
    let timestamp = &now_ms().to_string();
    let resp = reqwest::Client::new()
        .post(ts.url("/user/getToken.json"))
        .header("App-Key", APP_KEY)
        .header("Nonce", nonce)
        .header("Timestamp", timestamp)
        .header(
            "Signature",
            signature(APP_SECRET, nonce, timestamp).to_uppercase(),
        )
        .form(&[("userId", "bob")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn bad_signature_is_401_json_1004() {
    let ts = TestServer::start().await;
    let resp = get_token_request(&ts, APP_KEY, "wrong-secret", &[("userId", "alice")]).await;
    let (status, body) = json(resp).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], 1004);
    assert!(body["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body.get("token").is_none());
}

#[tokio::test]
async fn unknown_app_key_is_401_json_1004() {
    let ts = TestServer::start().await;
    let resp = get_token_request(&ts, "other-app", APP_SECRET, &[("userId", "alice")]).await;
    let (status, body) = json(resp).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(1004)));
}

#[tokio::test]
async fn missing_signature_headers_are_401_json_1004() {
    let ts = TestServer::start().await;
    let resp = reqwest::Client::new()
        .post(ts.url("/user/getToken.json"))
        .header("App-Key", APP_KEY)
        .form(&[("userId", "alice")])
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(1004)));
}

#[tokio::test]
async fn missing_or_invalid_user_id_is_400_json_1002() {
    let ts = TestServer::start().await;
    let long = "x".repeat(65);
    let cases: [&[(&str, &str)]; 3] = [
        &[("name", "Alice")],
        &[("userId", "")],
        &[("userId", &long)],
    ];
    for form in cases {
        let (status, body) = json(get_token_request(&ts, APP_KEY, APP_SECRET, form).await).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(1002)),
            "{form:?}"
        );
        assert!(body["errorMessage"].as_str().is_some());
    }
}

/// A user id the WebSocket side refuses (33003: control characters, NUL, over 64 characters)
/// gets no token and is refused by every Server API endpoint naming users, with the same
/// 400/1002 as a missing `userId`: such a user could never be called.
#[tokio::test]
async fn user_ids_the_hub_refuses_are_refused_by_the_server_api() {
    let ts = TestServer::start().await;
    let long = "é".repeat(65);
    for bad in [
        "a\0b",
        "a\nb",
        "tab\there",
        "del\u{7f}",
        "c1\u{85}",
        long.as_str(),
    ] {
        let endpoints: [(&str, Vec<(&str, &str)>); 8] = [
            ("/user/getToken.json", vec![("userId", bad)]),
            ("/user/refresh.json", vec![("userId", bad), ("name", "x")]),
            ("/user/block.json", vec![("userId", bad), ("minute", "1")]),
            (
                "/user/blacklist/add.json",
                vec![("userId", "alice"), ("blackUserId", bad)],
            ),
            (
                "/user/blacklist/add.json",
                vec![("userId", bad), ("blackUserId", "bob")],
            ),
            (
                "/group/join.json",
                vec![("userId", "alice"), ("userId", bad), ("groupId", "g")],
            ),
            (
                "/group/create.json",
                vec![("userId", bad), ("groupId", "g")],
            ),
            (
                "/rtc/user/kick.json",
                vec![("userId", bad), ("roomId", "r")],
            ),
        ];
        for (path, form) in endpoints {
            let (status, body) =
                json(api_request(&ts, path, APP_KEY, APP_SECRET, &form).await).await;
            assert_eq!(
                (status, body["code"].as_i64()),
                (400, Some(1002)),
                "{path} {bad:?}"
            );
            assert!(body["errorMessage"].as_str().is_some(), "{path} {bad:?}");
        }
    }
    // A group join naming one bad id changes nothing (not even the valid members).
    let q = api_ok(&ts, "/group/user/query.json", &[("groupId", "g")]).await;
    assert_eq!(q["users"].as_array().map(Vec::len), Some(0));
    // 64 characters of anything printable (not just ASCII) is still fine.
    let ok = "é".repeat(64);
    let (status, body) =
        json(get_token_request(&ts, APP_KEY, APP_SECRET, &[("userId", &ok)]).await).await;
    assert_eq!((status, body["userId"].as_str()), (200, Some(ok.as_str())));
}

#[tokio::test]
async fn malformed_body_is_400_json() {
    let ts = TestServer::start().await;
    let nonce = "9";
    let timestamp = now_ms().to_string();
    let resp = reqwest::Client::new()
        .post(ts.url("/user/getToken.json"))
        .header("App-Key", APP_KEY)
        .header("Nonce", nonce)
        .header("Timestamp", &timestamp)
        .header("Signature", signature(APP_SECRET, nonce, &timestamp))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xFFu8, 0x00, 0x26, 0x3D, 0x3D, 0xFE])
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(1002)));
    // The server is still fine.
    ts.assert_healthy().await;
}

#[tokio::test]
async fn extreme_timestamps_are_refused_401_not_a_crash() {
    // Found by the server_api fuzz target: `(now - ts).abs()` overflowed for a Timestamp near
    // i64::MIN (a panic in debug builds, a wrap into the accepted window in release ones).
    let ts = TestServer::start().await;
    for (i, timestamp) in ["-9223372036854775808", "-1", "9223372036854775807"]
        .into_iter()
        .enumerate()
    {
        let nonce = format!("x{i}");
        let resp = reqwest::Client::new()
            .post(ts.url("/user/getToken.json"))
            .header("App-Key", APP_KEY)
            .header("Nonce", &nonce)
            .header("Timestamp", timestamp)
            .header("Signature", signature(APP_SECRET, &nonce, timestamp))
            .form(&[("userId", "u1")])
            .send()
            .await
            .unwrap();
        let (status, body) = json(resp).await;
        assert_eq!(status, 401, "Timestamp {timestamp}: {body}");
    }
    ts.assert_healthy().await;
}

#[tokio::test]
async fn get_token_stores_the_user_in_the_sqlite_file() {
    let ts = TestServer::start().await;
    let form = [
        ("userId", "alice"),
        ("name", "Alice A"),
        ("portraitUri", "http://127.0.0.1/a.png"),
    ];
    let before = now_ms();
    assert_eq!(
        get_token_request(&ts, APP_KEY, APP_SECRET, &form)
            .await
            .status()
            .as_u16(),
        200
    );
    let db = rusqlite::Connection::open(ts.dir.path().join("rcall.db")).unwrap();
    let row: (String, String, String, String, i64) = db
        .query_row(
            "SELECT app_key, user_id, name, portrait_uri, updated_at FROM users WHERE user_id = 'alice'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(row.0, APP_KEY);
    assert_eq!(row.1, "alice");
    assert_eq!(row.2, "Alice A");
    assert_eq!(row.3, "http://127.0.0.1/a.png");
    assert!(row.4 >= before && row.4 <= now_ms());
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn dev_token_exists_in_dev_mode_with_cors() {
    let ts = TestServer::start_with(|c| c.dev = true).await;
    let resp = reqwest::get(ts.url("/dev/token?userId=carol"))
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    let (status, body) = json(resp).await;
    assert_eq!(
        (status, body["code"].as_i64(), body["userId"].as_str()),
        (200, Some(200), Some("carol"))
    );
    let c = Client::login(ts.addr, body["token"].as_str().unwrap(), "d").await;
    assert_eq!(c.user_id, "carol");
    let (status, body) = json(reqwest::get(ts.url("/dev/token")).await.unwrap()).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(1002)));
}

#[tokio::test]
async fn dev_token_is_404_without_dev_mode() {
    let ts = TestServer::start().await;
    let resp = reqwest::get(ts.url("/dev/token?userId=carol"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn dev_group_joins_users_without_signing_in_dev_mode_only() {
    let ts = TestServer::start_with(|c| c.dev = true).await;
    let form = [("groupId", "g1"), ("userId", "alice"), ("userId", "bob")];
    let resp = reqwest::Client::new()
        .post(ts.url("/dev/group"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!((status, body["code"].as_i64()), (200, Some(200)));
    // Joining again adds (the demo's mid-call invite).
    let resp = reqwest::Client::new()
        .post(ts.url("/dev/group"))
        .form(&[("groupId", "g1"), ("userId", "carol")])
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await.0, 200);
    let q = api_ok(&ts, "/group/user/query.json", &[("groupId", "g1")]).await;
    assert_eq!(
        q["users"],
        serde_json::json!([{"id": "alice"}, {"id": "bob"}, {"id": "carol"}])
    );
    let resp = reqwest::Client::new()
        .post(ts.url("/dev/group"))
        .form(&[("userId", "alice")])
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(1002)));

    let prod = TestServer::start().await;
    let resp = reqwest::Client::new()
        .post(prod.url("/dev/group"))
        .form(&form)
        .send()
        .await
        .unwrap();
    // Without --dev the path is only the static file service's (which takes GET only).
    assert_eq!(resp.status().as_u16(), 405);
    let q = api_ok(&prod, "/group/user/query.json", &[("groupId", "g1")]).await;
    assert_eq!(q["users"], serde_json::json!([]));
}

#[tokio::test]
async fn healthz_is_ok() {
    let ts = TestServer::start().await;
    let resp = reqwest::get(ts.url("/healthz")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn sdk_files_are_served_with_wasm_mime_and_cors() {
    let ts = TestServer::start().await;
    let sdk = ts.dir.path().join("sdk");
    std::fs::create_dir_all(&sdk).unwrap();
    std::fs::write(sdk.join("rcall_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(sdk.join("rcall.js"), b"export default 1;").unwrap();

    let resp = reqwest::get(ts.url("/sdk/rcall_bg.wasm")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/wasm"
    );
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"\0asm\x01\0\0\0");

    let resp = reqwest::get(ts.url("/sdk/rcall.js")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.contains("javascript"), "{ct}");
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    assert_eq!(resp.text().await.unwrap(), "export default 1;");

    let resp = reqwest::get(ts.url("/sdk/missing.js")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn web_dir_is_served_at_root_and_missing_dirs_are_404() {
    let ts = TestServer::start().await;
    // Neither dir exists yet: 404, no crash.
    assert_eq!(
        reqwest::get(ts.url("/")).await.unwrap().status().as_u16(),
        404
    );
    assert_eq!(
        reqwest::get(ts.url("/sdk/rcall.js"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let web = ts.dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "<h1>rcall demo</h1>").unwrap();
    let resp = reqwest::get(ts.url("/")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(resp.text().await.unwrap(), "<h1>rcall demo</h1>");
}

#[tokio::test]
async fn start_refuses_missing_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = rcall_server::Config::new("", "secret");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db_path = dir.path().join("x.db");
    assert!(matches!(
        rcall_server::start(config.clone()).await,
        Err(rcall_server::StartError::Config(
            rcall_server::ConfigError::MissingAppKey
        ))
    ));
    config.app_key = "k".into();
    config.app_secret = String::new();
    assert!(matches!(
        rcall_server::start(config).await,
        Err(rcall_server::StartError::Config(
            rcall_server::ConfigError::MissingAppSecret
        ))
    ));
}

/// Kills the spawned server even if an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the real binary: the listening line, dev credentials, and a working server.
#[tokio::test]
async fn binary_prints_listening_line_and_dev_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rcall-server"))
        .args(["--dev", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("bin.db"))
        .env_remove("RCALL_APP_KEY")
        .env_remove("RCALL_APP_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("rcall-server listening on http://")
        .expect(&first)
        .to_owned();
    let rest: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(rest.iter().any(|l| l.contains("rcall-dev-app")), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("rcall-dev-secret")),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.to_lowercase().contains("development")),
        "{rest:?}"
    );

    let resp = reqwest::get(format!("http://{addr}/dev/token?userId=zed"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(dir.path().join("bin.db").exists());
}

#[test]
fn binary_without_credentials_exits_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rcall-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("bin.db"))
        .env_remove("RCALL_APP_KEY")
        .env_remove("RCALL_APP_SECRET")
        .env_remove("RCALL_DEV")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("app key"));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn wrong_method_on_the_api_is_405_json() {
    let ts = TestServer::start().await;
    let resp = reqwest::get(ts.url("/user/getToken.json")).await.unwrap();
    let (status, body) = json(resp).await;
    assert_eq!((status, body["code"].as_i64()), (405, Some(1002)));
    // An oversized body is a JSON 400, not a torn connection.
    let big = "x".repeat(3 * 1024 * 1024);
    let resp = api_request(
        &ts,
        "/user/getToken.json",
        APP_KEY,
        APP_SECRET,
        &[("userId", &big)],
    )
    .await;
    let (status, body) = json(resp).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(1002)));
}
