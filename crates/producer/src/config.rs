//! The command line of `producer`: one typed configuration, flags with environment fallbacks.
//!
//! Three ways to say what to send, exactly one per run:
//!
//! - `--source s3://bucket/key` (or `SOURCE`): a video already in S3;
//! - `--from-file FILE`: requests written out in full, one JSON object per line;
//! - `--upload FILE...` with `--input-uri s3://bucket/prefix` (or `INPUT_URI`): local videos,
//!   uploaded first.
//!
//! A flag typed on the command line that does not apply to the chosen way is an error (exit 2):
//! `--from-file reqs.jsonl --quality 720p` would otherwise silently send something else than asked.
//! An environment variable that does not apply is ignored instead, because environments are shared:
//! the Kubernetes Job sets `SOURCE`, `QUALITIES` and `COUNT` for every run, and
//! `eval "$(scripts/aws/create-buckets.sh)"` leaves `INPUT_URI` and `OUTPUT_URI` in a shell.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use encoding_common::{Format, Quality};

/// Command line of `producer`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "producer",
    version,
    about = "Puts encode requests on the SQS queue.",
    long_about = "Puts encode requests on the SQS queue: for a video already in S3 (--source), for \
                  requests written in a JSON Lines file (--from-file), or for local videos it uploads \
                  first (--upload). Everything is validated before anything is sent.",
    after_help = "Exit status: 0 every request sent; 1 a request could not be sent, an upload failed or the \
                  input is invalid; 2 a usage error; 130 or 143 stopped by SIGINT or SIGTERM."
)]
pub struct Config {
    /// The queue to send to; a URL ending in `.fifo` is a FIFO queue. Not needed with --dry-run.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,

    /// The video to encode, already in S3 (s3://bucket/key).
    #[arg(long, env = "SOURCE", help_heading = "What to send (one of)")]
    pub source: Option<String>,

    /// Send the requests written in FILE, one JSON object per line in the queue's message format
    /// (`-` reads standard input). Blank lines and lines starting with `#` are skipped.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "upload",
        help_heading = "What to send (one of)"
    )]
    pub from_file: Option<PathBuf>,

    /// Upload these local videos under --input-uri, then send one request per video (or per video
    /// and quality).
    #[arg(long, value_name = "FILE", num_args = 1.., help_heading = "What to send (one of)")]
    pub upload: Vec<PathBuf>,

    /// Where --upload puts the videos (s3://bucket/prefix); each keeps its file name.
    #[arg(long, env = "INPUT_URI", value_name = "S3_URI")]
    pub input_uri: Option<String>,

    /// A rendition to ask for; repeat (or comma-separate, as in QUALITIES) for several.
    #[arg(long = "quality", env = "QUALITIES", value_delimiter = ',', value_parser = parse_quality)]
    pub qualities: Vec<Quality>,

    /// An output format to ask for: `mp4` (one file per quality), `hls`, `dash` (one stream of
    /// every quality: implies --one-message); repeat or comma-separate for several. Default: the
    /// encoder's FORMATS.
    #[arg(long = "format", value_delimiter = ',', value_parser = parse_format)]
    pub formats: Vec<Format>,

    /// Names the output folder; default: the source's file name, made safe. With --upload, only
    /// for a single file.
    #[arg(long, env = "VIDEO_ID")]
    pub video_id: Option<String>,

    /// Where the renditions go (s3://bucket/prefix); default: the encoder's OUTPUT_URI.
    #[arg(long, env = "OUTPUT_URI", value_name = "S3_URI")]
    pub output: Option<String>,

    /// Send N copies, with video ids suffixed -1 to -N (for demos and load tests).
    #[arg(long, env = "COUNT", default_value_t = 1)]
    pub count: u32,

    /// Put all qualities in one request (decoded once) instead of one message per quality.
    #[arg(long, env = "ONE_MESSAGE", value_parser = BoolishValueParser::new())]
    pub one_message: bool,

    /// With --from-file: report invalid lines and send the valid ones, instead of sending nothing.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Print the messages (one JSON body per line) instead of sending them; uploads nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON line per sent message on stdout: request_id, message_id, video_id.
    #[arg(long)]
    pub json: bool,

    /// After sending, wait for the outcome of every request sent (from the results queue, or from
    /// the analyzer without one); exit 0 only when all were processed.
    #[arg(long, env = "WAIT", value_parser = BoolishValueParser::new(), help_heading = "Waiting")]
    pub wait: bool,

    /// The results queue the encoder sends one completion notice per request to.
    #[arg(long, env = "RESULT_QUEUE_URL", help_heading = "Waiting")]
    pub result_queue_url: Option<String>,

    /// The result analyzer, asked for the outcomes when no results queue is set.
    #[arg(long, env = "ANALYZER_URL", help_heading = "Waiting")]
    pub analyzer_url: Option<String>,

    /// Give up waiting after this many seconds (0: no limit); the requests still pending are
    /// named and the exit status is 1.
    #[arg(long, env = "WAIT_TIMEOUT_SECONDS", default_value_t = 0, help_heading = "Waiting")]
    pub wait_timeout_seconds: u64,
}

