//! Helpers for the end-to-end tests: the real programs, a real SQS/S3 emulator (moto), real media.
//!
//! Nothing here fakes AWS: [`Moto`] starts `moto_server` on a free loopback port, and both the
//! programs under test and the assertions talk to it over HTTP with the real AWS SDK, pointed
//! there by `AWS_ENDPOINT_URL`. A missing part (moto, ffprobe, the built programs) fails the test
//! with a message naming it; nothing is silently skipped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// The directory of the sample media: `$MEDIA_DIR`, or `../shared/media` beside the checkout.
pub fn media_dir() -> PathBuf {
    std::env::var_os("MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/media"))
}

/// The path of a sample file, or `None` (after one visible line) when the media set is absent.
/// Under `CI=true` an absent media set fails the test instead.
pub fn media(name: &str) -> Option<PathBuf> {
    let path = media_dir().join(name);
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "SKIPPED: sample media {} not found (set MEDIA_DIR to the media set)",
        path.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}; under CI=true the media set is required");
    }
    eprintln!("{msg}");
    None
}

/// The path of one of the workspace's programs, built by `cargo build --workspace --bins`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(addr: SocketAddr, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `moto_server` (SQS and S3 emulator) on a free loopback port, stopped when dropped.
#[derive(Debug)]
pub struct Moto {
    /// The endpoint, for `AWS_ENDPOINT_URL`.
    pub url: String,
    _process: Process,
}

impl Moto {
    /// Starts moto and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): install it with `pip install 'moto[server]'` (scripts/test.sh does)")
            });
        let process = Process(child);
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
            "moto_server",
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            _process: process,
        }
    }

    /// The environment the programs need to reach this emulator (and nothing else of AWS).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            // A retry costs seconds in a test; the SDK's standard policy still retries.
            ("AWS_MAX_ATTEMPTS", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// SDK configuration for the test's own assertions.
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    /// An SQS client on this emulator.
    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk().await)
    }

    /// An S3 client on this emulator (path-style, as an emulator needs).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates a queue with a dead-letter queue (`maxReceiveCount` 5); returns (queue, DLQ) URLs.
    pub async fn queue_with_dlq(&self, name: &str, visibility_timeout: u32) -> (String, String) {
        self.queue_with_dlq_after(name, visibility_timeout, 5).await
    }

    /// Creates a queue whose messages go to a dead-letter queue after `max_receive_count`
    /// receives; returns (queue, DLQ) URLs.
    pub async fn queue_with_dlq_after(
        &self,
        name: &str,
        visibility_timeout: u32,
        max_receive_count: u32,
    ) -> (String, String) {
        let sqs = self.sqs().await;
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .expect("create the DLQ")
            .queue_url
            .expect("a URL");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("read the DLQ ARN")
            .attributes
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .expect("an ARN");
        let policy = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count.to_string()})
            .to_string();
        let queue = sqs
            .create_queue()
            .queue_name(name)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, policy)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                visibility_timeout.to_string(),
            )
            .send()
            .await
            .expect("create the queue")
            .queue_url
            .expect("a URL");
        (queue, dlq)
    }

    /// Creates a bucket.
    pub async fn bucket(&self, name: &str) {
        self.s3()
            .await
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create a bucket");
    }

    /// Uploads a local file.
    pub async fn put_file(&self, bucket: &str, key: &str, path: &Path) {
        let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
            .await
            .expect("read the file");
        self.s3()
            .await
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .expect("upload");
    }

    /// Downloads an object to `path`; returns its user metadata.
    pub async fn get_file(&self, bucket: &str, key: &str, path: &Path) -> std::collections::HashMap<String, String> {
        let out = self
            .s3()
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("s3://{bucket}/{key} should exist: {e:?}"));
        let meta = out.metadata.clone().unwrap_or_default();
        let bytes = out.body.collect().await.expect("read the body").into_bytes();
        std::fs::write(path, bytes).expect("write the download");
        meta
    }

    /// Every key in a bucket.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self
            .s3()
            .await
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// The queue's approximate (visible, in flight) message counts.
    pub async fn depth(&self, queue: &str) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .sqs()
            .await
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("read the queue's attributes")
            .attributes
            .unwrap_or_default();
        let n = |k: A| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            n(A::ApproximateNumberOfMessages),
            n(A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// A `result-analyzer` process on a free port with its own database, stopped when dropped.
#[derive(Debug)]
pub struct Analyzer {
    /// Its base URL.
    pub url: String,
    /// Its database file.
    pub db: PathBuf,
    /// The process (for signal tests).
    pub process: Process,
}

impl Analyzer {
    /// Starts the analyzer on `db` with optional token.
    pub fn start(db: &Path, token: Option<&str>) -> Self {
        let port = free_port();
        let mut cmd = Command::new(bin("result-analyzer"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_PATH", db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(t) = token {
            cmd.env("ANALYZER_TOKEN", t);
        }
        let process = Process(cmd.spawn().expect("start result-analyzer"));
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(20),
            "result-analyzer",
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            db: db.to_owned(),
            process,
        }
    }

    /// `GET {path}` as text.
    pub async fn get(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("the analyzer answers")
            .text()
            .await
            .expect("a body")
    }

    /// `GET {path}` as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get(path).await).expect("JSON")
    }
}

