//! Packaging the renditions for streaming: one set of CMAF (fragmented MP4) media, with an HLS
//! master playlist and a DASH MPD over the very same bytes, thumbnails and WebVTT subtitles.
//!
//! [`package()`] takes the MP4 renditions [`transcode()`](crate::transcode()) wrote (they share a
//! 2-second keyframe grid) and remuxes them without re-encoding:
//!
//! ```text
//! {dir}/
//!   master.m3u8            HLS entry point     (written last, with manifest.mpd)
//!   manifest.mpd           DASH entry point
//!   poster.jpg             a representative frame
//!   thumbnails.vtt         seek-bar thumbnails, tiles of stream/{version}/sprite.jpg
//!   stream/{version}/
//!     720p.mp4 480p.mp4 …  one fragmented MP4 per video rendition, a fragment per keyframe
//!     audio.mp4            the audio, once, shared by every rendition
//!     720p.m3u8 audio.m3u8 …  HLS media playlists (byte ranges into the files above)
//!     subtitles-0.vtt, subtitles-0.m3u8 …  text subtitle tracks
//!     sprite.jpg
//! ```
//!
//! The media folder is versioned so that a re-run never changes a file a player may be reading:
//! the new set is written beside the old, and the entry points are replaced last.
//!
//! - [`boxes`]: the byte layout of a fragmented MP4 file.
//! - [`cmaf`]: one track remuxed into fragmented MP4, and what was measured of it.
//! - [`manifest`]: the playlists and the MPD, written from those measures.
//! - [`subtitles`]: text subtitle tracks as WebVTT.
//! - [`thumbnails`]: the poster and the sprite sheet.

pub mod boxes;
pub mod cmaf;
pub mod manifest;
pub mod subtitles;
pub mod thumbnails;

use std::path::{Path, PathBuf};

use crate::error::{Result, TranscodeError};
use cmaf::Kind;
use manifest::{StreamSet, SubtitleTrack};

/// The HLS entry point's name.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// The DASH entry point's name.
pub const MPD: &str = "manifest.mpd";
/// The poster's name.
pub const POSTER: &str = "poster.jpg";
/// The thumbnail track's name.
pub const THUMBNAILS: &str = "thumbnails.vtt";
/// The folder the versioned media folders live in.
pub const STREAM_FOLDER: &str = "stream";

/// Which manifests to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Manifests {
    /// The HLS master playlist and media playlists.
    pub hls: bool,
    /// The DASH MPD.
    pub dash: bool,
}

/// One file of a packaged stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagedFile {
    /// Its path relative to the package's folder, with `/` separators (its key suffix in S3).
    pub name: String,
    /// Its path on disk.
    pub path: PathBuf,
    /// The `Content-Type` to serve it with.
    pub content_type: &'static str,
}

/// What [`package()`] wrote.
#[derive(Debug, Clone)]
pub struct Package {
    /// Media, playlists of single tracks and pictures: to be stored first.
    pub media: Vec<PackagedFile>,
    /// The entry points (`master.m3u8`, `manifest.mpd`) and the thumbnail track: to be stored
    /// last, once everything they name is there.
    pub entry_points: Vec<PackagedFile>,
    /// The stream's tracks and duration, as the manifests describe them.
    pub set: StreamSet,
    /// What the thumbnails are.
    pub thumbnails: thumbnails::Thumbnails,
    /// Subtitle tracks of the source left out, and why.
    pub skipped_subtitles: Vec<subtitles::Skipped>,
}