/// What a run sends, as chosen by the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Requests for a video already in S3 (`--source`).
    Source(&'a str),
    /// Requests read from a JSON Lines file (`--from-file`).
    File(&'a Path),
    /// Local videos to upload, then request (`--upload`).
    Upload(&'a [PathBuf]),
}

/// Flags that only `--source` and `--upload` use: (clap id, flag).
const TEMPLATE_FLAGS: [(&str, &str); 6] = [
    ("qualities", "--quality"),
    ("formats", "--format"),
    ("video_id", "--video-id"),
    ("output", "--output"),
    ("count", "--count"),
    ("one_message", "--one-message"),
];

impl Config {
    /// Parses the process's command line and environment, exiting with a usage message (status 2)
    /// when they do not fit together.
    pub fn load() -> Self {
        Self::try_load_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first) with environment fallbacks, and checks that the
    /// flags fit together (see the module docs).
    ///
    /// # Errors
    ///
    /// A clap error (usage, conflict, missing value) ready to print or `exit()`.
    pub fn try_load_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let config = Self::from_arg_matches(&matches)?;
        config
            .check(|id| typed(&matches, id))
            .map_err(|(kind, message)| command.error(kind, message))?;
        Ok(config)
    }

    /// What this run sends. Call on a checked configuration (from [`Config::try_load_from`]).
    pub fn mode(&self) -> Mode<'_> {
        if let Some(path) = &self.from_file {
            Mode::File(path)
        } else if !self.upload.is_empty() {
            Mode::Upload(&self.upload)
        } else {
            Mode::Source(self.source.as_deref().unwrap_or_default())
        }
    }

    /// The results queue, if set (an empty value is unset, as the Job's ConfigMap may give it).
    pub fn result_queue_url(&self) -> Option<&str> {
        self.result_queue_url.as_deref().filter(|u| !u.trim().is_empty())
    }

    /// The analyzer's base URL, if set, without a trailing `/`.
    pub fn analyzer_url(&self) -> Option<&str> {
        self.analyzer_url
            .as_deref()
            .map(|u| u.trim_end_matches('/'))
            .filter(|u| !u.trim().is_empty())
    }

    /// Whether the queue is a FIFO queue (its name ends in `.fifo`).
    pub fn fifo(&self) -> bool {
        self.queue_url.as_deref().is_some_and(is_fifo_queue)
    }

    /// The cross-flag rules; `typed(id)` says whether a flag was given on the command line.
    fn check(&self, typed: impl Fn(&str) -> bool) -> Result<(), (ErrorKind, String)> {
        let conflict = |message: String| Err((ErrorKind::ArgumentConflict, message));
        let missing = |message: &str| Err((ErrorKind::MissingRequiredArgument, message.to_owned()));
        if self.queue_url.as_deref().unwrap_or_default().is_empty() && !self.dry_run {
            return missing("--queue-url (or QUEUE_URL) is required, except with --dry-run");
        }
        if self.wait {
            if self.dry_run {
                return conflict("--wait waits for requests sent; --dry-run sends none".into());
            }
            if self.result_queue_url().is_none() && self.analyzer_url().is_none() {
                return missing(
                    "--wait needs where the outcomes come from: --result-queue-url (or RESULT_QUEUE_URL), \
                     or --analyzer-url (or ANALYZER_URL)",
                );
            }
        }
        match self.mode() {
            Mode::File(_) => {
                let other = [("source", "--source"), ("input_uri", "--input-uri")];
                if let Some((_, flag)) = TEMPLATE_FLAGS.iter().chain(&other).find(|(id, _)| typed(id)) {
                    return conflict(format!(
                        "{flag} cannot be used with --from-file: each line of the file is a whole request"
                    ));
                }
            }
            Mode::Upload(files) => {
                if typed("source") {
                    return conflict(
                        "--source names a video already in S3; --upload uploads local files: give one of them".into(),
                    );
                }
                if typed("skip_invalid") {
                    return conflict("--skip-invalid goes with --from-file".into());
                }
                if self.input_uri.as_deref().unwrap_or_default().is_empty() {
                    return missing("--upload needs --input-uri s3://bucket/prefix (or INPUT_URI)");
                }
                if files.len() > 1 && typed("video_id") {
                    return conflict(
                        "--video-id names one video: with several --upload files, each is named after its file".into(),
                    );
                }
                if self.qualities.is_empty() {
                    return missing("--quality (or QUALITIES) is required");
                }
            }
            Mode::Source(source) => {
                if source.is_empty() {
                    return missing(
                        "say what to send: --source s3://bucket/key (or SOURCE), --from-file FILE, or --upload FILE...",
                    );
                }
                if typed("skip_invalid") {
                    return conflict("--skip-invalid goes with --from-file".into());
                }
                if typed("input_uri") {
                    return conflict("--input-uri goes with --upload".into());
                }
                if self.qualities.is_empty() {
                    return missing("--quality (or QUALITIES) is required");
                }
            }
        }
        Ok(())
    }
}

