//! The HLS playlists and the DASH MPD of one stream, written from what was measured of its tracks
//! (byte ranges, times, bitrates, codec strings, frame rates): nothing is guessed.
//!
//! Addressing is by byte range into one file per track: HLS `EXT-X-MAP` + `EXT-X-BYTERANGE`
//! (version 7), DASH `SegmentBase` with the file's own segment index (`sidx`, the on-demand
//! profile), or a `SegmentList` with `mediaRange`s when a file has no index. One object per track
//! means few S3 objects and PUTs (seven for a six-rung ladder, however long the video), one
//! cache entry per range at a CDN, and the very same bytes behind both manifests.

use std::fmt::Write as _;

use super::cmaf::Track;

/// A subtitle track, as a WebVTT file.
#[derive(Debug, Clone, PartialEq)]
pub struct SubtitleTrack {
    /// The file's name in the media folder.
    pub file: String,
    /// Its language (ISO 639, `und` when unknown).
    pub language: String,
    /// A name to show.
    pub name: String,
}

/// Everything one stream's manifests describe.
#[derive(Debug, Clone)]
pub struct StreamSet {
    /// The media folder, relative to the manifests, with a trailing `/` (`stream/<version>/`).
    pub media: String,
    /// The video renditions, by name (`720p`), each a track file `{name}.mp4` in the folder.
    pub videos: Vec<(String, Track)>,
    /// The audio track (`audio.mp4`), shared by every rendition.
    pub audio: Option<Track>,
    /// The subtitle tracks.
    pub subtitles: Vec<SubtitleTrack>,
    /// The presentation's duration, seconds.
    pub duration: f64,
}

fn file_name(track: &Track) -> String {
    track
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The media playlist of one track (written beside its file, so it names it bare).
pub fn media_playlist(track: &Track) -> String {
    let ts = f64::from(track.layout.timescale.max(1));
    let durations: Vec<f64> = track.layout.fragments.iter().map(|f| f.duration as f64 / ts).collect();
    let target = durations.iter().map(|d| d.round() as u64).max().unwrap_or(1).max(1);
    let file = file_name(track);
    let mut out = String::new();
    let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS"
    );
    let init = &track.layout.init;
    let _ = writeln!(
        out,
        "#EXT-X-MAP:URI=\"{file}\",BYTERANGE=\"{}@{}\"",
        init.end - init.start,
        init.start
    );
    for (f, d) in track.layout.fragments.iter().zip(&durations) {
        let _ = writeln!(
            out,
            "#EXTINF:{d:.6},\n#EXT-X-BYTERANGE:{}@{}\n{file}",
            f.bytes.end - f.bytes.start,
            f.bytes.start
        );
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// The media playlist of a subtitle track: the whole WebVTT file as one segment.
pub fn subtitle_playlist(sub: &SubtitleTrack, duration: f64) -> String {
    let target = (duration.ceil() as u64).max(1);
    format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:{duration:.6},\n{}\n#EXT-X-ENDLIST\n",
        sub.file
    )
}

/// The name of a track's media playlist: `{file stem}.m3u8`.
pub fn playlist_name(file: &str) -> String {
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    format!("{stem}.m3u8")
}

fn quote(s: &str) -> String {
    s.replace('"', "'")
}

/// The HLS master playlist.
pub fn master_playlist(set: &StreamSet) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(a) = &set.audio {
        let channels = a.audio.map_or(2, |(_, c)| c);
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",LANGUAGE=\"und\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{channels}\",URI=\"{}{}\"",
            set.media,
            playlist_name(&file_name(a))
        );
    }
    for s in &set.subtitles {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"{}\",LANGUAGE=\"{}\",DEFAULT=NO,AUTOSELECT=YES,URI=\"{}{}\"",
            quote(&s.name),
            quote(&s.language),
            set.media,
            playlist_name(&s.file)
        );
    }
    for (_, v) in &set.videos {
        let (audio_peak, audio_avg, audio_codec) = set.audio.as_ref().map_or((0, 0, None), |a| {
            (a.peak_bitrate, a.average_bitrate, Some(a.codecs.as_str()))
        });
        let codecs = match audio_codec {
            Some(a) => format!("{},{a}", v.codecs),
            None => v.codecs.clone(),
        };
        let (w, h) = v.size.unwrap_or((0, 0));
        let mut line = format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={w}x{h},CODECS=\"{codecs}\"",
            v.peak_bitrate + audio_peak,
            v.average_bitrate + audio_avg
        );
        if let Some(fps) = v.frame_rate {
            let _ = write!(line, ",FRAME-RATE={fps:.3}");
        }
        if set.audio.is_some() {
            line.push_str(",AUDIO=\"audio\"");
        }
        if !set.subtitles.is_empty() {
            line.push_str(",SUBTITLES=\"subs\"");
        }
        let _ = writeln!(out, "{line}\n{}{}", set.media, playlist_name(&file_name(v)));
    }
    out
}

