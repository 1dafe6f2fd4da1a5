//! The producer: puts encode requests on the queue.
//!
//! ```text
//! producer --queue-url "$QUEUE_URL" --source s3://media-in/uploads/clip.mov \
//!          --quality 480p --quality 720p --count 3
//! ```
//!
//! By default each quality is its own message (so KEDA can run the renditions in parallel Jobs);
//! `--one-message` asks for all of them in one request (`qualities`), decoded once. Messages are
//! sent with SendMessageBatch in tens; entries a batch reports as failed are sent again, and the
//! exit status is non-zero if any request could not be sent.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use clap::Parser;
use encoding_common::{EncodeRequest, Quality, S3Uri, request::check_video_id};

/// SQS's largest batch.
pub const BATCH_SIZE: usize = 10;
/// Attempts per message before it counts as not sent.
const SEND_ATTEMPTS: u32 = 4;

/// Command line of `producer`.
#[derive(Debug, Clone, Parser)]
#[command(name = "producer", version, about = "Puts encode requests on the SQS queue.")]
pub struct Config {
    /// The queue to send to.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: String,
    /// The video to encode (s3://bucket/key).
    #[arg(long, env = "SOURCE")]
    pub source: String,
    /// A rendition to ask for; repeat (or comma-separate in QUALITIES) for several.
    #[arg(long = "quality", env = "QUALITIES", value_delimiter = ',', required = true, value_parser = parse_quality)]
    pub qualities: Vec<Quality>,
    /// Names the output folder; default: the source file's name, made safe.
    #[arg(long, env = "VIDEO_ID")]
    pub video_id: Option<String>,
    /// Where the renditions go (s3://bucket/prefix); default: the encoder's OUTPUT_URI.
    #[arg(long, env = "OUTPUT_URI")]
    pub output: Option<String>,
    /// Send N copies, with video ids suffixed -1 to -N (for demos and load tests).
    #[arg(long, env = "COUNT", default_value_t = 1)]
    pub count: u32,
    /// Put all qualities in one request instead of one message per quality.
    #[arg(long)]
    pub one_message: bool,
    /// Print the messages instead of sending them.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON line per sent message (request id, message id) on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_quality(s: &str) -> Result<Quality, String> {
    s.trim()
        .parse()
        .map_err(|e: encoding_common::RequestError| e.to_string())
}

/// The requests a configuration asks for, validated, each with a fresh `request_id`.
///
/// # Errors
///
/// When the source, output or video id is invalid, or `count` is 0.
pub fn build_requests(config: &Config) -> anyhow::Result<Vec<EncodeRequest>> {
    let source = S3Uri::parse("source", &config.source, true)?;
    let output = config
        .output
        .as_deref()
        .filter(|o| !o.is_empty())
        .map(|o| S3Uri::parse("output", o, false))
        .transpose()?;
    if config.count == 0 {
        bail!("--count must be at least 1");
    }
    let base_id = match &config.video_id {
        Some(v) => v.clone(),
        None => video_id_from_key(&source.key),
    };
    check_video_id(&base_id)?;
    let mut qualities = config.qualities.clone();
    let mut seen = Vec::new();
    qualities.retain(|q| {
        let new = !seen.contains(q);
        seen.push(*q);
        new
    });
    let groups: Vec<Vec<Quality>> = if config.one_message {
        vec![qualities]
    } else {
        qualities.into_iter().map(|q| vec![q]).collect()
    };
    let mut requests = Vec::new();
    for copy in 1..=config.count {
        let video_id = if config.count > 1 {
            format!("{base_id}-{copy}")
        } else {
            base_id.clone()
        };
        for group in &groups {
            let mut r = EncodeRequest::new(video_id.clone(), source.clone(), group.clone())?;
            r.output.clone_from(&output);
            r.request_id = Some(uuid::Uuid::new_v4().to_string());
            requests.push(r);
        }
    }
    Ok(requests)
}

/// A video id from an object key: the file name without extension, unsafe characters as `-`.
pub fn video_id_from_key(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let mut id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while id.starts_with('.') {
        id.remove(0);
    }
    id.truncate(encoding_common::request::MAX_VIDEO_ID_LEN);
    if id.is_empty() { "video".into() } else { id }
}

/// One sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The request's id.
    pub request_id: String,
    /// SQS's message id.
    pub message_id: String,
    /// The video id.
    pub video_id: String,
}

/// The result of sending.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Requests SQS accepted.
    pub sent: Vec<Sent>,
    /// Requests that could not be sent, with the last error.
    pub failed: Vec<(EncodeRequest, String)>,
}

