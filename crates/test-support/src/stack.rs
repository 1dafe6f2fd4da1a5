//! One test's whole world: an emulator's queue (with its dead-letter queue) and two buckets, a
//! result analyzer of its own, scratch space, and the environment the programs need.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::emulator::{Emulator, Kind};
use crate::files::{TempDir, ffprobe};
use crate::process::{LineCollector, Process, bin, clean_command, free_port, run, wait_for_port};

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

/// A whole local stack for one test, on the shared emulator of one kind: a queue (and its
/// dead-letter queue) and two buckets of the test's own names, the analyzer, a scratch directory,
/// and the environment the programs need.
#[derive(Debug)]
pub struct Stack {
    /// The emulator (shared with the other tests of this binary).
    pub aws: &'static Emulator,
    /// The analyzer.
    pub analyzer: Analyzer,
    /// The queue's URL.
    pub queue: String,
    /// The dead-letter queue's URL.
    pub dlq: String,
    /// The bucket sources are uploaded to.
    pub input_bucket: String,
    /// The bucket renditions go to (under `renditions/`, the encoder's `OUTPUT_URI`).
    pub output_bucket: String,
    /// Scratch space (also the encoder's WORK_DIR).
    pub tmp: TempDir,
    /// Environment for the programs: AWS, QUEUE_URL, ANALYZER_URL, WORK_DIR, OUTPUT_URI.
    pub env: Vec<(String, String)>,
}

impl Stack {
    /// Starts everything; the queue leases messages for `visibility_timeout` seconds by default
    /// and dead-letters them after 5 receives.
    pub async fn start(kind: Kind, tag: &str, visibility_timeout: u32) -> Self {
        Self::start_with(kind, tag, visibility_timeout, 5).await
    }

    /// As [`Stack::start`], dead-lettering after `max_receive_count` receives.
    pub async fn start_with(kind: Kind, tag: &str, visibility_timeout: u32, max_receive_count: u32) -> Self {
        let aws = Emulator::shared(kind);
        let tmp = TempDir::new(&format!("{kind}-{tag}"));
        let analyzer = Analyzer::start(&tmp.join("analyzer.db"), None);
        let (queue, dlq) = aws
            .queue_with_dlq(
                &aws.unique(&format!("{tag}-requests")),
                visibility_timeout,
                max_receive_count,
            )
            .await;
        let input_bucket = aws.unique(&format!("{tag}-in"));
        let output_bucket = aws.unique(&format!("{tag}-out"));
        aws.bucket(&input_bucket).await;
        aws.bucket(&output_bucket).await;
        let mut env = aws.env();
        env.extend(
            [
                ("QUEUE_URL", queue.clone()),
                ("ANALYZER_URL", analyzer.url.clone()),
                ("RECEIVE_WAIT_SECONDS", "1".into()),
                ("OUTPUT_URI", format!("s3://{output_bucket}/renditions")),
                ("WORK_DIR", tmp.0.display().to_string()),
                ("VISIBILITY_TIMEOUT_SECONDS", visibility_timeout.to_string()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        Self {
            aws,
            analyzer,
            queue,
            dlq,
            input_bucket,
            output_bucket,
            tmp,
            env,
        }
    }

    /// Which emulator the stack runs on.
    pub fn kind(&self) -> Kind {
        self.aws.kind()
    }

    /// The `s3://` URI of `uploads/{name}` in the input bucket (uploaded or not).
    pub fn source_uri(&self, name: &str) -> String {
        format!("s3://{}/uploads/{name}", self.input_bucket)
    }

    /// Uploads a local file as `uploads/{name}` in the input bucket; returns its `s3://` URI.
    pub async fn upload(&self, path: &Path, name: &str) -> String {
        let key = format!("uploads/{name}");
        self.aws.put_file(&self.input_bucket, &key, path).await;
        self.source_uri(name)
    }

    /// Sends a raw message body to the queue.
    pub async fn send(&self, body: &str) {
        self.aws
            .sqs()
            .await
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .send()
            .await
            .expect("send a message");
    }

    /// The queue's (visible, in flight) message counts.
    pub async fn depth(&self) -> (u64, u64) {
        self.aws.depth(&self.queue).await
    }

    /// The keys in the output bucket, sorted.
    pub async fn output_keys(&self) -> Vec<String> {
        self.aws.keys(&self.output_bucket).await
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

    /// A second receiver, straight to the emulator, polls the queue until `child` exits (with a
    /// lease of 1 s on whatever it gets); returns how many messages it got. A run holding its
    /// message's lease must leave it with none.
    pub async fn receive_while_running(&self, child: &mut Child) -> usize {
        let sqs = self.aws.sqs().await;
        let mut got = 0;
        while child.try_wait().expect("poll the child").is_none() {
            let answer = sqs
                .receive_message()
                .queue_url(&self.queue)
                .wait_time_seconds(1)
                .visibility_timeout(1)
                .send()
                .await
                .expect("the second receiver polls");
            got += answer.messages.unwrap_or_default().len();
        }
        got
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
        self.aws
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
        self.aws
            .get_file(
                &self.output_bucket,
                &format!("renditions/{video_id}/{quality}.mp4"),
                &local,
            )
            .await;
        ffprobe(&local)
    }
}
