//! A real SQS/S3 emulator on loopback, reached over HTTP with the real AWS SDK.
//!
//! Two are supported, and the end-to-end tests run on both ([`crate::on_both_emulators!`]):
//!
//! - **moto** (`moto_server`, from `pip install 'moto[server]'`): quick to start, lenient.
//! - **LocalStack** (`scripts/localstack.sh`, installed by `scripts/install-localstack.sh`): built
//!   to answer as S3 and SQS do; what it refuses, real S3 usually refuses too.
//!
//! [`Emulator::shared`] starts one of each per test binary, on first use, and keeps it for the
//! binary's life (it is killed with the binary, however the binary ends). Tests in a binary run in
//! parallel, so instead of resetting the emulator between tests (which would wipe a neighbour's
//! state mid-test) every test makes queues and buckets of its own names ([`Emulator::unique`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::process::{Process, free_port, http_get, spawn_tied_to_this_process, wait_for_port};

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// Which emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// moto's server mode.
    Moto,
    /// LocalStack's community core, SQS and S3 only.
    LocalStack,
}

impl Kind {
    /// Both, in the order the suite reports them.
    pub const ALL: [Kind; 2] = [Kind::Moto, Kind::LocalStack];

    /// Its name in test names, logs and `EMULATOR=`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Moto => "moto",
            Kind::LocalStack => "localstack",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    kind: Kind,
    /// The endpoint, for `AWS_ENDPOINT_URL`.
    pub url: String,
    process: Process,
    /// LocalStack's files (and its log), removed when a private emulator is dropped.
    state: Option<PathBuf>,
}

