//! Running `producer` with a clean environment against an emulator (a queue and a bucket of the
//! test's own), and reading back what reached the queue and the bucket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use encoding_common::EncodeRequest;
pub use test_support::Kind;
use test_support::{Emulator, TempDir};

/// The program under test, built by cargo for this test binary.
pub const PRODUCER: &str = env!("CARGO_BIN_EXE_producer");
/// The bucket named in request lines that never reach S3 (uploads go to [`Setup::bucket`]).
pub const INPUT_BUCKET: &str = "media-in";
/// The longest a producer run may take in a test.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One test's world: a queue and an input bucket on the shared emulator, and a scratch directory.
#[derive(Debug)]
pub struct Setup {
    /// The emulator.
    pub aws: &'static Emulator,
    /// The queue's URL.
    pub queue: String,
    /// The input bucket, this test's own.
    pub bucket: String,
    /// Scratch space, removed at the end.
    pub tmp: TempDir,
}

impl Setup {
    /// A standard queue named after `requests` and an input bucket.
    pub async fn start(kind: Kind, tag: &str) -> Self {
        Self::with_queue(kind, tag, "requests", &[]).await
    }

    /// A queue named after `name` (a FIFO queue when it ends in `.fifo`) created with
    /// `attributes`, and an input bucket.
    pub async fn with_queue(kind: Kind, tag: &str, name: &str, attributes: &[(QueueAttributeName, &str)]) -> Self {
        let aws = Emulator::shared(kind);
        let tmp = TempDir::new(&format!("producer-{kind}-{tag}"));
        let name = match name.strip_suffix(".fifo") {
            Some(stem) => format!("{}.fifo", aws.unique(&format!("{tag}-{stem}"))),
            None => aws.unique(&format!("{tag}-{name}")),
        };
        let queue = aws.queue(&name, attributes).await;
        let bucket = aws.unique(&format!("{tag}-in"));
        aws.bucket(&bucket).await;
        Self {
            aws,
            queue,
            bucket,
            tmp,
        }
    }

    /// `s3://{bucket}/{key}` in this test's input bucket.
    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The environment of a run: the emulator's, `QUEUE_URL`, and `extra`.
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.aws.env();
        env.push(("QUEUE_URL".into(), self.queue.clone()));
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    /// Runs the producer with `args` and the environment of [`Setup::env`].
    pub fn producer(&self, args: &[&str]) -> Output {
        run(args, &self.env(&[]), None)
    }

    /// Writes a file in the scratch directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.tmp.join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }

    /// Receives and deletes every message on `queue`, with its system attributes.
    pub async fn drain(&self, queue: &str) -> Vec<Message> {
        let sqs = self.aws.sqs().await;
        let mut all = Vec::new();
        loop {
            let messages = sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .visibility_timeout(30)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive from the queue")
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            for m in &messages {
                sqs.delete_message()
                    .queue_url(queue)
                    .receipt_handle(m.receipt_handle().expect("a receipt handle"))
                    .send()
                    .await
                    .expect("delete a message");
            }
            all.extend(messages);
        }
    }

    /// The requests on the queue, read back (and removed), sorted by video id and request id.
    pub async fn requests(&self) -> Vec<EncodeRequest> {
        let mut requests: Vec<EncodeRequest> = self
            .drain(&self.queue)
            .await
            .iter()
            .map(|m| EncodeRequest::from_json(m.body().expect("a body")).expect("a valid request on the queue"))
            .collect();
        sort(&mut requests);
        requests
    }

    /// The keys in the input bucket.
    pub async fn keys(&self) -> Vec<String> {
        self.aws.keys(&self.bucket).await
    }
}

/// A `producer` command with a clean environment (`PATH` and `RUST_LOG` kept) plus `env`.
pub fn command(args: &[&str], env: &[(String, String)]) -> Command {
    test_support::clean_command(Path::new(PRODUCER), args, env)
}

/// Runs `producer` to completion, with `stdin` as its standard input (none otherwise).
pub fn run(args: &[&str], env: &[(String, String)], stdin: Option<&str>) -> Output {
    let mut cmd = command(args, env);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("start the producer");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(text.as_bytes()).expect("write the producer's stdin");
    }
    wait(child, args)
}

/// Waits for a started producer, collecting its output; kills it after the test timeout.
pub fn wait(child: Child, args: &[&str]) -> Output {
    test_support::process::wait_output(child, &format!("producer {args:?}"), TIMEOUT)
}

/// Asserts the run's exit status, showing its output otherwise.
pub fn assert_exit(out: &Output, code: i32) {
    test_support::assert_exit(out, code, "producer");
}

/// The run's stdout, line by line.
pub fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The run's stderr (its log).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A request line for a file.
pub fn line(video_id: &str, source_key: &str, quality: &str, request_id: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "video_id": video_id,
        "source": format!("s3://{INPUT_BUCKET}/uploads/{source_key}"),
        "quality": quality,
    });
    if let Some(id) = request_id {
        v["request_id"] = id.into();
    }
    v.to_string()
}

/// A file of `bytes` bytes whose every 4 KiB block holds its own number, so that misplaced parts
/// show in a comparison.
pub fn numbered_file(path: &Path, bytes: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..bytes).map(|i| ((i / 4096) % 251) as u8 ^ (i % 7) as u8).collect();
    std::fs::write(path, &data).expect("write a generated file");
    data
}

/// Sorts requests by video id and request id, as [`Setup::requests`] returns them.
pub fn sort(requests: &mut [EncodeRequest]) {
    requests.sort_by(|a, b| (&a.video_id, &a.request_id).cmp(&(&b.video_id, &b.request_id)));
}