/// A command for `program` with nothing of the test's environment but `PATH` and `RUST_LOG`
/// (`TEST_RUST_LOG`, default `info`), plus `env`; stdout and stderr piped.
pub fn clean_command(program: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a program to completion with a clean environment plus `env`, killing it after `timeout`.
pub fn run(program: &Path, args: &[&str], env: &[(String, String)], timeout: Duration) -> Output {
    let mut cmd = clean_command(program, args, env);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("poll the child").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{} {:?} did not finish within {timeout:?}; stderr:\n{}",
                program.display(),
                args,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

/// Asserts a program run ended with `code`, showing its output otherwise.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}, got {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exit status's code, or 128+signal for a signal death.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `ffprobe -show_streams -show_format` of a file, as JSON.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffprobe ({e}): install Debian's ffmpeg package (scripts/test.sh does)"));
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    serde_json::from_slice(&out.stdout).expect("ffprobe prints JSON")
}

/// The streams of one type (`video`, `audio`) in an ffprobe answer.
pub fn streams<'a>(probe: &'a serde_json::Value, codec_type: &str) -> Vec<&'a serde_json::Value> {
    probe["streams"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["codec_type"] == codec_type).collect())
        .unwrap_or_default()
}

/// A number ffprobe prints as a string.
pub fn num(v: &serde_json::Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(f64::NAN)
}

