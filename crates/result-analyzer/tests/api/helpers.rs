//! Shared by every test: the app in-process on a free port with its own database (in a
//! `test_support::TempDir`), the real binary as a child process, raw HTTP for slow clients, and
//! Chromium.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use result_analyzer::{Application, Config, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use test_support::TempDir as TestDir;

/// The test database in a test's directory.
pub trait DbPath {
    /// `analyzer.db` in it.
    fn db(&self) -> PathBuf;
}

impl DbPath for TestDir {
    fn db(&self) -> PathBuf {
        self.join("analyzer.db")
    }
}

/// The analyzer running in this process on `127.0.0.1:0`, stopped when dropped.
#[derive(Debug)]
pub struct TestApp {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    /// A handle on its store, to seed events with chosen times.
    pub store: Store,
    /// A client for it.
    pub client: reqwest::Client,
    dir: Option<TestDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), result_analyzer::Error>>>,
}

/// Starts the app with the default settings and a fresh database.
pub async fn spawn_app(name: &str) -> TestApp {
    spawn_with(TestDir::new(name), |_| {}).await
}

/// Starts the app on `dir`'s database (fresh or kept from an earlier app), after `adjust` changes
/// the settings.
pub async fn spawn_with(dir: TestDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir.db());
    adjust(&mut config);
    let app = Application::build(config).await.expect("the app starts");
    let addr = app.local_addr();
    let store = app.store().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        url: format!("http://{addr}"),
        addr,
        store,
        client: reqwest::Client::new(),
        dir: Some(dir),
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    /// `POST {path}` with no body.
    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the analyzer answers")
    }

    /// `POST {path}` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("the analyzer answers")
    }

    /// `POST /events` with `body` as is, and `content_type` when given.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>, content_type: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(format!("{}/events", self.url)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.expect("the analyzer answers")
    }

    /// Posts an event; panics unless it is answered 201.
    pub async fn event(&self, body: Value) -> Value {
        let resp = self.post_json("/events", &body).await;
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        assert_eq!(status, 201, "POST /events {body}: {text}");
        serde_json::from_str(&text).expect("a JSON answer")
    }

    /// `GET {path}`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the analyzer answers")
    }

    /// `GET {path}` as JSON; panics unless it is answered 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    /// Stops the app cleanly (as on SIGTERM) and gives back its directory, to start another app on
    /// the same database.
    pub async fn stop(mut self) -> TestDir {
        let _ = self.stop.take().expect("running").send(());
        self.task
            .take()
            .expect("running")
            .await
            .expect("the app task")
            .expect("a clean stop");
        self.dir.take().expect("a directory")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts the answer is an error as JSON (`{"error": "..."}`) with `status`, whose message
/// contains `needle`; returns the message.
pub async fn assert_error(resp: reqwest::Response, status: u16, needle: &str) -> String {
    let got = resp.status().as_u16();
    let ct = content_type(&resp);
    let text = resp.text().await.expect("a body");
    assert_eq!(got, status, "status; body {text}");
    assert_eq!(ct, "application/json", "content type of {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {text}"));
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "{msg:?} should mention {needle:?}"
    );
    msg.to_owned()
}

/// The `Content-Type` of an answer.
pub fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ASCII").to_owned())
        .unwrap_or_default()
}

/// Sends raw bytes on a fresh connection (for clients that stall), returning the stream.
pub async fn raw_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s
}

/// Reads an HTTP/1.1 answer until the server closes the connection or `timeout` passes.
pub async fn raw_read(stream: &mut TcpStream, timeout: Duration) -> String {
    let mut buf = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                // One complete answer is enough: the head and a body of Content-Length bytes.
                if let Some(done) = complete_response(&buf) {
                    buf.truncate(done);
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn complete_response(buf: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(buf);
    let head_end = text.find("\r\n\r\n")? + 4;
    let len = text[..head_end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })?
        .parse::<usize>()
        .ok()?;
    (buf.len() >= head_end + len).then_some(head_end + len)
}

/// A `POST /events` request head for `body`, without the body.
pub fn event_request_head(body: &str) -> String {
    format!(
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
}

/// The real `result-analyzer` program, killed when dropped.
#[derive(Debug)]
pub struct Program {
    /// The child, killed when dropped.
    process: test_support::Process,
    /// Its base URL.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its log file (stderr).
    pub log: PathBuf,
}

impl Program {
    /// Starts the program on `db`, logging to `log`, and waits until `/healthz` answers.
    pub async fn start(db: &Path, log: &Path) -> Self {
        let port = test_support::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(env!("CARGO_BIN_EXE_result-analyzer"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", addr.to_string())
            .env("DATABASE_PATH", db)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("create the log"))
            .spawn()
            .expect("start result-analyzer");
        let mut p = Self {
            process: test_support::Process(child),
            url: format!("http://{addr}"),
            addr,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", p.url)).await
                && r.status() == 200
            {
                return p;
            }
            if let Ok(Some(status)) = p.child().try_wait() {
                panic!("result-analyzer exited with {status} before answering:\n{}", p.logs());
            }
            assert!(
                Instant::now() < deadline,
                "result-analyzer did not answer within 30 s:\n{}",
                p.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The child process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.process.0
    }

    /// Sends `sig` (`libc::SIGTERM`, `libc::SIGKILL`, ...).
    pub fn signal(&self, sig: i32) {
        test_support::signal(&self.process.0, sig);
    }

    /// Waits up to `timeout` for the program to exit.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "result-analyzer did not exit within {timeout:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What it has logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Every stored event, through `GET /events` a page at a time.
pub async fn all_events(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let page: Value = client
            .get(format!("{url}/events?after_id={after}&limit=1000"))
            .send()
            .await
            .expect("GET /events")
            .json()
            .await
            .expect("JSON");
        out.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_after_id"].as_i64() {
            Some(next) => after = next,
            None => return out,
        }
    }
}

/// Where Chromium is: `$CHROMIUM`, or Debian's `/usr/bin/chromium`. Panics, naming the script that
/// installs it, when it is missing: a dashboard test that does not run proves nothing.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "Chromium is missing at {}: run scripts/install-browser.sh (it installs Debian's chromium package), \
         or set CHROMIUM to a Chromium binary",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with a fresh profile in `dir`, adding `extra` flags; returns
/// its stdout. Panics when it fails or takes more than 2 minutes.
pub async fn run_chromium(dir: &Path, url: &str, extra: &[String]) -> String {
    let profile = dir.join(format!("chromium-profile-{}", extra.len()));
    let _ = std::fs::remove_dir_all(&profile);
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--virtual-time-budget=5000")
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("Chromium finished within 2 minutes")
        .expect("Chromium runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Chromium failed with {}:\n{stderr}", out.status);
    String::from_utf8(out.stdout).expect("UTF-8 from Chromium")
}
