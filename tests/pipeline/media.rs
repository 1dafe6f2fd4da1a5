//! Every file of the sample media set (`$MEDIA_DIR`, described in its MANIFEST.md) through the
//! transcoding core: each file that must be rejected is rejected with the right reason; every
//! other file gives a rendition whose probe (by the `ffprobe` tool) shows the expected codec,
//! pixel format, size, display aspect ratio, duration and audio.

use std::path::Path;

use test_support::{TempDir, ffprobe, media, media_dir, num, streams};
use transcode::{CancelHandle, RenditionSpec, TranscodeOptions};

/// What a file must give at 360p.
pub(crate) enum Expect {
    /// A rendition of this size, with or without audio.
    Rendition { width: u64, height: u64, audio: bool },
    /// A rejection whose reason contains this.
    Rejected(&'static str),
}

use Expect::{Rejected, Rendition};

const fn ok(width: u64, height: u64, audio: bool) -> Expect {
    Rendition { width, height, audio }
}

/// The whole media set, file by file (see MANIFEST.md for what each one is).
pub(crate) const CASES: &[(&str, Expect)] = &[
    ("DERIVED_not_a_video_font.mp4", Rejected("not a media file")),
    ("DERIVED_truncated_moov_at_end.mp4", Rejected("damaged or truncated")),
    (
        "DERIVED_truncated_moov_first.mp4",
        Rejected("ends early: 57 of 149 announced frames decoded"),
    ),
    (
        "audio_mp3_with_cover_art.mp3",
        Rejected("the only picture is cover art"),
    ),
    ("audio_only_aac.mp4", Rejected("audio-only")),
    ("audio_only_opus.webm", Rejected("audio-only")),
    (
        "corrupt_vp9_invalid_bitstream.webm",
        Rejected("cannot be decoded: no frame could be decoded"),
    ),
    // 10-bit HDR10 AV1, stored portrait: tone-mapped to 8-bit SDR.
    ("av1_10bit_hdr10_portrait_720x1280_aac.mp4", ok(360, 640, true)),
    ("av1_aac_1080x720.mp4", ok(540, 360, true)),
    // One damaged frame of 30: within the damage policy, published from the 29 good ones.
    ("corrupt_h264_invalid_nalu.mp4", ok(540, 360, false)),
    ("extreme_8k_hevc_300ms.mp4", ok(640, 360, true)),
    ("h264_aac_1080x720_1s.mp4", ok(540, 360, true)),
    ("h264_aac_720p30_5s.mp4", ok(640, 360, true)),
    ("hevc_bframes_854x480_noaudio.mp4", ok(640, 360, false)),
    ("hevc_in_mpegts_854x480.ts", ok(640, 360, false)),
    ("hevc_main10_hdr10_1080p_aac.mp4", ok(640, 360, true)),
    // Smaller than 360p: never upscaled.
    ("legacy_h263_176x144.3gp", ok(176, 144, false)),
    ("legacy_mpeg4asp_mp3_960x400.avi", ok(864, 360, true)),
    ("mkv_h264_444_aac_chapters.mkv", ok(320, 240, true)),
    ("mkv_h264_ac3_srt.mkv", ok(540, 360, true)),
    // 720x576 with SAR 64:45 is shown 1024x576; interlaced, deinterlaced.
    ("mpeg2_576i_interlaced_dvb.ts", ok(640, 360, true)),
    ("mpeg2_mp2_1080p24.ts", ok(640, 360, true)),
    ("odd_dims_161x121_vp9.webm", ok(160, 120, false)),
    // 640x480 with SAR 16:9 is shown 1138x480.
    ("one_frame_h264_sar16x9.mp4", ok(854, 360, false)),
    ("phone_4k60_portrait_rotation.mp4", ok(360, 640, true)),
    ("portrait_stored_720x1080.mp4", ok(360, 540, true)),
    ("quicktime_h264_aac_640x428.mov", ok(538, 360, true)),
    ("quicktime_h264_pcm_1080p50.mov", ok(640, 360, true)),
    ("rotated_270_720p_aac.mp4", ok(360, 640, true)),
    ("rotated_and_reflected_1080x720.mp4", ok(360, 540, true)),
    ("short_3frames_hevc_1080p_rot.mp4", ok(360, 640, true)),
    // Variable frame rate, rotated; the one-frame still track beside it is not the video.
    ("vfr_hevc_motion_photo_2tracks.mp4", ok(360, 480, false)),
    ("video_only_h264_1080x720.mp4", ok(540, 360, false)),
    // Vorbis 5.1 is downmixed to stereo.
    ("vp8_vorbis51_1080p60.webm", ok(640, 360, true)),
    ("vp9_320x240_noaudio.webm", ok(320, 240, false)),
    ("vp9_profile2_10bit_426x240.webm", ok(426, 240, false)),
];

fn transcode_360p(input: &Path, out: &Path) -> transcode::Result<transcode::TranscodeReport> {
    let spec = [RenditionSpec {
        name: "360p".into(),
        short_side: 360,
    }];
    transcode::transcode(
        input,
        &spec,
        out,
        &TranscodeOptions::default(),
        &mut |_| {},
        &CancelHandle::new(),
    )
}

/// The video stream's duration: its own field, Matroska's `DURATION` tag, or the container's.
fn video_seconds(probe: &serde_json::Value) -> f64 {
    let v = streams(probe, "video");
    let d = num(&v[0]["duration"]);
    if d.is_finite() {
        return d;
    }
    let tag = v[0]["tags"]["DURATION"].as_str().unwrap_or("");
    let hms: Vec<f64> = tag.split(':').filter_map(|x| x.parse().ok()).collect();
    if let [h, m, s] = hms[..] {
        return h * 3600.0 + m * 60.0 + s;
    }
    num(&probe["format"]["duration"])
}

#[test]
fn the_media_set_is_covered_file_for_file() {
    let dir = media_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        let _ = media("MANIFEST.md");
        return;
    };
    let mut files: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n != "MANIFEST.md")
        .collect();
    files.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed, "the media set and this test's table differ");
}

