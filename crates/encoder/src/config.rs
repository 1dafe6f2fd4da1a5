//! The worker's settings: flags with environment-variable fallbacks, validated once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use encoding_common::format::parse_formats;
use encoding_common::{Format, S3Uri};

/// Default lease on a received message, in seconds.
pub const DEFAULT_VISIBILITY_TIMEOUT_SECONDS: u32 = 120;
/// Default long-poll wait, in seconds.
pub const DEFAULT_RECEIVE_WAIT_SECONDS: u32 = 20;
/// SQS's longest visibility timeout, and the longest a message can stay in flight in all.
pub const SQS_MAX_VISIBILITY_SECONDS: u32 = 43_200;

/// Worker flags; each falls back to the environment variable of the contract.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The queue to take one message from.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    /// Where renditions go when a message has no "output" (s3://bucket/prefix).
    #[arg(long, env = "OUTPUT_URI")]
    pub output_uri: Option<String>,
    /// Base URL of the result analyzer; unset means no reports (a warning is logged).
    #[arg(long, env = "ANALYZER_URL")]
    pub analyzer_url: Option<String>,
    /// Bearer token for the analyzer's write routes.
    #[arg(long, env = "ANALYZER_TOKEN", hide_env_values = true)]
    pub analyzer_token: Option<String>,
    /// Lease taken on the message at receive, renewed about every third of it while working.
    #[arg(long, env = "VISIBILITY_TIMEOUT_SECONDS", default_value_t = DEFAULT_VISIBILITY_TIMEOUT_SECONDS)]
    pub visibility_timeout_seconds: u32,
    /// Long-poll wait; no message by then means the run ends with exit code 0.
    #[arg(long, env = "RECEIVE_WAIT_SECONDS", default_value_t = DEFAULT_RECEIVE_WAIT_SECONDS)]
    pub receive_wait_seconds: u32,
    /// Scratch space for the download and the outputs (default: the system temp directory).
    #[arg(long, env = "WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// The SQS queue that gets one completion notice per request (processed, duplicate, rejected,
    /// or failed on its last delivery); unset or empty: no notices.
    #[arg(long, env = "RESULT_QUEUE_URL")]
    pub result_queue_url: Option<String>,
    /// The output formats of a request that names none: a comma-separated list of `mp4` (one
    /// MP4 file per quality), `hls` and `dash` (one set of streaming media, with the manifests).
    #[arg(long, env = "FORMATS", default_value = "mp4")]
    pub formats: String,
    /// Split a request whose source lasts at least twice this many seconds into chunks of about
    /// this length, encoded by one Job each and then stitched; 0 turns splitting off.
    #[arg(long, env = "SPLIT_SECONDS", default_value_t = DEFAULT_SPLIT_SECONDS)]
    pub split_seconds: f64,
}

/// The default chunk length: a one-hour source in 30 chunks.
pub const DEFAULT_SPLIT_SECONDS: f64 = 120.0;
/// The shortest chunk asked for: one 2 s GOP.
const MIN_SPLIT_SECONDS: f64 = 2.0;

/// Validated worker settings.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The queue URL.
    pub queue_url: String,
    /// Default output location for messages without one.
    pub default_output: Option<S3Uri>,
    /// The analyzer's base URL, without a trailing `/`.
    pub analyzer_url: Option<String>,
    /// Bearer token for the analyzer; never logged.
    pub analyzer_token: Option<String>,
    /// The lease on a received message.
    pub visibility_timeout: Duration,
    /// The long-poll wait.
    pub receive_wait_seconds: i32,
    /// Scratch space.
    pub work_dir: PathBuf,
    /// This run's host (pod) name, for reports.
    pub host: String,
    /// The results queue for completion notices, if any.
    pub result_queue_url: Option<String>,
    /// The formats of a request that names none.
    pub formats: Vec<Format>,
    /// The chunk length of a split request, seconds; 0: never split.
    pub split_seconds: f64,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("queue_url", &self.queue_url)
            .field("default_output", &self.default_output.as_ref().map(ToString::to_string))
            .field("analyzer_url", &self.analyzer_url)
            .field("analyzer_token", &self.analyzer_token.as_ref().map(|_| "<set>"))
            .field("visibility_timeout", &self.visibility_timeout)
            .field("receive_wait_seconds", &self.receive_wait_seconds)
            .field("work_dir", &self.work_dir)
            .field("host", &self.host)
            .field("result_queue_url", &self.result_queue_url)
            .field("formats", &self.formats)
            .field("split_seconds", &self.split_seconds)
            .finish()
    }
}

