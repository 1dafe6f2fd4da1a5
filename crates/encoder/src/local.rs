//! `encoder transcode` and `encoder probe`: the worker's media path on local files, without AWS.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use encoding_common::Quality;
use transcode::{CancelHandle, RenditionSpec, TranscodeOptions};

/// Flags of `encoder transcode`.
#[derive(Debug, Clone, Args)]
pub struct TranscodeArgs {
    /// The video file to transcode.
    #[arg(long)]
    pub input: PathBuf,
    /// A rendition to make (360p, 480p, 720p, 1080p, 1440p, 2160p or 4k); repeat for several,
    /// all from one decode.
    #[arg(long = "quality", required = true, value_parser = parse_quality)]
    pub qualities: Vec<Quality>,
    /// Where to write `{quality}.mp4`.
    #[arg(long)]
    pub output_dir: PathBuf,
    /// The x264 preset (speed against size).
    #[arg(long, env = "X264_PRESET", default_value = transcode::ladder::DEFAULT_PRESET)]
    pub preset: String,
}

/// Flags of `encoder probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// The media file to describe.
    pub input: PathBuf,
}

fn parse_quality(s: &str) -> Result<Quality, String> {
    s.parse().map_err(|e: encoding_common::RequestError| e.to_string())
}

/// Exit code of `transcode` when the input is rejected (not a usable video).
const EXIT_REJECTED: u8 = 3;

/// Runs `encoder transcode`: prints a JSON report on stdout; exit 0 on success, 3 when the input is
/// rejected (the reason on stderr), 1 on other failures, 130 on Ctrl-C.
pub fn transcode(args: &TranscodeArgs) -> ExitCode {
    let mut qualities = args.qualities.clone();
    qualities.dedup();
    let specs: Vec<RenditionSpec> = qualities
        .iter()
        .map(|q| RenditionSpec {
            name: q.as_str().to_owned(),
            short_side: q.short_side(),
        })
        .collect();
    let cancel = CancelHandle::new();
    {
        let cancel = cancel.clone();
        let _ = ctrlc_on_thread(move || cancel.cancel());
    }
    let options = TranscodeOptions {
        preset: args.preset.clone(),
        ..TranscodeOptions::default()
    };
    let mut last = Instant::now();
    let mut progress = |p: &transcode::Progress| {
        if last.elapsed() >= Duration::from_secs(2) {
            last = Instant::now();
            tracing::info!(
                percent = p.percent().map(|x| x.round()),
                frames = p.frames,
                fps = p.fps.round(),
                "encoding"
            );
        }
    };
    match transcode::transcode(&args.input, &specs, &args.output_dir, &options, &mut progress, &cancel) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("a report serializes")
            );
            ExitCode::SUCCESS
        }
        Err(transcode::TranscodeError::Cancelled) => {
            tracing::warn!("cancelled");
            ExitCode::from(130)
        }
        Err(e) if e.is_rejection() => {
            tracing::error!(input = %args.input.display(), reason = %e, "rejected: not a usable video");
            ExitCode::from(EXIT_REJECTED)
        }
        Err(e) => {
            tracing::error!(input = %args.input.display(), error = %e, "transcode failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs `encoder probe`: prints the file's description as JSON.
pub fn probe(args: &ProbeArgs) -> ExitCode {
    match transcode::probe(&args.input) {
        Ok(info) => {
            println!("{}", serde_json::to_string_pretty(&info).expect("info serializes"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(input = %args.input.display(), reason = %e, "cannot probe");
            ExitCode::from(EXIT_REJECTED)
        }
    }
}

/// Calls `f` once on the first SIGINT or SIGTERM, from a small runtime on its own thread.
fn ctrlc_on_thread(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            if let Ok(mut signals) = encoding_common::shutdown::Signals::install() {
                signals.recv().await;
                f();
            }
        });
    });
    Ok(())
}