/// The `Content-Type` a file is served with, by its extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("vtt") => "text/vtt",
        Some("jpg") => "image/jpeg",
        Some("mp4") if name.ends_with("audio.mp4") => "audio/mp4",
        Some("mp4" | "m4s") => "video/mp4",
        _ => "application/octet-stream",
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TranscodeError + '_ {
    move |source| TranscodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn packaged(name: String, path: PathBuf) -> PackagedFile {
    PackagedFile {
        content_type: content_type(&name),
        name,
        path,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PackagedFile> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(PackagedFile {
        name: name.to_owned(),
        path,
        content_type: content_type(name),
    })
}

/// Packages `renditions` (name and MP4 file, in ladder order, each with the same audio) and the
/// text subtitles of `source` into `dir`, the media under `stream/{version}/`.
///
/// # Errors
///
/// When there is no rendition or no manifest is asked for, when a rendition cannot be remuxed
/// or its fragments do not line up with the others', or when a file cannot be written.
pub fn package(
    renditions: &[(String, PathBuf)],
    source: &Path,
    dir: &Path,
    version: &str,
    manifests: Manifests,
) -> Result<Package> {
    if renditions.is_empty() {
        return Err(TranscodeError::Package("no rendition to package".into()));
    }
    if !manifests.hls && !manifests.dash {
        return Err(TranscodeError::Package("no manifest asked for (hls, dash)".into()));
    }
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(TranscodeError::Package(format!(
            "a media version must be letters, digits and '-', got {version:?}"
        )));
    }
    let folder = format!("{STREAM_FOLDER}/{version}");
    let media_dir = dir.join(&folder);
    std::fs::create_dir_all(&media_dir).map_err(io(&media_dir))?;
    let mut media = Vec::new();

    let mut videos = Vec::new();
    for (name, file) in renditions {
        let track_name = format!("{name}.mp4");
        let track = cmaf::write_track(file, Kind::Video, &media_dir.join(&track_name))?;
        media.push(packaged(format!("{folder}/{track_name}"), track.path.clone()));
        videos.push((name.clone(), track));
    }
    check_aligned(&videos)?;
    let has_audio = has_stream(&renditions[0].1, ffmpeg_next::media::Type::Audio)?;
    let audio = if has_audio {
        let track = cmaf::write_track(&renditions[0].1, Kind::Audio, &media_dir.join("audio.mp4"))?;
        media.push(packaged(format!("{folder}/audio.mp4"), track.path.clone()));
        Some(track)
    } else {
        None
    };
    let duration = videos
        .iter()
        .map(|(_, t)| t.duration)
        .chain(audio.iter().map(|a| a.duration))
        .fold(0.0, f64::max);

    let (subs, skipped_subtitles) = subtitles::extract(source, &media_dir)?;
    let mut subtitle_tracks = Vec::new();
    for s in &subs {
        let file = s
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        media.push(packaged(format!("{folder}/{file}"), s.file.clone()));
        subtitle_tracks.push(SubtitleTrack {
            file,
            language: s.language.clone(),
            name: s.name.clone(),
        });
    }

    let set = StreamSet {
        media: format!("{folder}/"),
        videos,
        audio,
        subtitles: subtitle_tracks,
        duration,
    };
    if manifests.hls {
        let tracks = set.videos.iter().map(|(_, t)| t).chain(set.audio.iter());
        for track in tracks {
            let name = manifest::playlist_name(&file_name(&track.path));
            media.push(write(
                dir,
                &format!("{folder}/{name}"),
                &manifest::media_playlist(track),
            )?);
        }
        for s in &set.subtitles {
            let name = manifest::playlist_name(&s.file);
            media.push(write(
                dir,
                &format!("{folder}/{name}"),
                &manifest::subtitle_playlist(s, duration),
            )?);
        }
    }

    let (small, large) = smallest_and_largest(&set, renditions);
    // The poster and the thumbnail track live beside the manifests; the track names the sprite
    // in the versioned folder.
    let thumbs = thumbnails::write(small, large, duration, &media_dir, &format!("{folder}/sprite.jpg"))?;
    let poster = dir.join(POSTER);
    std::fs::rename(media_dir.join(POSTER), &poster).map_err(io(&poster))?;
    media.push(packaged(POSTER.to_owned(), poster));
    media.push(packaged(format!("{folder}/sprite.jpg"), media_dir.join("sprite.jpg")));
    let vtt = dir.join(THUMBNAILS);
    std::fs::rename(media_dir.join(THUMBNAILS), &vtt).map_err(io(&vtt))?;

    let mut entry_points = vec![PackagedFile {
        name: THUMBNAILS.to_owned(),
        path: vtt,
        content_type: content_type(THUMBNAILS),
    }];
    if manifests.hls {
        entry_points.push(write(dir, MASTER_PLAYLIST, &manifest::master_playlist(&set))?);
    }
    if manifests.dash {
        entry_points.push(write(dir, MPD, &manifest::mpd(&set))?);
    }
    Ok(Package {
        media,
        entry_points,
        set,
        thumbnails: thumbs,
        skipped_subtitles,
    })
}

