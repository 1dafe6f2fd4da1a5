//! Our packages played by real players: hls.js and dash.js in headless Chromium, served over
//! HTTP on loopback (test_support::players). Each must start, list every rendition as a level,
//! switch when forced, show the subtitles, and reach the end; a broken manifest or a missing
//! media file must make them fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use test_support::TempDir;
use test_support::players::{self, Entry};
use transcode::package::{self, Manifests};
use transcode::{CancelHandle, RenditionSpec, TranscodeOptions};

/// A packaged 8 s ladder (360p, 240p) with an English SubRip track, made once per binary.
fn packaged() -> &'static Path {
    static DIR: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = TempDir::new("players-package");
        let srt = dir.join("en.srt");
        std::fs::write(
            &srt,
            "1\n00:00:01,000 --> 00:00:04,000\nHello\n\n2\n00:00:05,000 --> 00:00:07,000\nAgain\n",
        )
        .unwrap();
        let source = dir.join("source.mkv");
        let status = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=30:duration=8",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=8",
                "-i",
            ])
            .arg(&srt)
            .args([
                "-map",
                "0",
                "-map",
                "1",
                "-map",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
            ])
            .args(["-c:s", "srt", "-metadata:s:s:0", "language=eng"])
            .arg(&source)
            .status()
            .expect("ffmpeg runs (install Debian's ffmpeg: scripts/test.sh does)");
        assert!(status.success());
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
        let mp4 = dir.join("mp4");
        std::fs::create_dir_all(&mp4).unwrap();
        let report = transcode::transcode(
            &source,
            &specs,
            &mp4,
            &TranscodeOptions::default(),
            &mut |_| {},
            &CancelHandle::new(),
        )
        .unwrap();
        let renditions: Vec<_> = report
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.path.clone()))
            .collect();
        let out = dir.join("out");
        package::package(&renditions, &source, &out, "v1", Manifests { hls: true, dash: true }).unwrap();
        (dir, out)
    })
    .1
}

/// A copy of the package to break.
fn copy(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let status = Command::new("cp")
        .arg("-r")
        .arg(packaged())
        .arg(dir.join("out"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn play(dir: &Path, entry: Entry) -> players::Report {
    players::serve_and_play(dir, entry).unwrap_or_else(|e| panic!("the player harness: {e}"))
}

/// What playing the package must show: no problem (started, every level forced and shown, the
/// end reached, no error), both renditions, the English subtitles with their cues, 8 s.
fn verdict(report: &players::Report) -> Result<(), String> {
    report.check()?;
    let summary = report.summary();
    if report.level_sizes() != [(426, 240), (640, 360)] {
        return Err(format!(
            "levels {:?}, not 240p and 360p: {summary}",
            report.level_sizes()
        ));
    }
    // (dash.js shows ISO 639-2 `eng` as `en`)
    let english = report
        .subtitle_tracks
        .first()
        .is_some_and(|t| t.lang == "eng" || t.lang == "en");
    if report.subtitle_tracks.len() != 1 || !english || report.subtitle_cues < 2 {
        return Err(format!("not the English subtitles: {summary}"));
    }
    if (report.duration.unwrap_or(0.0) - 8.0).abs() > 0.3 {
        return Err(format!("not 8 s long: {summary}"));
    }
    Ok(())
}

#[test]
fn hls_js_plays_every_rendition_with_subtitles_to_the_end() {
    let report = play(packaged(), Entry::Hls);
    verdict(&report).unwrap();
    assert!(report.switches.iter().all(|s| s.reached), "{}", report.summary());
    // Every fetch of media was a byte range of one of the track files.
    let ranged = report
        .served
        .iter()
        .filter(|s| s.path.ends_with(".mp4"))
        .all(|s| s.status == 206);
    assert!(ranged, "{:?}", report.served);
}

#[test]
fn dash_js_plays_every_rendition_with_subtitles_to_the_end() {
    let report = play(packaged(), Entry::Dash);
    verdict(&report).unwrap();
}

#[test]
fn ffprobe_reads_both_entry_points_over_http() {
    for entry in [Entry::Hls, Entry::Dash] {
        let probe = players::ffprobe_served(packaged(), entry).unwrap();
        let videos = test_support::streams(&probe, "video");
        assert_eq!(videos.len(), 2, "{entry:?}: {probe}");
        assert!(!test_support::streams(&probe, "audio").is_empty(), "{entry:?}: {probe}");
    }
}

#[test]
fn a_missing_track_file_or_a_broken_manifest_fails_the_players() {
    // The 240p track is gone: both players must report it.
    let dir = copy("players-missing");
    let out = dir.join("out");
    std::fs::remove_file(out.join("stream/v1/240p.mp4")).unwrap();
    for entry in [Entry::Hls, Entry::Dash] {
        let report = play(&out, entry);
        assert!(
            verdict(&report).is_err(),
            "{entry:?} played without its 240p media: {}",
            report.summary()
        );
        assert!(
            report.http_errors.iter().any(|e| e.status == 404),
            "{entry:?}: {}",
            report.summary()
        );
    }
    // Manifests cut short (dash.js still plays what is left of an MPD: the first rendition).
    let dir = copy("players-broken");
    let out = dir.join("out");
    for (entry, file) in [(Entry::Hls, "master.m3u8"), (Entry::Dash, "manifest.mpd")] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        std::fs::write(out.join(file), &text[..text.len() / 3]).unwrap();
        let report = play(&out, entry);
        assert!(
            verdict(&report).is_err(),
            "{entry:?} played a broken {file}: {}",
            report.summary()
        );
    }
}

#[test]
fn a_real_video_without_audio_is_packaged_without_an_audio_track_and_plays() {
    let Some(source) = test_support::media("video_only_h264_1080x720.mp4") else {
        return;
    };
    let dir = TempDir::new("players-silent");
    let specs = [
        RenditionSpec {
            name: "720p".into(),
            short_side: 720,
        },
        RenditionSpec {
            name: "360p".into(),
            short_side: 360,
        },
    ];
    let mp4 = dir.join("mp4");
    std::fs::create_dir_all(&mp4).unwrap();
    let report = transcode::transcode(
        &source,
        &specs,
        &mp4,
        &TranscodeOptions::default(),
        &mut |_| {},
        &CancelHandle::new(),
    )
    .unwrap();
    assert!(!report.has_audio);
    let renditions: Vec<_> = report
        .outputs
        .iter()
        .map(|o| (o.name.clone(), o.path.clone()))
        .collect();
    let out = dir.join("out");
    let pkg = package::package(&renditions, &source, &out, "v1", Manifests { hls: true, dash: true }).unwrap();
    assert!(pkg.set.audio.is_none());
    package::verify(&pkg).unwrap();
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert!(
        !master.contains("TYPE=AUDIO") && !master.contains("AUDIO=") && !master.contains("mp4a"),
        "{master}"
    );
    assert!(!out.join("stream/v1/audio.mp4").exists());
    // One second of video: too short to force each level, played through instead.
    let options = players::Options {
        force_levels: false,
        ..players::Options::default()
    };
    for entry in [Entry::Hls, Entry::Dash] {
        let report = players::serve_and_play_with(&out, entry, &options).unwrap();
        report.check().unwrap_or_else(|e| panic!("{entry:?}: {e}"));
        assert_eq!(
            report.level_sizes(),
            [(540, 360), (1080, 720)],
            "{entry:?}: {}",
            report.summary()
        );
        assert!(report.audio_tracks.is_empty(), "{entry:?}: {}", report.summary());
    }
}
