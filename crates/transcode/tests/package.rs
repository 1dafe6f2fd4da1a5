//! Packaging real renditions: a source with a black opening, two text subtitle tracks and a tone
//! is transcoded into two renditions and packaged; the manifests are read back by `ffprobe`, the
//! media's layout and the pictures are checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::{TempDir, ffprobe, num, streams};
use transcode::package::{self, Manifests};
use transcode::{CancelHandle, RenditionSpec, TranscodeOptions, TranscodeReport};

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): install Debian's ffmpeg package (scripts/test.sh does)"));
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 9 s of 640x360 at 30 fps: 2 s of black, then a test pattern; a tone; English SubRip and
/// French ASS subtitles.
fn source(dir: &Path) -> PathBuf {
    let srt = dir.join("en.srt");
    std::fs::write(&srt, "1\n00:00:01,000 --> 00:00:03,500\nHello <i>there</i>\n\n2\n00:00:05,000 --> 00:00:07,000\nSecond line\nand more\n").unwrap();
    let ass = dir.join("fr.ass");
    std::fs::write(
        &ass,
        "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\nStyle: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\nDialogue: 0,0:00:02.00,0:00:04.00,Default,,0,0,0,,{\\i1}Bonjour{\\i0}\\Nà tous\n",
    )
    .unwrap();
    let out = dir.join("source.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=black:size=640x360:rate=30:duration=2",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30:duration=7",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=9",
        "-i",
        srt.to_str().unwrap(),
        "-i",
        ass.to_str().unwrap(),
        "-filter_complex",
        "[0:v][1:v]concat=n=2:v=1:a=0[v]",
        "-map",
        "[v]",
        "-map",
        "2:a",
        "-map",
        "3:s",
        "-map",
        "4:s",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-c:s:0",
        "srt",
        "-c:s:1",
        "ass",
        "-metadata:s:s:0",
        "language=eng",
        "-metadata:s:s:1",
        "language=fra",
        "-metadata:s:s:1",
        "title=Français",
        out.to_str().unwrap(),
    ]);
    out
}

fn transcode(source: &Path, out: &Path) -> TranscodeReport {
    let specs = [
        RenditionSpec {
            name: "360p".into(),
            short_side: 360,
        },
        RenditionSpec {
            name: "240p".into(),
            short_side: 240,
        },
    ];
    std::fs::create_dir_all(out).unwrap();
    transcode::transcode(
        source,
        &specs,
        out,
        &TranscodeOptions::default(),
        &mut |_| {},
        &CancelHandle::new(),
    )
    .expect("the source transcodes")
}

fn renditions(report: &TranscodeReport) -> Vec<(String, PathBuf)> {
    report
        .outputs
        .iter()
        .map(|o| (o.name.clone(), o.path.clone()))
        .collect()
}

/// Seconds from a WebVTT time (`00:00:01.000`).
fn vtt_seconds(t: &str) -> f64 {
    t.split(':')
        .fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap())
}

/// The cues of a WebVTT file match `expected` (start, end, text), times within 34 ms.
fn assert_cues(vtt: &str, expected: &[(f64, f64, &str)]) {
    let cues: Vec<(f64, f64, String)> = vtt
        .split("\n\n")
        .skip(1)
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let (times, text) = c.split_once('\n').unwrap();
            let (start, end) = times.split_once(" --> ").unwrap();
            (vtt_seconds(start), vtt_seconds(end), text.trim_end().to_owned())
        })
        .collect();
    assert_eq!(cues.len(), expected.len(), "{vtt}");
    for ((start, end, text), (s, e, t)) in cues.iter().zip(expected) {
        assert!(
            (start - s).abs() < 0.034 && (end - e).abs() < 0.034,
            "{start}..{end} for {s}..{e}: {vtt}"
        );
        assert_eq!(text, t, "{vtt}");
    }
}

/// `ffprobe` of an MPD, as JSON.
fn probe_mpd(mpd: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-allowed_extensions",
            "ALL",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(mpd)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        mpd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe prints JSON")
}