/// Sends `requests` in batches of ten, resending the entries a batch reports as failed.
pub async fn send_all(client: &aws_sdk_sqs::Client, queue_url: &str, requests: Vec<EncodeRequest>) -> SendReport {
    let fifo = queue_url.ends_with(".fifo");
    let mut report = SendReport::default();
    for chunk in requests.chunks(BATCH_SIZE) {
        let mut pending: Vec<(usize, &EncodeRequest)> = chunk.iter().enumerate().collect();
        let mut last_error: HashMap<usize, String> = HashMap::new();
        for attempt in 1..=SEND_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 2))).await;
            }
            let entries: Vec<SendMessageBatchRequestEntry> = pending
                .iter()
                .map(|(i, r)| {
                    let mut e = SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(r.to_json());
                    if fifo {
                        e = e
                            .message_group_id(&r.video_id)
                            .message_deduplication_id(r.request_id.as_deref().unwrap_or_default());
                    }
                    e.build().expect("id and body are set")
                })
                .collect();
            match client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for ok in out.successful {
                        let i: usize = ok.id[1..].parse().expect("ids are m<index>");
                        let r = chunk[i].clone();
                        report.sent.push(Sent {
                            request_id: r.request_id.unwrap_or_default(),
                            message_id: ok.message_id,
                            video_id: r.video_id,
                        });
                        pending.retain(|(j, _)| *j != i);
                    }
                    for bad in out.failed {
                        let i: usize = bad.id[1..].parse().expect("ids are m<index>");
                        let why = format!("{}: {}", bad.code, bad.message.unwrap_or_default());
                        tracing::warn!(entry = i, attempt, error = %why, sender_fault = bad.sender_fault, "a batch entry failed");
                        if bad.sender_fault {
                            // The request itself is refused: sending it again cannot help.
                            report.failed.push((chunk[i].clone(), why));
                            pending.retain(|(j, _)| *j != i);
                        } else {
                            last_error.insert(i, why);
                        }
                    }
                }
                Err(e) => {
                    let why = format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e));
                    tracing::warn!(attempt, error = %why, "sending a batch failed");
                    for (i, _) in &pending {
                        last_error.insert(*i, why.clone());
                    }
                }
            }
        }
        for (i, r) in pending {
            let why = last_error.remove(&i).unwrap_or_else(|| "not sent".into());
            report.failed.push((r.clone(), why));
        }
    }
    report
}

/// Runs the producer.
///
/// # Errors
///
/// When the requests are invalid or any could not be sent.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let requests = build_requests(&config).context("invalid request")?;
    if config.dry_run {
        for r in &requests {
            println!("{}", r.to_json());
        }
        tracing::info!(messages = requests.len(), "dry run: nothing sent");
        return Ok(());
    }
    let sdk = encoding_common::aws::load_config().await;
    let client = encoding_common::aws::sqs_client(&sdk);
    let total = requests.len();
    let report = send_all(&client, &config.queue_url, requests).await;
    for s in &report.sent {
        if config.json {
            println!(
                "{}",
                serde_json::json!({"request_id": s.request_id, "message_id": s.message_id, "video_id": s.video_id})
            );
        }
        tracing::info!(video_id = %s.video_id, request_id = %s.request_id, message_id = %s.message_id, "sent");
    }
    for (r, why) in &report.failed {
        tracing::error!(video_id = %r.video_id, request_id = r.request_id.as_deref().unwrap_or(""), error = %why, "not sent");
    }
    tracing::info!(sent = report.sent.len(), failed = report.failed.len(), total, queue_url = %config.queue_url, "done");
    if !report.failed.is_empty() {
        let ids: Vec<String> = report
            .failed
            .iter()
            .map(|(r, _)| format!("{} ({})", r.video_id, r.request_id.as_deref().unwrap_or("")))
            .collect();
        bail!(
            "{} of {total} requests could not be sent: {}",
            report.failed.len(),
            ids.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut full = vec![
            "producer",
            "--queue-url",
            "http://q",
            "--source",
            "s3://media-in/uploads/My Clip.final.mov",
        ];
        full.extend_from_slice(args);
        Config::try_parse_from(full).unwrap()
    }

    #[test]
    fn one_message_per_quality_by_default() {
        let reqs = build_requests(&config(&["--quality", "480p", "--quality", "720p"])).unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].qualities, vec![Quality::P480]);
        assert_eq!(reqs[1].qualities, vec![Quality::P720]);
        assert_eq!(reqs[0].video_id, "My-Clip.final");
        assert_ne!(reqs[0].request_id, reqs[1].request_id);
        for r in &reqs {
            assert_eq!(EncodeRequest::from_json(&r.to_json()).unwrap(), *r);
        }
    }

    #[test]
    fn one_message_puts_all_qualities_in_one_request() {
        let reqs = build_requests(&config(&["--quality", "480p,720p", "--one-message"])).unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].qualities, vec![Quality::P480, Quality::P720]);
        assert!(reqs[0].to_json().contains("\"qualities\""));
    }

    #[test]
    fn count_makes_suffixed_copies() {
        let reqs = build_requests(&config(&["--quality", "360p", "--count", "3", "--video-id", "demo"])).unwrap();
        let ids: Vec<&str> = reqs.iter().map(|r| r.video_id.as_str()).collect();
        assert_eq!(ids, ["demo-1", "demo-2", "demo-3"]);
    }

    #[test]
    fn invalid_inputs_are_refused_before_sending() {
        assert!(
            Config::try_parse_from([
                "producer",
                "--queue-url",
                "q",
                "--source",
                "s3://b-b/k",
                "--quality",
                "999p"
            ])
            .is_err()
        );
        let mut c = config(&["--quality", "360p"]);
        c.source = "http://x/y".into();
        assert!(build_requests(&c).is_err());
        let mut c = config(&["--quality", "360p", "--video-id", ".bad"]);
        assert!(build_requests(&c).is_err());
        c.video_id = None;
        c.count = 0;
        assert!(build_requests(&c).is_err());
        let c = config(&["--quality", "360p", "--output", "nope"]);
        assert!(build_requests(&c).is_err());
    }

    #[test]
    fn video_ids_from_keys_are_safe() {
        assert_eq!(video_id_from_key("uploads/big-buck-bunny.mov"), "big-buck-bunny");
        assert_eq!(video_id_from_key(".hidden.mp4"), "hidden");
        assert_eq!(video_id_from_key("a/é b.mp4"), "--b");
        assert_eq!(video_id_from_key("noext"), "noext");
        check_video_id(&video_id_from_key(&"x".repeat(300))).unwrap();
    }
}