/// A fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates one under the system temp directory.
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("pipeline-test-{tag}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&p).expect("create a temp dir");
        Self(p)
    }

    /// Writes a file `name` of `bytes` pseudo-random (incompressible, never repeating) bytes, as
    /// a stand-in for a video where only the bytes matter (uploads, part boundaries).
    pub fn noise_file(&self, name: &str, bytes: usize) -> PathBuf {
        let path = self.join(name);
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let data: Vec<u8> = (0..bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&path, data).expect("writing a test file");
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads lines of a child's stderr in the background, returning them when asked.
#[derive(Debug)]
pub struct LineCollector(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl LineCollector {
    /// Starts collecting `stream`.
    pub fn new(stream: impl std::io::Read + Send + 'static) -> Self {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        Self(lines)
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

/// A whole local stack for one test: moto with a queue (and its dead-letter queue) and two
/// buckets, the analyzer, a scratch directory, and the environment the programs need.
#[derive(Debug)]
pub struct Stack {
    /// The emulator.
    pub moto: Moto,
    /// The analyzer.
    pub analyzer: Analyzer,
    /// The queue's URL.
    pub queue: String,
    /// The dead-letter queue's URL.
    pub dlq: String,
    /// Scratch space (also the encoder's WORK_DIR).
    pub tmp: TempDir,
    /// Environment for the programs: AWS, QUEUE_URL, ANALYZER_URL, WORK_DIR, OUTPUT_URI.
    pub env: Vec<(String, String)>,
}

/// The input bucket of a [`Stack`].
pub const INPUT_BUCKET: &str = "media-in";
/// The output bucket of a [`Stack`].
pub const OUTPUT_BUCKET: &str = "media-out";

impl Stack {
    /// Starts everything; the queue leases messages for `visibility_timeout` seconds by default
    /// and dead-letters them after 5 receives.
    pub async fn start(tag: &str, visibility_timeout: u32) -> Self {
        Self::start_with(tag, visibility_timeout, 5).await
    }

    /// As [`Stack::start`], dead-lettering after `max_receive_count` receives.
    pub async fn start_with(tag: &str, visibility_timeout: u32, max_receive_count: u32) -> Self {
        let tmp = TempDir::new(tag);
        let moto = Moto::start();
        let analyzer = Analyzer::start(&tmp.join("analyzer.db"), None);
        let (queue, dlq) = moto
            .queue_with_dlq_after("encode-requests", visibility_timeout, max_receive_count)
            .await;
        moto.bucket(INPUT_BUCKET).await;
        moto.bucket(OUTPUT_BUCKET).await;
        let mut env = moto.env();
        env.extend(
            [
                ("QUEUE_URL", queue.as_str()),
                ("ANALYZER_URL", analyzer.url.as_str()),
                ("RECEIVE_WAIT_SECONDS", "1"),
                ("OUTPUT_URI", "s3://media-out/renditions"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env.push(("WORK_DIR".into(), tmp.0.display().to_string()));
        env.push(("VISIBILITY_TIMEOUT_SECONDS".into(), visibility_timeout.to_string()));
        Self {
            moto,
            analyzer,
            queue,
            dlq,
            tmp,
            env,
        }
    }

    /// Uploads a local file as `uploads/{name}` in the input bucket; returns its `s3://` URI.
    pub async fn upload(&self, path: &Path, name: &str) -> String {
        let key = format!("uploads/{name}");
        self.moto.put_file(INPUT_BUCKET, &key, path).await;
        format!("s3://{INPUT_BUCKET}/{key}")
    }

    /// Sends a raw message body to the queue.
    pub async fn send(&self, body: &str) {
        self.moto
            .sqs()
            .await
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .send()
            .await
            .expect("send a message");
    }

    /// The environment with some variables replaced or added.
    pub fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .cloned()
            .collect();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    /// Runs the encoder once to completion.
    pub fn encoder(&self, extra: &[(&str, &str)]) -> Output {
        run(&bin("encoder"), &[], &self.env_with(extra), Duration::from_secs(300))
    }

    /// Starts the encoder without waiting; its stderr is collected.
    pub fn spawn_encoder(&self, extra: &[(&str, &str)]) -> (Child, LineCollector) {
        let mut cmd = clean_command(&bin("encoder"), &[], &self.env_with(extra));
        // The progress lines the lifecycle tests read are at info level.
        cmd.env("RUST_LOG", "info").stdout(Stdio::null());
        let mut child = cmd.spawn().expect("start the encoder");
        let lines = LineCollector::new(child.stderr.take().expect("piped stderr"));
        (child, lines)
    }

    /// Runs the producer with `args` to completion.
    pub fn producer(&self, args: &[&str]) -> Output {
        run(&bin("producer"), args, &self.env, Duration::from_secs(60))
    }

    /// The analyzer's `/get/count` as a list of lines.
    pub async fn get_count(&self) -> Vec<String> {
        serde_json::from_str(&self.analyzer.get("/get/count").await).expect("/get/count is a JSON list")
    }

    /// The analyzer's events of one kind.
    pub async fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        let v = self.analyzer.get_json(&format!("/events?kind={kind}&limit=1000")).await;
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// Messages on the dead-letter queue, with their attributes (received and left in place: they
    /// become visible again after a short lease).
    pub async fn dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.moto
            .sqs()
            .await
            .receive_message()
            .queue_url(&self.dlq)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(1)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the DLQ")
            .messages
            .unwrap_or_default()
    }

    /// Downloads a rendition from the output bucket and probes it with ffprobe.
    pub async fn rendition(&self, video_id: &str, quality: &str) -> serde_json::Value {
        let local = self.tmp.join(format!("{video_id}-{quality}.mp4"));
        self.moto
            .get_file(OUTPUT_BUCKET, &format!("renditions/{video_id}/{quality}.mp4"), &local)
            .await;
        ffprobe(&local)
    }
}

/// Makes a test clip with the `ffmpeg` tool (a test input, not the product's encoding): `seconds`
/// of 1080p30 test pattern with a tone.
pub fn make_clip(path: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1920x1080:rate=30:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:sample_rate=48000:duration={seconds}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): install Debian's ffmpeg package (scripts/test.sh does)"));
    assert!(status.success(), "ffmpeg could not make {}", path.display());
}

/// Sends a signal to a child.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits until a collected line contains `needle`, up to `timeout`.
pub fn wait_for_line(lines: &LineCollector, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if lines.lines().iter().any(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits for a child to exit, up to `timeout`; returns its exit code (128+signal for a signal).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(exit_code(status));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
