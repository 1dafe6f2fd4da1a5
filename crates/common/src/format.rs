//! The output formats a request may ask for (`formats`): plain MP4 files, or an adaptive stream.
//!
//! - `mp4`: `{output}/{video_id}/{quality}.mp4`, one file per rendition (the contract's output).
//! - `hls`: `{output}/{video_id}/master.m3u8`, HLS over CMAF (fragmented MP4) media.
//! - `dash`: `{output}/{video_id}/manifest.mpd`, static DASH over the same media.
//!
//! `hls` and `dash` share one set of media: asking for both costs one copy.

use std::fmt;
use std::str::FromStr;

/// One output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// One MP4 file per rendition.
    Mp4,
    /// HLS (`master.m3u8`).
    Hls,
    /// DASH (`manifest.mpd`).
    Dash,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [Self::Mp4, Self::Hls, Self::Dash];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Hls => "hls",
            Self::Dash => "dash",
        }
    }

    /// Whether this is a streaming format (packaged from the CMAF media).
    pub fn is_streaming(self) -> bool {
        matches!(self, Self::Hls | Self::Dash)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of `mp4`, `hls`, `dash`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}: expected one of mp4, hls, dash")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// Why a list of formats is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatsError {
    /// A name that is not a format.
    #[error(transparent)]
    Unknown(#[from] UnknownFormat),
    /// An empty list.
    #[error("\"formats\" must not be empty")]
    Empty,
    /// A format named twice.
    #[error("\"formats\" repeats {0}")]
    Repeated(Format),
}

/// Parses a list of format names: non-empty, known, without repeats.
///
/// # Errors
///
/// [`FormatsError`] naming the first problem.
pub fn parse_formats<S: AsRef<str>>(names: &[S]) -> Result<Vec<Format>, FormatsError> {
    if names.is_empty() {
        return Err(FormatsError::Empty);
    }
    let mut formats = Vec::with_capacity(names.len());
    for n in names {
        let f: Format = n.as_ref().trim().parse()?;
        if formats.contains(&f) {
            return Err(FormatsError::Repeated(f));
        }
        formats.push(f);
    }
    Ok(formats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_known_names_listed_once() {
        assert_eq!(parse_formats(&["hls", "dash"]).unwrap(), [Format::Hls, Format::Dash]);
        assert_eq!(parse_formats(&["mp4"]).unwrap(), [Format::Mp4]);
        assert_eq!(parse_formats::<&str>(&[]).unwrap_err(), FormatsError::Empty);
        assert_eq!(
            parse_formats(&["hls", "hls"]).unwrap_err(),
            FormatsError::Repeated(Format::Hls)
        );
        let e = parse_formats(&["HLS"]).unwrap_err();
        assert!(e.to_string().contains("unknown format \"HLS\""), "{e}");
        assert!(Format::Dash.is_streaming() && !Format::Mp4.is_streaming());
    }
}