impl WorkerConfig {
    /// Validates the flags.
    ///
    /// # Errors
    ///
    /// When `QUEUE_URL` is missing, `OUTPUT_URI` or `ANALYZER_URL` is malformed, or a number is out
    /// of SQS's range.
    pub fn from_args(args: WorkerArgs) -> anyhow::Result<Self> {
        let queue_url = match args.queue_url.filter(|q| !q.trim().is_empty()) {
            Some(q) => q,
            None => bail!("QUEUE_URL is required (the queue to take a message from)"),
        };
        if !(queue_url.starts_with("http://") || queue_url.starts_with("https://")) {
            bail!("QUEUE_URL must be an http(s) URL, got {queue_url:?}");
        }
        let result_queue_url = args.result_queue_url.filter(|q| !q.trim().is_empty());
        if let Some(q) = &result_queue_url
            && !(q.starts_with("http://") || q.starts_with("https://"))
        {
            bail!("RESULT_QUEUE_URL must be an http(s) URL, got {q:?}");
        }
        let default_output = args
            .output_uri
            .filter(|o| !o.is_empty())
            .map(|o| S3Uri::parse("OUTPUT_URI", &o, false))
            .transpose()
            .context("OUTPUT_URI is invalid")?;
        let analyzer_url = args
            .analyzer_url
            .filter(|u| !u.is_empty())
            .map(|u| {
                let parsed = reqwest::Url::parse(&u).with_context(|| format!("ANALYZER_URL {u:?} is not a URL"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("ANALYZER_URL must be http(s), got {u:?}");
                }
                Ok(u.trim_end_matches('/').to_owned())
            })
            .transpose()?;
        let vt = args.visibility_timeout_seconds;
        if !(1..=SQS_MAX_VISIBILITY_SECONDS).contains(&vt) {
            bail!("VISIBILITY_TIMEOUT_SECONDS must be 1 to {SQS_MAX_VISIBILITY_SECONDS}, got {vt}");
        }
        if args.receive_wait_seconds > 20 {
            bail!(
                "RECEIVE_WAIT_SECONDS must be 0 to 20 (SQS's longest long poll), got {}",
                args.receive_wait_seconds
            );
        }
        let names: Vec<&str> = args.formats.split(',').filter(|f| !f.trim().is_empty()).collect();
        let formats = parse_formats(&names).with_context(|| format!("FORMATS {:?} is invalid", args.formats))?;
        let split = args.split_seconds;
        if !(split == 0.0 || (split.is_finite() && split >= MIN_SPLIT_SECONDS)) {
            bail!("SPLIT_SECONDS must be 0 (never split) or at least {MIN_SPLIT_SECONDS}, got {split}");
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        Ok(Self {
            queue_url,
            default_output,
            analyzer_url,
            analyzer_token: args.analyzer_token.filter(|t| !t.is_empty()),
            visibility_timeout: std::time::Duration::from_secs(u64::from(vt)),
            receive_wait_seconds: args.receive_wait_seconds as i32,
            work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
            host,
            result_queue_url,
            formats,
            split_seconds: split,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> WorkerArgs {
        WorkerArgs {
            queue_url: Some("http://127.0.0.1:5000/123456789012/q".into()),
            output_uri: Some("s3://out-b/renditions".into()),
            analyzer_url: Some("http://127.0.0.1:8080/".into()),
            analyzer_token: Some("secret".into()),
            visibility_timeout_seconds: 120,
            receive_wait_seconds: 20,
            work_dir: None,
            result_queue_url: None,
            formats: "mp4".into(),
            split_seconds: DEFAULT_SPLIT_SECONDS,
        }
    }

    #[test]
    fn valid_settings_are_accepted_and_normalised() {
        let c = WorkerConfig::from_args(args()).unwrap();
        assert_eq!(c.analyzer_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(c.default_output.unwrap().to_string(), "s3://out-b/renditions");
        assert_eq!(c.visibility_timeout, Duration::from_secs(120));
        assert_eq!(c.formats, [Format::Mp4]);
        let c = WorkerConfig::from_args(WorkerArgs {
            formats: " hls, dash ".into(),
            ..args()
        })
        .unwrap();
        assert_eq!(c.formats, [Format::Hls, Format::Dash]);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = WorkerConfig::from_args(args()).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<set>"));
    }

    #[test]
    fn each_invalid_setting_is_a_configuration_error_naming_it() {
        let cases: Vec<(WorkerArgs, &str)> = vec![
            (
                WorkerArgs {
                    queue_url: None,
                    ..args()
                },
                "QUEUE_URL is required",
            ),
            (
                WorkerArgs {
                    queue_url: Some("q".into()),
                    ..args()
                },
                "QUEUE_URL must be",
            ),
            (
                WorkerArgs {
                    output_uri: Some("out".into()),
                    ..args()
                },
                "OUTPUT_URI",
            ),
            (
                WorkerArgs {
                    analyzer_url: Some("not a url".into()),
                    ..args()
                },
                "ANALYZER_URL",
            ),
            (
                WorkerArgs {
                    visibility_timeout_seconds: 0,
                    ..args()
                },
                "VISIBILITY_TIMEOUT_SECONDS",
            ),
            (
                WorkerArgs {
                    visibility_timeout_seconds: 43_201,
                    ..args()
                },
                "VISIBILITY_TIMEOUT_SECONDS",
            ),
            (
                WorkerArgs {
                    receive_wait_seconds: 21,
                    ..args()
                },
                "RECEIVE_WAIT_SECONDS",
            ),
            (
                WorkerArgs {
                    result_queue_url: Some("results".into()),
                    ..args()
                },
                "RESULT_QUEUE_URL must be",
            ),
            (
                WorkerArgs {
                    formats: "hls,webm".into(),
                    ..args()
                },
                "FORMATS \"hls,webm\" is invalid: unknown format \"webm\"",
            ),
            (
                WorkerArgs {
                    formats: "mp4,mp4".into(),
                    ..args()
                },
                "repeats mp4",
            ),
            (
                WorkerArgs {
                    formats: " ".into(),
                    ..args()
                },
                "must not be empty",
            ),
            (
                WorkerArgs {
                    split_seconds: 1.0,
                    ..args()
                },
                "SPLIT_SECONDS must be 0 (never split) or at least 2, got 1",
            ),
            (
                WorkerArgs {
                    split_seconds: -4.0,
                    ..args()
                },
                "SPLIT_SECONDS must be 0",
            ),
            (
                WorkerArgs {
                    split_seconds: f64::NAN,
                    ..args()
                },
                "SPLIT_SECONDS must be 0",
            ),
        ];
        for (a, expect) in cases {
            let err = format!("{:#}", WorkerConfig::from_args(a).unwrap_err());
            assert!(err.contains(expect), "{err} should mention {expect}");
        }
    }
}