#[test]
fn every_file_of_the_media_set_is_transcoded_correctly_or_rejected_with_its_reason() {
    let mut failures = Vec::new();
    for (name, expect) in CASES {
        let Some(input) = media(name) else { return };
        let tmp = TempDir::new("media");
        let result = transcode_360p(&input, &tmp.0);
        match (expect, result) {
            (Rejected(reason), Err(e)) => {
                if !e.is_rejection() || !e.to_string().contains(reason) {
                    failures.push(format!(
                        "{name}: rejected with {e:?}, expected a rejection saying {reason:?}"
                    ));
                }
                if tmp.join("360p.mp4").exists() {
                    failures.push(format!("{name}: a rejected input left an output behind"));
                }
            }
            (Rejected(reason), Ok(_)) => failures.push(format!("{name}: accepted, expected a rejection ({reason})")),
            (Rendition { .. }, Err(e)) => failures.push(format!("{name}: {e}")),
            (Rendition { width, height, audio }, Ok(report)) => {
                if let Err(why) = check_rendition(&input, &tmp.join("360p.mp4"), (*width, *height), *audio, &report) {
                    failures.push(format!("{name}: {why}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s) wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_rendition(
    input: &Path,
    output: &Path,
    (width, height): (u64, u64),
    audio: bool,
    report: &transcode::TranscodeReport,
) -> Result<(), String> {
    let src = ffprobe(input);
    let out = ffprobe(output);
    let v = streams(&out, "video");
    if v.len() != 1 {
        return Err(format!("{} video streams", v.len()));
    }
    let v = v[0];
    let field = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    if field("codec_name") != "h264" || field("profile") != "High" {
        return Err(format!("video is {} {}", field("codec_name"), field("profile")));
    }
    if field("pix_fmt") != "yuv420p" {
        return Err(format!("pixel format {}", field("pix_fmt")));
    }
    if (v["width"].as_u64(), v["height"].as_u64()) != (Some(width), Some(height)) {
        return Err(format!("{}x{} instead of {width}x{height}", v["width"], v["height"]));
    }
    if !matches!(field("sample_aspect_ratio").as_str(), "" | "1:1") {
        return Err(format!("sample aspect ratio {}", field("sample_aspect_ratio")));
    }
    if !matches!(field("color_range").as_str(), "" | "tv" | "unknown") {
        return Err(format!("colour range {}", field("color_range")));
    }
    if matches!(field("color_transfer").as_str(), "smpte2084" | "arib-std-b67") {
        return Err(format!("still HDR ({}) after tone mapping", field("color_transfer")));
    }
    if !matches!(field("field_order").as_str(), "" | "progressive" | "unknown") {
        return Err(format!("field order {}", field("field_order")));
    }
    if v["side_data_list"]
        .as_array()
        .is_some_and(|l| l.iter().any(|s| s.get("rotation").is_some()))
    {
        return Err("a rotation flag is left".into());
    }
    // Display aspect ratio: the source's, after sample aspect ratio and rotation.
    let info = report.source.video.as_ref().ok_or("no source video info")?;
    let (src_dar, out_dar) = (info.display_width / info.display_height, width as f64 / height as f64);
    if (src_dar - out_dar).abs() / src_dar > 0.02 {
        return Err(format!("display aspect ratio {out_dar:.3} instead of {src_dar:.3}"));
    }
    // Every decoded frame is kept, and the video lasts what the decoded source lasts.
    let frames: u64 = v["nb_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    if frames != report.frames_decoded {
        return Err(format!("{frames} frames for {} decoded", report.frames_decoded));
    }
    let fps = info.frame_rate.max(1.0);
    let tolerance = (2.0 / fps).max(0.1);
    let duration = video_seconds(&out);
    if (duration - report.decoded_seconds).abs() > tolerance {
        return Err(format!(
            "lasts {duration:.3} s, the decoded source {:.3} s",
            report.decoded_seconds
        ));
    }
    let src_video = video_seconds(&src);
    if report.decode_errors == 0 && !info.interlaced && (duration - src_video).abs() > tolerance.max(0.05 * src_video) {
        return Err(format!("lasts {duration:.3} s, the source's video {src_video:.3} s"));
    }
    // Audio: AAC-LC stereo when the source has audio, none otherwise; in sync with the video.
    let a = streams(&out, "audio");
    match (audio, a.first()) {
        (true, None) => return Err("no audio".into()),
        (false, Some(_)) => return Err("unexpected audio".into()),
        (true, Some(a)) => {
            if a["codec_name"] != "aac" || a["profile"] != "LC" || a["channels"] != 2 {
                return Err(format!(
                    "audio {} {} {} channels",
                    a["codec_name"], a["profile"], a["channels"]
                ));
            }
            if num(&a["sample_rate"]) > 48_000.0 {
                return Err(format!("audio at {} Hz", a["sample_rate"]));
            }
            let offset = |p: &serde_json::Value| {
                let start = |kind: &str| streams(p, kind).first().map(|s| num(&s["start_time"])).unwrap_or(0.0);
                start("audio") - start("video")
            };
            let drift = (offset(&out) - offset(&src)).abs();
            if report.decode_errors == 0 && !info.interlaced && drift > 1.0 / fps + 0.03 {
                return Err(format!("audio is {drift:.3} s out of sync with the video"));
            }
        }
        (false, None) => {}
    }
    let streams_total = out["streams"].as_array().map_or(0, Vec::len);
    if streams_total != 1 + usize::from(audio) {
        return Err(format!(
            "{streams_total} streams: subtitles, data or extra tracks were kept"
        ));
    }
    Ok(())
}

#[test]
fn one_decode_makes_every_rendition_of_a_ladder_with_aligned_keyframes() {
    let Some(input) = media("h264_aac_720p30_5s.mp4") else {
        return;
    };
    let tmp = TempDir::new("ladder");
    let specs: Vec<RenditionSpec> = [360, 480, 720]
        .into_iter()
        .map(|s| RenditionSpec {
            name: format!("{s}p"),
            short_side: s,
        })
        .collect();
    let report = transcode::transcode(
        &input,
        &specs,
        &tmp.0,
        &TranscodeOptions::default(),
        &mut |_| {},
        &CancelHandle::new(),
    )
    .unwrap();
    assert_eq!(report.outputs.len(), 3);
    let keyframes = |name: &str| -> Vec<String> {
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=pts_time,flags",
                "-of",
                "csv=p=0",
            ])
            .arg(tmp.join(name))
            .output()
            .expect("ffprobe runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains('K'))
            .map(|l| l.split(',').next().unwrap_or("").to_owned())
            .collect()
    };
    let k360 = keyframes("360p.mp4");
    assert_eq!(k360.len(), 3, "keyframes every 2 s of 5 s: {k360:?}");
    assert_eq!(k360, keyframes("480p.mp4"));
    assert_eq!(k360, keyframes("720p.mp4"));
    let heights: Vec<u32> = report.outputs.iter().map(|o| o.height).collect();
    assert_eq!(heights, [360, 480, 720]);
}

#[test]
fn a_cancelled_transcode_stops_and_leaves_no_output() {
    let Some(input) = media("h264_aac_720p30_5s.mp4") else {
        return;
    };
    let tmp = TempDir::new("cancel");
    let cancel = CancelHandle::new();
    cancel.cancel();
    let spec = [RenditionSpec {
        name: "720p".into(),
        short_side: 720,
    }];
    let err = transcode::transcode(
        &input,
        &spec,
        &tmp.0,
        &TranscodeOptions::default(),
        &mut |_| {},
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, transcode::TranscodeError::Cancelled), "{err:?}");
    assert!(!err.is_rejection());
    assert!(!tmp.join("720p.mp4").exists());
}

#[test]
fn progress_is_reported_with_percent_and_frames() {
    let Some(input) = media("h264_aac_720p30_5s.mp4") else {
        return;
    };
    let tmp = TempDir::new("progress");
    let mut seen = Vec::new();
    let spec = [RenditionSpec {
        name: "360p".into(),
        short_side: 360,
    }];
    transcode::transcode(
        &input,
        &spec,
        &tmp.0,
        &TranscodeOptions::default(),
        &mut |p| seen.push(*p),
        &CancelHandle::new(),
    )
    .unwrap();
    let last = seen.last().expect("at least the final progress");
    assert_eq!(last.frames, 149);
    assert!(last.percent().unwrap() > 95.0, "{last:?}");
}

/// A clip made with the `ffmpeg` tool, then damaged by overwriting `spots` runs of `len` bytes
/// spread over its media data.
fn damaged_clip(dir: &TempDir, spots: usize, len: usize) -> std::path::PathBuf {
    let clean = dir.join("clean.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30:duration=30",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&clean)
        .status()
        .expect("ffmpeg runs (Debian's ffmpeg package)");
    assert!(status.success());
    let mut data = std::fs::read(&clean).unwrap();
    let mdat = data.windows(4).position(|w| w == b"mdat").expect("an mdat box");
    let (start, span) = (mdat + 4096, data.len() - mdat - 8192);
    for i in 0..spots {
        let at = start + span * (2 * i + 1) / (2 * spots);
        data[at..at + len].fill(0xff);
    }
    let path = dir.join(format!("damaged-{spots}.mp4"));
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn a_few_damaged_frames_are_tolerated_and_counted() {
    let tmp = TempDir::new("glitch");
    let input = damaged_clip(&tmp, 1, 16);
    let report = transcode_360p(&input, &tmp.join("out")).expect("one glitch is within the damage policy");
    assert!(report.decode_errors >= 1, "the damage went unnoticed");
    assert!(report.decode_errors <= transcode::pipeline::tolerated_errors(report.frames_decoded));
    assert_eq!(report.frames_decoded, 900);
    let probe = ffprobe(&tmp.join("out/360p.mp4"));
    assert_eq!(streams(&probe, "video")[0]["nb_frames"], "900");
}

#[test]
fn a_badly_damaged_video_is_rejected_with_the_count_of_damaged_frames() {
    let tmp = TempDir::new("damaged");
    let input = damaged_clip(&tmp, 200, 256);
    let err = transcode_360p(&input, &tmp.join("out")).unwrap_err();
    assert!(err.is_rejection(), "{err:?}");
    assert!(err.to_string().starts_with("too many damaged frames:"), "{err}");
    assert!(!tmp.join("out/360p.mp4").exists());
}