/// The smallest and largest luma values of a picture, by FFmpeg's `signalstats`.
fn luma_range(picture: &Path) -> (f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(picture)
        .args(["-vf", "signalstats,metadata=print:file=-", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("lavfi.signalstats.{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    (value("YMIN"), value("YMAX"))
}

#[test]
fn hls_and_dash_share_one_set_of_aligned_cmaf_media_with_subtitles_and_thumbnails() {
    let dir = TempDir::new("package");
    let src = source(&dir);
    let report = transcode(&src, &dir.join("mp4"));
    let out = dir.join("out");
    let pkg = package::package(
        &renditions(&report),
        &src,
        &out,
        "v1",
        Manifests { hls: true, dash: true },
    )
    .expect("the renditions are packaged");

    package::verify(&pkg).expect("FFmpeg reads both entry points back");

    // The entry points come last, and every file named is on disk with its content type.
    let entry: Vec<&str> = pkg.entry_points.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(entry, ["thumbnails.vtt", "master.m3u8", "manifest.mpd"]);
    let media: Vec<&str> = pkg.media.iter().map(|f| f.name.as_str()).collect();
    for name in [
        "stream/v1/360p.mp4",
        "stream/v1/240p.mp4",
        "stream/v1/audio.mp4",
        "stream/v1/360p.m3u8",
        "stream/v1/240p.m3u8",
        "stream/v1/audio.m3u8",
        "stream/v1/subtitles-0.vtt",
        "stream/v1/subtitles-0.m3u8",
        "stream/v1/subtitles-1.vtt",
        "stream/v1/subtitles-1.m3u8",
        "stream/v1/sprite.jpg",
        "poster.jpg",
    ] {
        assert!(media.contains(&name), "{name} missing from {media:?}");
    }
    for f in pkg.media.iter().chain(&pkg.entry_points) {
        assert!(f.path.is_file(), "{} is not written", f.path.display());
        assert_eq!(f.path, out.join(&f.name));
    }

    // Video tracks: one fragment per 2 s keyframe interval, the same cut points in both.
    let (_, big) = &pkg.set.videos[0];
    let (_, small) = &pkg.set.videos[1];
    assert_eq!(big.size, Some((640, 360)));
    assert_eq!(small.size, Some((426, 240)));
    assert_eq!(big.layout.fragments.len(), 5, "9 s in 2 s fragments");
    let starts = |t: &package::cmaf::Track| t.layout.fragments.iter().map(|f| f.start).collect::<Vec<_>>();
    assert_eq!(starts(big), starts(small));
    assert!((big.duration - 9.0).abs() < 0.05, "{}", big.duration);
    assert!((big.frame_rate.unwrap() - 30.0).abs() < 0.01, "{:?}", big.frame_rate);
    assert!(
        big.codecs.starts_with("avc1.64") || big.codecs.starts_with("avc1.4d"),
        "{}",
        big.codecs
    );
    assert!(big.peak_bitrate >= big.average_bitrate && big.average_bitrate > small.average_bitrate);
    let audio = pkg.set.audio.as_ref().expect("the audio track");
    assert_eq!(audio.codecs, "mp4a.40.2");
    assert_eq!(audio.audio, Some((48_000, 2)));
    assert!((audio.duration - 9.0).abs() < 0.1, "{}", audio.duration);

    // The fragments' byte ranges cover the file exactly.
    let size = std::fs::metadata(&big.path).unwrap().len();
    assert_eq!(big.layout.init.start, 0);
    let index = big.layout.index.clone().expect("a segment index for DASH");
    assert_eq!(
        (big.layout.init.end, index.end),
        (index.start, big.layout.fragments[0].bytes.start)
    );
    for pair in big.layout.fragments.windows(2) {
        assert_eq!(pair[0].bytes.end, pair[1].bytes.start);
    }
    assert_eq!(big.layout.fragments.last().unwrap().bytes.end, size);

    // ffprobe reads both entry points: two video variants and the audio.
    let hls = ffprobe(&out.join("master.m3u8"));
    let videos = streams(&hls, "video");
    let mut sizes: Vec<(i64, i64)> = videos
        .iter()
        .map(|s| (s["width"].as_i64().unwrap(), s["height"].as_i64().unwrap()))
        .collect();
    sizes.sort();
    assert_eq!(sizes, [(426, 240), (640, 360)]);
    assert!(!streams(&hls, "audio").is_empty());
    assert!((num(&hls["format"]["duration"]) - 9.0).abs() < 0.2, "{}", hls["format"]);
    // (FFmpeg's DASH reader opens WebVTT only when told that any extension is allowed.)
    let dash = probe_mpd(&out.join("manifest.mpd"));
    assert_eq!(streams(&dash, "subtitle").len(), 2, "{dash}");
    assert_eq!(streams(&dash, "video").len(), 2, "{dash}");
    assert_eq!(streams(&dash, "audio").len(), 1, "{dash}");

    // Subtitles, with their languages and plain text.
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert!(master.contains("LANGUAGE=\"eng\""), "{master}");
    assert!(master.contains("NAME=\"Français\",LANGUAGE=\"fra\""), "{master}");
    // (the ffmpeg tool moves the subtitles by the audio's priming, some 21 ms, when it makes the
    // source: times are compared within a frame)
    let en = std::fs::read_to_string(out.join("stream/v1/subtitles-0.vtt")).unwrap();
    assert!(en.starts_with("WEBVTT\n"), "{en}");
    assert_cues(&en, &[(1.0, 3.5, "Hello there"), (5.0, 7.0, "Second line\nand more")]);
    let fr = std::fs::read_to_string(out.join("stream/v1/subtitles-1.vtt")).unwrap();
    assert_cues(&fr, &[(2.0, 4.0, "Bonjour\nà tous")]);
    let mpd = std::fs::read_to_string(out.join("manifest.mpd")).unwrap();
    assert!(mpd.contains("lang=\"eng\"") && mpd.contains("lang=\"fra\""), "{mpd}");

    // The poster is not taken from the black opening, and has detail.
    assert!(pkg.thumbnails.poster_at >= 2.0, "{:?}", pkg.thumbnails);
    let (lo, hi) = luma_range(&out.join("poster.jpg"));
    assert!(hi - lo > 100.0, "a detailed poster, luma {lo}..{hi}");
    assert_eq!(pkg.thumbnails.poster, (640, 360));
    // A tile every 2 s of 9 s: 5 tiles on one row of the sprite sheet.
    assert_eq!(pkg.thumbnails.tiles, 5);
    let vtt = std::fs::read_to_string(out.join("thumbnails.vtt")).unwrap();
    assert_eq!(vtt.matches("stream/v1/sprite.jpg#xywh=").count(), 5, "{vtt}");
    let sprite = ffprobe(&out.join("stream/v1/sprite.jpg"));
    assert_eq!(streams(&sprite, "video")[0]["width"].as_i64(), Some(5 * 160));
}

#[test]
fn only_the_manifests_asked_for_are_written() {
    let dir = TempDir::new("package-one");
    let src = dir.join("clip.mp4");
    test_support::make_clip(&src, 4);
    let report = transcode(&src, &dir.join("mp4"));
    let out = dir.join("hls");
    let pkg = package::package(
        &renditions(&report),
        &src,
        &out,
        "a1",
        Manifests { hls: true, dash: false },
    )
    .unwrap();
    assert!(out.join("master.m3u8").is_file() && !out.join("manifest.mpd").exists());
    assert!(pkg.set.subtitles.is_empty() && pkg.skipped_subtitles.is_empty());
    let out = dir.join("dash");
    let pkg = package::package(
        &renditions(&report),
        &src,
        &out,
        "a1",
        Manifests { hls: false, dash: true },
    )
    .unwrap();
    assert!(out.join("manifest.mpd").is_file() && !out.join("master.m3u8").exists());
    assert!(
        pkg.media.iter().all(|f| !f.name.ends_with(".m3u8")),
        "no HLS playlists for DASH alone"
    );
}

#[test]
fn renditions_whose_keyframes_differ_are_refused() {
    let dir = TempDir::new("package-misaligned");
    let a = dir.join("a.mp4");
    let b = dir.join("b.mp4");
    for (file, gop) in [(&a, "60"), (&b, "45")] {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30:duration=6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            gop,
            "-keyint_min",
            gop,
            "-sc_threshold",
            "0",
            file.to_str().unwrap(),
        ]);
    }
    let err = package::package(
        &[("a".into(), a.clone()), ("b".into(), b)],
        &a,
        &dir.join("out"),
        "v",
        Manifests { hls: true, dash: true },
    )
    .unwrap_err();
    assert!(err.to_string().contains("do not line up"), "{err}");
    assert!(
        !dir.join("out/master.m3u8").exists(),
        "no manifest for media that cannot be switched"
    );
}

/// Renditions, media version, manifests asked, and the error expected.
type Case<'a> = (Vec<(String, PathBuf)>, &'a str, Manifests, &'a str);

#[test]
fn bad_arguments_and_missing_files_are_errors() {
    let dir = TempDir::new("package-bad");
    let none = Manifests::default();
    let both = Manifests { hls: true, dash: true };
    let missing = dir.join("missing.mp4");
    let cases: [Case; 4] = [
        (vec![], "v", both, "no rendition"),
        (vec![("x".into(), missing.clone())], "v", none, "no manifest"),
        (vec![("x".into(), missing.clone())], "../v", both, "a media version"),
        (vec![("x".into(), missing.clone())], "v", both, "missing.mp4"),
    ];
    for (renditions, version, manifests, expected) in cases {
        let err = package::package(&renditions, &missing, &dir.join("out"), version, manifests).unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert!(
            !err.is_rejection(),
            "packaging our own renditions is never the source's fault: {err}"
        );
    }
}

#[test]
fn a_manifest_that_does_not_match_its_media_fails_verification() {
    let dir = TempDir::new("package-verify");
    let src = dir.join("clip.mp4");
    test_support::make_clip(&src, 4);
    let report = transcode(&src, &dir.join("mp4"));
    let out = dir.join("out");
    let pkg = package::package(
        &renditions(&report),
        &src,
        &out,
        "v",
        Manifests { hls: true, dash: true },
    )
    .unwrap();
    package::verify(&pkg).unwrap();
    // A rendition dropped from the master playlist.
    let master = out.join("master.m3u8");
    let text = std::fs::read_to_string(&master).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    std::fs::write(&master, cut[..cut.len() - 2].join("\n") + "\n").unwrap();
    let err = package::verify(&pkg).unwrap_err().to_string();
    assert!(
        err.contains("master.m3u8 read back: 1 video streams for 2 renditions"),
        "{err}"
    );
    std::fs::write(&master, &text).unwrap();
    // A manifest that is not XML.
    std::fs::write(out.join("manifest.mpd"), "<MPD").unwrap();
    let err = package::verify(&pkg).unwrap_err().to_string();
    assert!(err.contains("reading back manifest.mpd"), "{err}");
}