/// An ISO 8601 duration (`PT12.345S`).
fn iso_duration(seconds: f64) -> String {
    format!("PT{seconds:.3}S")
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How a track's segments are found: its `sidx` when it has one, else a `SegmentList`.
fn segments(track: &Track, indent: &str) -> String {
    let init = &track.layout.init;
    match &track.layout.index {
        Some(index) => format!(
            "{indent}<SegmentBase timescale=\"{}\" indexRange=\"{}-{}\" indexRangeExact=\"true\">\n\
             {indent}  <Initialization range=\"{}-{}\"/>\n{indent}</SegmentBase>\n",
            track.layout.timescale,
            index.start,
            index.end - 1,
            init.start,
            init.end - 1
        ),
        None => segment_list(track, indent),
    }
}

/// The `SegmentList` of a track: its init range, timeline and byte ranges.
fn segment_list(track: &Track, indent: &str) -> String {
    let mut out = String::new();
    let init = &track.layout.init;
    let _ = writeln!(out, "{indent}<SegmentList timescale=\"{}\">", track.layout.timescale);
    let _ = writeln!(
        out,
        "{indent}  <Initialization range=\"{}-{}\"/>",
        init.start,
        init.end.saturating_sub(1)
    );
    let _ = writeln!(out, "{indent}  <SegmentTimeline>");
    // Runs of equal durations in one `S` element with a repeat count.
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for f in &track.layout.fragments {
        match runs.last_mut() {
            Some((t, d, r)) if *d == f.duration && *t + *d * (*r + 1) == f.start => *r += 1,
            _ => runs.push((f.start, f.duration, 0)),
        }
    }
    for (t, d, r) in runs {
        if r > 0 {
            let _ = writeln!(out, "{indent}    <S t=\"{t}\" d=\"{d}\" r=\"{r}\"/>");
        } else {
            let _ = writeln!(out, "{indent}    <S t=\"{t}\" d=\"{d}\"/>");
        }
    }
    let _ = writeln!(out, "{indent}  </SegmentTimeline>");
    for f in &track.layout.fragments {
        let _ = writeln!(
            out,
            "{indent}  <SegmentURL mediaRange=\"{}-{}\"/>",
            f.bytes.start,
            f.bytes.end - 1
        );
    }
    let _ = writeln!(out, "{indent}</SegmentList>");
    out
}

/// The static DASH MPD.
pub fn mpd(set: &StreamSet) -> String {
    let mut out = String::new();
    let duration = iso_duration(set.duration);
    let indexed = set
        .videos
        .iter()
        .map(|(_, t)| t)
        .chain(set.audio.iter())
        .all(|t| t.layout.index.is_some());
    let profile = if indexed {
        "urn:mpeg:dash:profile:isoff-on-demand:2011"
    } else {
        "urn:mpeg:dash:profile:isoff-main:2011"
    };
    let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"{profile}\" \
         type=\"static\" mediaPresentationDuration=\"{duration}\" minBufferTime=\"PT4S\">"
    );
    let _ = writeln!(out, "  <Period id=\"0\" start=\"PT0S\" duration=\"{duration}\">");
    if !set.videos.is_empty() {
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">"
        );
        for (name, v) in &set.videos {
            let (w, h) = v.size.unwrap_or((0, 0));
            let fps = v
                .frame_rate
                .map(|f| format!(" frameRate=\"{}\"", frame_rate(f)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      <Representation id=\"{}\" bandwidth=\"{}\" width=\"{w}\" height=\"{h}\" sar=\"1:1\" codecs=\"{}\"{fps}>",
                xml(name),
                v.peak_bitrate,
                v.codecs
            );
            let _ = writeln!(
                out,
                "        <BaseURL>{}{}</BaseURL>",
                xml(&set.media),
                xml(&file_name(v))
            );
            out.push_str(&segments(v, "        "));
            let _ = writeln!(out, "      </Representation>");
        }
        let _ = writeln!(out, "    </AdaptationSet>");
    }
    if let Some(a) = &set.audio {
        let (rate, channels) = a.audio.unwrap_or((48_000, 2));
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" lang=\"und\" segmentAlignment=\"true\" startWithSAP=\"1\">"
        );
        let _ = writeln!(
            out,
            "      <Representation id=\"audio\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"{rate}\">",
            a.peak_bitrate, a.codecs
        );
        let _ = writeln!(
            out,
            "        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>"
        );
        let _ = writeln!(
            out,
            "        <BaseURL>{}{}</BaseURL>",
            xml(&set.media),
            xml(&file_name(a))
        );
        out.push_str(&segments(a, "        "));
        let _ = writeln!(out, "      </Representation>\n    </AdaptationSet>");
    }
    for (i, s) in set.subtitles.iter().enumerate() {
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"{}\" contentType=\"text\" mimeType=\"text/vtt\" lang=\"{}\">",
            i + 2,
            xml(&s.language)
        );
        let _ = writeln!(out, "      <Label>{}</Label>", xml(&s.name));
        let _ = writeln!(
            out,
            "      <Representation id=\"subtitles-{i}\" bandwidth=\"256\">\n        <BaseURL>{}{}</BaseURL>\n      </Representation>",
            xml(&set.media),
            xml(&s.file)
        );
        let _ = writeln!(out, "    </AdaptationSet>");
    }
    out.push_str("  </Period>\n</MPD>\n");
    out
}

/// A frame rate as DASH writes it: an integer, or `N/1001` for the NTSC rates.
fn frame_rate(fps: f64) -> String {
    let ntsc = (fps * 1001.0 / 1000.0).round();
    if (fps - fps.round()).abs() < 0.01 {
        format!("{}", fps.round() as u64)
    } else if (fps - ntsc * 1000.0 / 1001.0).abs() < 0.01 {
        format!("{}/1001", (ntsc as u64) * 1000)
    } else {
        format!("{fps:.3}")
    }
}

#[cfg(test)]
mod tests;