/// Whether a queue URL names a FIFO queue.
pub fn is_fifo_queue(queue_url: &str) -> bool {
    queue_url.trim_end_matches('/').ends_with(".fifo")
}

fn typed(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.trim()
        .parse()
        .map_err(|e: encoding_common::format::UnknownFormat| e.to_string())
}

fn parse_quality(s: &str) -> Result<Quality, String> {
    s.trim()
        .parse()
        .map_err(|e: encoding_common::RequestError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Config, clap::Error> {
        let mut full = vec!["producer", "--queue-url", "http://sqs/q"];
        full.extend_from_slice(args);
        Config::try_load_from(full)
    }

    fn kind(args: &[&str]) -> ErrorKind {
        load(args).unwrap_err().kind()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn waiting_needs_a_source_of_outcomes_and_something_sent() {
        let src = ["--source", "s3://in-b/a.mp4", "--quality", "720p", "--wait"];
        assert_eq!(kind(&src), ErrorKind::MissingRequiredArgument);
        let mut with_queue = src.to_vec();
        with_queue.extend(["--result-queue-url", "http://sqs/results"]);
        assert_eq!(
            load(&with_queue).unwrap().result_queue_url(),
            Some("http://sqs/results")
        );
        let mut with_analyzer = src.to_vec();
        with_analyzer.extend(["--analyzer-url", "http://analyzer:8080/"]);
        assert_eq!(
            load(&with_analyzer).unwrap().analyzer_url(),
            Some("http://analyzer:8080")
        );
        let mut dry = with_queue.clone();
        dry.push("--dry-run");
        assert_eq!(kind(&dry), ErrorKind::ArgumentConflict);
        let mut empty = src.to_vec();
        empty.extend(["--result-queue-url", ""]);
        assert_eq!(
            kind(&empty),
            ErrorKind::MissingRequiredArgument,
            "an empty value is unset"
        );
    }

    #[test]
    fn each_way_of_sending_is_chosen_by_its_flag() {
        let c = load(&["--source", "s3://in-b/a.mp4", "--quality", "720p"]).unwrap();
        assert_eq!(c.mode(), Mode::Source("s3://in-b/a.mp4"));
        let c = load(&["--from-file", "reqs.jsonl"]).unwrap();
        assert_eq!(c.mode(), Mode::File(Path::new("reqs.jsonl")));
        let c = load(&[
            "--upload",
            "a.mp4",
            "b.mov",
            "--input-uri",
            "s3://in-b/up",
            "--quality",
            "480p",
        ])
        .unwrap();
        assert_eq!(
            c.mode(),
            Mode::Upload(&[PathBuf::from("a.mp4"), PathBuf::from("b.mov")])
        );
    }

    #[test]
    fn flags_that_do_not_apply_to_a_file_are_refused() {
        for extra in [
            &["--quality", "720p"][..],
            &["--video-id", "v"],
            &["--count", "2"],
            &["--one-message"],
            &["--output", "s3://out-b"],
            &["--source", "s3://in-b/a.mp4"],
            &["--input-uri", "s3://in-b"],
        ] {
            let mut args = vec!["--from-file", "reqs.jsonl"];
            args.extend_from_slice(extra);
            assert_eq!(kind(&args), ErrorKind::ArgumentConflict, "{extra:?}");
        }
        assert_eq!(
            kind(&["--from-file", "r", "--upload", "a.mp4"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            kind(&["--source", "s3://in-b/a.mp4", "--quality", "720p", "--skip-invalid"]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn uploads_need_an_input_uri_and_qualities_and_name_one_video_at_most() {
        assert_eq!(
            kind(&["--upload", "a.mp4", "--quality", "720p"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            kind(&["--upload", "a.mp4", "--input-uri", "s3://in-b"]),
            ErrorKind::MissingRequiredArgument
        );
        let two = [
            "--upload",
            "a.mp4",
            "b.mp4",
            "--input-uri",
            "s3://in-b",
            "--quality",
            "720p",
        ];
        load(&two).unwrap();
        let mut named = two.to_vec();
        named.extend(["--video-id", "v"]);
        assert_eq!(kind(&named), ErrorKind::ArgumentConflict);
        assert_eq!(
            kind(&[
                "--upload",
                "a.mp4",
                "--input-uri",
                "s3://in-b",
                "--quality",
                "720p",
                "--source",
                "s3://in-b/x"
            ]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn something_to_send_and_a_queue_are_required() {
        assert_eq!(kind(&["--quality", "720p"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            kind(&["--source", "s3://in-b/a.mp4"]),
            ErrorKind::MissingRequiredArgument
        );
        let no_queue = Config::try_load_from(["producer", "--source", "s3://in-b/a.mp4", "--quality", "720p"]);
        assert_eq!(no_queue.unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        Config::try_load_from([
            "producer",
            "--source",
            "s3://in-b/a.mp4",
            "--quality",
            "720p",
            "--dry-run",
        ])
        .unwrap();
    }

    #[test]
    fn qualities_are_checked_and_comma_separated_lists_accepted() {
        assert_eq!(
            kind(&["--source", "s3://in-b/a.mp4", "--quality", "999p"]),
            ErrorKind::ValueValidation
        );
        let c = load(&["--source", "s3://in-b/a.mp4", "--quality", "480p, 4k"]).unwrap();
        assert_eq!(c.qualities, [Quality::P480, Quality::P2160]);
    }

    #[test]
    fn fifo_queues_are_recognised_by_name() {
        assert!(is_fifo_queue("https://sqs.eu-west-1.amazonaws.com/1/requests.fifo"));
        assert!(!is_fifo_queue("https://sqs.eu-west-1.amazonaws.com/1/requests"));
        assert!(!is_fifo_queue("https://sqs.eu-west-1.amazonaws.com/1/fifo"));
    }
}