impl Emulator {
    /// The emulator of this kind that every test of this binary shares, started on first use.
    pub fn shared(kind: Kind) -> &'static Emulator {
        static MOTO: OnceLock<Emulator> = OnceLock::new();
        static LOCALSTACK: OnceLock<Emulator> = OnceLock::new();
        let cell = match kind {
            Kind::Moto => &MOTO,
            Kind::LocalStack => &LOCALSTACK,
        };
        cell.get_or_init(|| Emulator::start(kind))
    }

    /// Starts a private emulator of this kind, stopped when dropped (for a test that must stop or
    /// restart it); waits until it answers.
    pub fn start(kind: Kind) -> Self {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (process, state) = match kind {
            Kind::Moto => (start_moto(port), None),
            Kind::LocalStack => {
                let state = localstack_state_dir();
                (start_localstack(port, &state), Some(state))
            }
        };
        let mut emulator = Self {
            kind,
            url: format!("http://{addr}"),
            process,
            state,
        };
        emulator.wait_ready(addr);
        emulator
    }

    fn wait_ready(&mut self, addr: SocketAddr) {
        let timeout = Duration::from_secs(90);
        match self.kind {
            Kind::Moto => wait_for_port(addr, timeout, "moto_server"),
            Kind::LocalStack => {
                let deadline = Instant::now() + timeout;
                loop {
                    if let Some((200, body)) = http_get(addr, "/_localstack/health")
                        && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|h| {
                            ["sqs", "s3"]
                                .iter()
                                .all(|s| matches!(h["services"][*s].as_str(), Some("available" | "running")))
                        })
                    {
                        return;
                    }
                    if let Ok(Some(status)) = self.process.0.try_wait() {
                        panic!("LocalStack exited ({status}) before it was ready:\n{}", self.log_tail());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "LocalStack did not report sqs and s3 ready at {addr} within {timeout:?}:\n{}",
                        self.log_tail()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// The end of LocalStack's log, for a failure message.
    fn log_tail(&self) -> String {
        let Some(state) = &self.state else {
            return String::new();
        };
        let log = std::fs::read_to_string(state.join("localstack.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Which emulator this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether its process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.process.0.try_wait(), Ok(None))
    }

    /// A name for a queue or bucket that no other test of this binary uses: `tag` (lower-cased,
    /// cut to fit S3's 63 characters) and a number.
    pub fn unique(&self, tag: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let clean: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(50)
            .collect();
        format!("{}-{n}", clean.trim_matches('-'))
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

    /// Creates a queue `name` with `attributes`; returns its URL.
    pub async fn queue(&self, name: &str, attributes: &[(QueueAttributeName, &str)]) -> String {
        let mut create = self.sqs().await.create_queue().queue_name(name);
        for (k, v) in attributes {
            create = create.attributes(k.clone(), *v);
        }
        create
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: create the queue {name}: {e:?}", self.kind))
            .queue_url
            .expect("a queue URL")
    }

    /// A queue's ARN.
    pub async fn queue_arn(&self, url: &str) -> String {
        self.sqs()
            .await
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("read the queue's ARN")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("an ARN")
    }

    /// Creates a queue with a dead-letter queue `{name}-dlq` that takes a message after
    /// `max_receive_count` receives; returns (queue, DLQ) URLs.
    pub async fn queue_with_dlq(
        &self,
        name: &str,
        visibility_timeout: u32,
        max_receive_count: u32,
    ) -> (String, String) {
        let dlq = self.queue(&format!("{name}-dlq"), &[]).await;
        let arn = self.queue_arn(&dlq).await;
        let policy = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count.to_string()})
            .to_string();
        let visibility = visibility_timeout.to_string();
        let queue = self
            .queue(
                name,
                &[
                    (QueueAttributeName::RedrivePolicy, &policy),
                    (QueueAttributeName::VisibilityTimeout, &visibility),
                ],
            )
            .await;
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
            .unwrap_or_else(|e| panic!("{}: create the bucket {name}: {e:?}", self.kind));
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
            .unwrap_or_else(|e| panic!("{}: upload s3://{bucket}/{key}: {e:?}", self.kind));
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
            .unwrap_or_else(|e| panic!("{}: s3://{bucket}/{key} should exist: {e:?}", self.kind));
        let meta = out.metadata.clone().unwrap_or_default();
        let bytes = out.body.collect().await.expect("read the body").into_bytes();
        std::fs::write(path, bytes).expect("write the download");
        meta
    }

    /// Every key in a bucket, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let s3 = self.s3().await;
        let mut keys = Vec::new();
        let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("{}: list s3://{bucket}: {e:?}", self.kind));
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys.sort();
        keys
    }

    /// The keys of the multipart uploads under way (not completed, not aborted) in a bucket.
    pub async fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let out = self
            .s3()
            .await
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: list the multipart uploads of {bucket}: {e:?}", self.kind));
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
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
            .unwrap_or_else(|e| panic!("{}: read the queue's attributes: {e:?}", self.kind))
            .attributes
            .unwrap_or_default();
        let n = |k: A| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            n(A::ApproximateNumberOfMessages),
            n(A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
        if let Some(state) = &self.state {
            let _ = std::fs::remove_dir_all(state);
        }
    }
}

fn start_moto(port: u16) -> Process {
    let mut cmd = Command::new("moto_server");
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawn_tied_to_this_process(cmd).unwrap_or_else(|e| {
        panic!("cannot start moto_server ({e}): install it with `pip install 'moto[server]'` (scripts/test.sh does)")
    });
    Process(child)
}

/// The repository's `scripts/` directory.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

fn start_localstack(port: u16, state: &Path) -> Process {
    let launcher = scripts_dir().join("localstack.sh");
    let log = std::fs::File::create(state.join("localstack.log")).expect("create LocalStack's log");
    let mut cmd = Command::new(&launcher);
    cmd.arg(port.to_string())
        .arg(state)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file"))
        .stderr(log);
    let child = spawn_tied_to_this_process(cmd).unwrap_or_else(|e| {
        panic!(
            "cannot start LocalStack with {} ({e}): install it with scripts/install-localstack.sh (scripts/test.sh does)",
            launcher.display()
        )
    });
    Process(child)
}

/// A fresh directory for one LocalStack's files; directories left by test binaries that are gone
/// (killed before they could clean up) are removed first.
fn localstack_state_dir() -> PathBuf {
    const PREFIX: &str = "test-localstack-";
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only LocalStack's own `{PREFIX}{pid}-{n}`: a stack's scratch directory is named
            // `test-localstack-{tag}-{pid}-{n}`, and its tag is no process id.
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|r| r.split('-').next())
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = tmp.join(format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create LocalStack's state directory");
    dir
}
