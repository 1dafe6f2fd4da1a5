//! What a person watching sees: progress bars on a terminal, plain log lines elsewhere.
//!
//! Bars are drawn on stderr, and only when stderr is a terminal: in a Kubernetes Job, a CI log or a
//! pipe, the same progress is reported as `info` log lines at most every few seconds, which read
//! well in `kubectl logs`. Log lines written while bars are shown go through [`Ui::log_writer`],
//! which lifts the bars for the line and draws them again below it.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain (non-terminal) progress report is logged at most.
const PLAIN_REPORT_EVERY: Duration = Duration::from_secs(5);

/// The progress display of one run.
#[derive(Debug, Clone)]
pub struct Ui {
    /// The bars, when stderr is a terminal; `None` for plain log lines.
    bars: Option<MultiProgress>,
}

impl Ui {
    /// Bars when stderr is a terminal, plain log lines otherwise.
    pub fn for_stderr() -> Self {
        if io::stderr().is_terminal() {
            Self::bars()
        } else {
            Self::plain()
        }
    }

    /// Plain log lines, never bars.
    pub fn plain() -> Self {
        Self { bars: None }
    }

    fn bars() -> Self {
        Self {
            bars: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Whether progress is shown as bars (stderr is a terminal).
    pub fn has_bars(&self) -> bool {
        self.bars.is_some()
    }

    /// A writer for the log subscriber: while bars are shown, each line is written above them.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter(self.bars.clone())
    }

    /// A progress report of `total` units (`bytes` or messages) for `what` (`upload`, `send`).
    pub fn progress(&self, what: &'static str, total: u64, bytes: bool) -> Progress {
        let bar = self.bars.as_ref().map(|multi| {
            let template = if bytes {
                "{prefix:>7} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}"
            } else {
                "{prefix:>7} [{bar:30}] {pos}/{len} {wide_msg}"
            };
            let style = ProgressStyle::with_template(template)
                .expect("the templates are valid")
                .progress_chars("=> ");
            let bar = multi.add(ProgressBar::new(total).with_style(style).with_prefix(what));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            what,
            total,
            bytes,
            plain: Mutex::new(PlainState {
                done: 0,
                last: Instant::now(),
            }),
        }
    }
}

/// One progress report: a bar, or periodic log lines.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    bytes: bool,
    plain: Mutex<PlainState>,
}

#[derive(Debug)]
struct PlainState {
    done: u64,
    last: Instant,
}

impl Progress {
    /// Reports `n` more units done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let mut state = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        state.done += n;
        if state.last.elapsed() >= PLAIN_REPORT_EVERY && state.done < self.total {
            state.last = Instant::now();
            let percent = state.done * 100 / self.total.max(1);
            if self.bytes {
                tracing::info!(
                    what = self.what,
                    bytes = state.done,
                    total_bytes = self.total,
                    percent,
                    "progress"
                );
            } else {
                tracing::info!(
                    what = self.what,
                    done = state.done,
                    total = self.total,
                    percent,
                    "progress"
                );
            }
        }
    }

    /// Shows `message` beside the bar (the file being uploaded); nothing in plain mode.
    pub fn set_message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    /// Removes the bar (the outcome is logged by the caller).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The log subscriber's writer: see [`Ui::log_writer`].
#[derive(Debug, Clone)]
pub struct LogWriter(Option<MultiProgress>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine(self.0.clone())
    }
}

/// One log line on its way to stderr.
#[derive(Debug)]
pub struct LogLine(Option<MultiProgress>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.0 {
            Some(bars) => bars.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_draws_no_bar_and_counts_quietly() {
        let ui = Ui::plain();
        assert!(!ui.has_bars());
        let p = ui.progress("send", 3, false);
        assert!(p.bar.is_none());
        p.inc(2);
        p.inc(1);
        assert_eq!(p.plain.lock().unwrap().done, 3);
        p.finish();
    }

    #[test]
    fn bars_are_drawn_to_a_hidden_target_without_failing() {
        let ui = Ui {
            bars: Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden())),
        };
        let p = ui.progress("upload", 100, true);
        p.set_message("a.mp4".into());
        p.inc(50);
        assert_eq!(p.bar.as_ref().unwrap().position(), 50);
        let line = ui.log_writer();
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&line);
        w.write_all(b"").unwrap();
    }
}