/// Reads the entry points of `package` back with FFmpeg's own HLS and DASH readers, as a player
/// would find them: each must open and show every video rendition, the audio when there is one,
/// and last as long as the media.
///
/// # Errors
///
/// [`TranscodeError::Package`] naming the entry point and what is wrong with it.
pub fn verify(package: &Package) -> Result<()> {
    use crate::error::FfmpegContext;
    let set = &package.set;
    for entry in package
        .entry_points
        .iter()
        .filter(|f| f.name == MASTER_PLAYLIST || f.name == MPD)
    {
        let mut options = ffmpeg_next::Dictionary::new();
        // FFmpeg's readers open only the usual media extensions; subtitles are `.vtt`.
        options.set("allowed_extensions", "ALL");
        let ictx = ffmpeg_next::format::input_with_dictionary(&entry.path, options)
            .ctx(format!("reading back {}", entry.name))?;
        let count = |kind| ictx.streams().filter(|s| s.parameters().medium() == kind).count();
        let (videos, audios) = (
            count(ffmpeg_next::media::Type::Video),
            count(ffmpeg_next::media::Type::Audio),
        );
        let seconds = ictx.duration() as f64 / f64::from(ffmpeg_next::ffi::AV_TIME_BASE);
        let wrong = if videos != set.videos.len() {
            Some(format!("{videos} video streams for {} renditions", set.videos.len()))
        } else if set.audio.is_some() != (audios > 0) {
            Some(format!("{audios} audio streams"))
        } else if seconds > set.duration + 0.5 || seconds < set.duration - slack(&entry.name) {
            Some(format!("it lasts {seconds:.3} s, the media {:.3} s", set.duration))
        } else {
            None
        };
        if let Some(wrong) = wrong {
            return Err(TranscodeError::Package(format!("{} read back: {wrong}", entry.name)));
        }
    }
    Ok(())
}

/// How much shorter than the media a manifest read back may seem: FFmpeg's DASH reader keeps the
/// whole seconds of `mediaPresentationDuration` only.
fn slack(entry: &str) -> f64 {
    if entry == MPD { 1.0 } else { 0.5 }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The renditions with the fewest and the most pixels.
fn smallest_and_largest<'a>(set: &StreamSet, renditions: &'a [(String, PathBuf)]) -> (&'a Path, &'a Path) {
    let area = |i: &usize| set.videos[*i].1.size.map_or(0, |(w, h)| u64::from(w) * u64::from(h));
    let small = (0..renditions.len()).min_by_key(area).unwrap_or(0);
    let large = (0..renditions.len()).max_by_key(area).unwrap_or(0);
    (&renditions[small].1, &renditions[large].1)
}

fn has_stream(file: &Path, kind: ffmpeg_next::media::Type) -> Result<bool> {
    use crate::error::FfmpegContext;
    let ictx = ffmpeg_next::format::input(file).ctx(format!("opening {}", file.display()))?;
    Ok(ictx.streams().best(kind).is_some())
}

/// Every video rendition must cut its fragments at the same moments, or a player switching
/// renditions would skip or repeat pictures.
fn check_aligned(videos: &[(String, cmaf::Track)]) -> Result<()> {
    let starts = |t: &cmaf::Track| -> Vec<f64> {
        let ts = f64::from(t.layout.timescale.max(1));
        t.layout.fragments.iter().map(|f| f.presentation as f64 / ts).collect()
    };
    let Some((first_name, first)) = videos.first() else {
        return Ok(());
    };
    let reference = starts(first);
    for (name, track) in &videos[1..] {
        let other = starts(track);
        let aligned =
            other.len() == reference.len() && other.iter().zip(&reference).all(|(a, b)| (a - b).abs() < 0.002);
        if !aligned {
            return Err(TranscodeError::Package(format!(
                "the fragments of {name} (starting at {other:?} s) do not line up with those of {first_name} ({reference:?})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
