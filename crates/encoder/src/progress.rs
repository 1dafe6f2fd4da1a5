//! How far a run is, for the `progress` reports the analyzer shows as a live bar.
//!
//! The work sets the stage (downloading, splitting, encoding, stitching, uploading) and the transcode its percent and
//! frames per second through a [`Progress`] handle; the lifecycle reads the latest [`Snapshot`]
//! every few seconds and reports it when it changed. Setting is a cheap, non-blocking store into a
//! watch channel, safe from the blocking transcode thread.

use tokio::sync::watch;

/// What a run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// Before the work began (nothing to report yet).
    #[default]
    Starting,
    /// Downloading the source.
    Downloading,
    /// Planning the chunks of a split request and sending their messages.
    Splitting,
    /// Transcoding (the whole source, or one chunk of it).
    Encoding,
    /// Joining a split request's chunks.
    Stitching,
    /// Storing the renditions.
    Uploading,
}

impl Stage {
    /// The name a `progress` event gives it (`encoding_common::event::STAGES`), if reported.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::Starting => None,
            Self::Downloading => Some("downloading"),
            Self::Splitting => Some("splitting"),
            Self::Encoding => Some("encoding"),
            Self::Stitching => Some("stitching"),
            Self::Uploading => Some("uploading"),
        }
    }
}

/// The latest progress of a run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Snapshot {
    /// The stage.
    pub stage: Stage,
    /// How far the stage is, 0 to 100, when known.
    pub percent: Option<f64>,
    /// Decoded frames per second, while encoding.
    pub fps: Option<f64>,
}

/// The handle the work updates.
#[derive(Debug, Clone)]
pub struct Progress(watch::Sender<Snapshot>);

impl Progress {
    /// A handle and the receiver the lifecycle reads.
    pub fn channel() -> (Self, watch::Receiver<Snapshot>) {
        let (tx, rx) = watch::channel(Snapshot::default());
        (Self(tx), rx)
    }

    /// A handle nobody reads (for `encoder transcode` and tests).
    pub fn unread() -> Self {
        Self::channel().0
    }

    /// Enters `stage`, with nothing known of how far it is.
    pub fn stage(&self, stage: Stage) {
        self.0.send_replace(Snapshot {
            stage,
            percent: None,
            fps: None,
        });
    }

    /// While encoding: `percent` done at `fps` decoded frames per second.
    pub fn encoding(&self, percent: Option<f64>, fps: f64) {
        self.0.send_replace(Snapshot {
            stage: Stage::Encoding,
            percent: percent.map(|p| (p.clamp(0.0, 100.0) * 10.0).round() / 10.0),
            fps: Some((fps * 10.0).round() / 10.0),
        });
    }
}
