//! Split and stitch against the unsplit transcode: a 20 s source planned in 6 s chunks, each chunk
//! encoded on its own, each rendition stitched, and the result read back by `ffprobe
//! -show_packets` beside the unsplit renditions: same frames, same duration within a frame, the
//! same 2 s keyframe grid, the audio within 25 ms, no timestamp gap, the index first. Each check
//! is also shown failing on a file made to fail it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use test_support::{TempDir, num, streams};
use transcode::chunk::{self, Plan};
use transcode::{CancelHandle, RenditionSpec, TranscodeOptions};

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

/// 20 s of 640x360 at 30 fps, a moving test pattern and a tone; H.264 with B-frames and the
/// encoder's own keyframe placement (none on the chunk boundaries), AAC.
fn source(dir: &Path) -> PathBuf {
    let out = dir.join("source.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30:duration=20",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=20",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-bf",
        "2",
        "-g",
        "250",
        "-c:a",
        "aac",
        out.to_str().unwrap(),
    ]);
    out
}

fn specs() -> Vec<RenditionSpec> {
    [("360p", 360), ("180p", 180)]
        .map(|(name, short_side)| RenditionSpec {
            name: name.into(),
            short_side,
        })
        .to_vec()
}

/// One packet as `ffprobe -show_packets` prints it (MP4 packets carry no duration of their own).
#[derive(Debug, Clone, PartialEq)]
struct Pkt {
    pts: f64,
    dts: f64,
    key: bool,
}

/// What `ffprobe -show_packets -show_streams` says of a file, read once for every check.
struct Probed {
    /// The video packets, in file order.
    video: Vec<Pkt>,
    /// The audio packets, in file order.
    audio: Vec<Pkt>,
    /// The video stream's duration, as the index says; 0 if none.
    video_seconds: f64,
    /// The audio stream's duration, as the index says; 0 if none.
    audio_seconds: f64,
}

fn probe(path: &Path) -> Probed {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_packets", "-show_streams"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for p in json["packets"].as_array().unwrap() {
        let pkt = Pkt {
            pts: num(&p["pts_time"]),
            dts: num(&p["dts_time"]),
            key: p["flags"].as_str().unwrap_or("").starts_with('K'),
        };
        match p["codec_type"].as_str() {
            Some("video") => video.push(pkt),
            Some("audio") => audio.push(pkt),
            _ => {}
        }
    }
    let duration = |kind| streams(&json, kind).first().map_or(0.0, |s| num(&s["duration"]));
    Probed {
        video,
        audio,
        video_seconds: duration("video"),
        audio_seconds: duration("audio"),
    }
}

fn keyframes(video: &[Pkt]) -> Vec<f64> {
    video.iter().filter(|p| p.key).map(|p| p.pts).collect()
}

const FRAME: f64 = 1.0 / 30.0;

fn same_frame_count(got: &Probed, want: &Probed) -> Result<(), String> {
    let (g, w) = (got.video.len(), want.video.len());
    (g == w).then_some(()).ok_or(format!("{g} frames against {w}"))
}

fn duration_within_a_frame(got: &Probed, want: &Probed) -> Result<(), String> {
    let (g, w) = (got.video_seconds, want.video_seconds);
    ((g - w).abs() <= FRAME)
        .then_some(())
        .ok_or(format!("{g} s against {w} s"))
}

fn keyframes_on_the_same_2s_grid(got: &Probed, want: &Probed) -> Result<(), String> {
    let (g, w) = (keyframes(&got.video), keyframes(&want.video));
    let on_grid = g.iter().all(|t| (t / 2.0 - (t / 2.0).round()).abs() < 1e-3);
    (g == w && on_grid)
        .then_some(())
        .ok_or(format!("keyframes at {g:?} against {w:?}"))
}

fn audio_within_25ms(got: &Probed, want: &Probed) -> Result<(), String> {
    let (g, w) = (got.audio_seconds, want.audio_seconds);
    (w > 0.0 && (g - w).abs() <= 0.025)
        .then_some(())
        .ok_or(format!("audio {g} s against {w} s"))
}

/// Every frame shown one frame after the one before, decoded in increasing order; every audio
/// packet one AAC frame (1 024 samples at 48 kHz) after the one before.
fn no_timestamp_gap(got: &Probed) -> Result<(), String> {
    let mut pts: Vec<f64> = got.video.iter().map(|p| p.pts).collect();
    pts.sort_by(f64::total_cmp);
    if let Some(w) = pts.windows(2).find(|w| (w[1] - w[0] - FRAME).abs() > 1e-3) {
        return Err(format!("video from {} s to {} s", w[0], w[1]));
    }
    if let Some(w) = got.video.windows(2).find(|w| w[1].dts <= w[0].dts) {
        return Err(format!("video decoded at {} s after {} s", w[1].dts, w[0].dts));
    }
    if let Some(w) = got
        .audio
        .windows(2)
        .find(|w| (w[1].pts - w[0].pts - 1_024.0 / 48_000.0).abs() > 1e-4)
    {
        return Err(format!("audio from {} s to {} s", w[0].pts, w[1].pts));
    }
    Ok(())
}

/// The SSIM of `a`'s pictures against `b`'s (FFmpeg's `ssim` filter, all planes).
fn ssim(a: &Path, b: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", "ssim", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    let at = log.rfind("All:").unwrap_or_else(|| panic!("no SSIM in {log}"));
    log[at + 4..].split_whitespace().next().unwrap().parse().unwrap()
}

/// The same pictures: against the source, the stitched rendition is as good as the unsplit one
/// (SSIM within 0.001); a picture off by one frame anywhere would cost far more.
fn same_pictures(got: &Path, want: &Path, source: &Path) -> Result<(), String> {
    let (g, w) = (ssim(got, source), ssim(want, source));
    ((g - w).abs() <= 0.001)
        .then_some(())
        .ok_or(format!("SSIM {g} against {w}"))
}

/// The kinds of an MP4's top-level boxes, in file order.
fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let (mut boxes, mut at) = (Vec::new(), 0);
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        at += match size {
            0 => bytes.len() - at,
            1 => u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize,
            n => n,
        };
    }
    boxes
}

fn moov_before_mdat(got: &Path) -> Result<(), String> {
    let boxes = top_level_boxes(got);
    let at = |kind: &str| boxes.iter().position(|b| b == kind);
    match (at("moov"), at("mdat")) {
        (Some(m), Some(d)) if m < d => Ok(()),
        _ => Err(format!("boxes {boxes:?}")),
    }
}

/// Every check of a stitched rendition against its unsplit twin, each file probed once.
fn compare(got: &Path, want: &Path) -> Result<(), String> {
    let (g, w) = (probe(got), probe(want));
    same_frame_count(&g, &w)?;
    duration_within_a_frame(&g, &w)?;
    keyframes_on_the_same_2s_grid(&g, &w)?;
    audio_within_25ms(&g, &w)?;
    no_timestamp_gap(&g)?;
    moov_before_mdat(got)
}

/// The CPU time this process used so far (every thread, user and system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which ends with the last ')'): utime and stime are the
    // 12th and 13th, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The source, its plan, the unsplit renditions, each chunk's files and the stitched renditions.
struct Made {
    dir: TempDir,
    source: PathBuf,
    plan: Plan,
    unsplit: Vec<PathBuf>,
    chunks: Vec<Vec<PathBuf>>,
    stitched: Vec<PathBuf>,
}

fn split_and_stitch() -> Made {
    let dir = TempDir::new("transcode-chunk-it");
    let source = source(dir.path());
    let info = transcode::probe(&source).unwrap();
    let plan = chunk::plan(&info, 6.0).expect("20 s is more than two 6 s chunks");
    let options = TranscodeOptions::default();
    let cancel = CancelHandle::new();
    let (started, cpu) = (std::time::Instant::now(), cpu_seconds());
    let whole = transcode::transcode(&source, &specs(), &dir.join("unsplit"), &options, &mut |_| {}, &cancel).unwrap();
    let unsplit_seconds = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let (started, cpu) = (std::time::Instant::now(), cpu_seconds());
    let mut chunks = vec![Vec::new(); specs().len()];
    for c in &plan.chunks {
        let report = chunk::transcode_chunk(
            &source,
            &specs(),
            c,
            &dir.join("chunks"),
            &options,
            &mut |_| {},
            &cancel,
        )
        .unwrap();
        for (r, o) in report.outputs.iter().enumerate() {
            chunks[r].push(o.path.clone());
        }
    }
    let chunks_seconds = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let (started, cpu) = (std::time::Instant::now(), cpu_seconds());
    let outputs: Vec<PathBuf> = specs().iter().map(|s| dir.join(format!("{}.mp4", s.name))).collect();
    // Every rendition at once: the audio is encoded once for the ladder.
    let reports = chunk::stitch_ladder(&chunks, chunk::StitchAudio::Encode(&source), &outputs).unwrap();
    let stitch_seconds = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let stitched: Vec<PathBuf> = reports.iter().map(|r| r.output.clone()).collect();
    assert_eq!(stitched, outputs);
    for (o, s) in whole.outputs.iter().zip(&reports) {
        eprintln!(
            "{}: unsplit {} frames {} bytes, stitched {} frames {} bytes ({:+.2}%)",
            o.name,
            o.frames,
            o.bytes,
            s.frames,
            s.bytes,
            (s.bytes as f64 / o.bytes as f64 - 1.0) * 100.0
        );
    }
    eprintln!(
        "wall (CPU) seconds: unsplit {:.2} ({:.2}), {} chunks {:.2} ({:.2}), stitch {:.2} ({:.2})",
        unsplit_seconds.0,
        unsplit_seconds.1,
        plan.chunks.len(),
        chunks_seconds.0,
        chunks_seconds.1,
        stitch_seconds.0,
        stitch_seconds.1
    );
    Made {
        unsplit: whole.outputs.iter().map(|o| o.path.clone()).collect(),
        dir,
        source,
        plan,
        chunks,
        stitched,
    }
}

#[test]
fn a_20s_source_in_6s_chunks_stitches_into_the_unsplit_renditions_twin_and_each_check_can_fail() {
    let made = split_and_stitch();
    // Ten 2 s GOPs in three chunks: 8 s, 6 s, 6 s.
    let bounds: Vec<_> = made.plan.chunks.iter().map(|c| (c.start_frame, c.end_frame)).collect();
    assert_eq!(bounds, [(0, 240), (240, 420), (420, 600)]);
    for (got, want) in made.stitched.iter().zip(&made.unsplit) {
        compare(got, want).unwrap_or_else(|e| panic!("{}: {e}", got.display()));
    }
    // Only the full-size rendition compares with the source picture for picture.
    let (got, want) = (&made.stitched[0], &made.unsplit[0]);
    same_pictures(got, want, &made.source).unwrap();
    assert_eq!(
        keyframes(&probe(&made.stitched[0]).video),
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    );

    // Each check, failing once on a file made to fail it.
    let (want, dir) = (&made.unsplit[0], made.dir.path());
    let (first_chunk, probed_want) = (probe(&made.chunks[0][0]), probe(want));
    assert!(
        same_frame_count(&first_chunk, &probed_want)
            .unwrap_err()
            .contains("240 frames against 600")
    );
    assert!(duration_within_a_frame(&first_chunk, &probed_want).is_err());
    let off_grid = dir.join("off-grid.mp4");
    ffmpeg(&[
        "-i",
        made.source.to_str().unwrap(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "45",
        "-c:a",
        "copy",
        off_grid.to_str().unwrap(),
    ]);
    let off_grid = probe(&off_grid);
    assert!(same_frame_count(&off_grid, &probed_want).is_ok());
    assert!(keyframes_on_the_same_2s_grid(&off_grid, &probed_want).is_err());
    let short_audio = dir.join("short-audio.mp4");
    let stitched = made.stitched[0].to_str().unwrap();
    ffmpeg(&[
        "-i",
        stitched,
        "-c:v",
        "copy",
        "-af",
        "atrim=0:19.9",
        "-c:a",
        "aac",
        short_audio.to_str().unwrap(),
    ]);
    assert!(
        audio_within_25ms(&probe(&short_audio), &probed_want)
            .unwrap_err()
            .starts_with("audio 19.9")
    );
    let gap = dir.join("gap.mp4");
    ffmpeg(&[
        "-i",
        stitched,
        "-vf",
        "setpts=PTS+gte(N\\,300)*0.5/TB",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-an",
        gap.to_str().unwrap(),
    ]);
    let gap = no_timestamp_gap(&probe(&gap));
    assert!(gap.as_ref().is_err_and(|e| e.starts_with("video from 9.96")), "{gap:?}");
    let shifted = dir.join("shifted.mp4");
    ffmpeg(&[
        "-i",
        stitched,
        "-vf",
        "trim=start_frame=1,setpts=PTS-STARTPTS",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-an",
        shifted.to_str().unwrap(),
    ]);
    assert!(same_pictures(&shifted, want, &made.source).is_err());
    let index_last = dir.join("index-last.mp4");
    ffmpeg(&["-i", stitched, "-c", "copy", index_last.to_str().unwrap()]);
    assert!(moov_before_mdat(&index_last).is_err());
    assert!(compare(&index_last, want).is_err());
}

/// The audio encoded ahead of the stitch (as the split Job does) and copied by it makes the very
/// files a stitch that encodes the audio itself makes: the same bytes, so the same audio.
#[test]
fn a_stitch_that_copies_the_audio_encoded_ahead_writes_the_same_files_as_one_that_encodes_it() {
    let made = split_and_stitch();
    let dir = made.dir.path();
    let audio = dir.join("audio.m4a");
    let report = chunk::encode_audio(&made.source, &audio, &CancelHandle::new())
        .unwrap()
        .expect("the source has audio");
    assert_eq!(report.output, audio);
    assert!(
        report.packets > 900,
        "20 s of AAC at 48 kHz is ~938 packets: {report:?}"
    );
    assert!((report.seconds - 20.0).abs() < 0.05, "{report:?}");
    let probed = probe(&audio);
    assert!(probed.video.is_empty(), "the audio file is audio only");
    assert_eq!(probed.audio.len() as u64, report.packets);

    let copied: Vec<PathBuf> = specs()
        .iter()
        .map(|s| dir.join(format!("copied-{}.mp4", s.name)))
        .collect();
    let reports = chunk::stitch_ladder(&made.chunks, chunk::StitchAudio::Copy(&audio), &copied).unwrap();
    for ((got, want), r) in copied.iter().zip(&made.stitched).zip(&reports) {
        assert!(r.audio_seconds.is_some(), "{r:?}");
        let (got_bytes, want_bytes) = (std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
        assert!(
            got_bytes == want_bytes,
            "{} ({} bytes) differs from {} ({} bytes)",
            got.display(),
            got_bytes.len(),
            want.display(),
            want_bytes.len()
        );
    }

    // A file without AAC audio is refused, and nothing is left behind.
    let refused = chunk::stitch_ladder(
        &made.chunks[..1],
        chunk::StitchAudio::Copy(&made.chunks[0][0]),
        &[dir.join("refused.mp4")],
    )
    .unwrap_err()
    .to_string();
    assert!(refused.contains("has no AAC stream"), "{refused}");
    assert!(!dir.join("refused.mp4").exists());
    // A source without audio has none to encode: nothing is written.
    let silent = dir.join("silent.m4a");
    assert!(
        chunk::encode_audio(&made.chunks[0][0], &silent, &CancelHandle::new())
            .unwrap()
            .is_none()
    );
    assert!(!silent.exists());
    // A cancel stops the encode and leaves nothing.
    let cancel = CancelHandle::new();
    cancel.cancel();
    let stopped = chunk::encode_audio(&made.source, &dir.join("stopped.m4a"), &cancel).unwrap_err();
    assert!(matches!(stopped, transcode::TranscodeError::Cancelled), "{stopped}");
    assert!(!dir.join("stopped.m4a").exists());
}

/// A source whose renditions meet their VBV cap (fine noise on every frame): each chunk's encode
/// starts with the buffer as full as the unsplit encode has it there, not x264's 90% for a
/// video's first frames, so the stitched file is as large as the unsplit one (it was 9% larger).
#[test]
fn a_vbv_capped_rendition_stitched_from_chunks_is_as_large_as_the_unsplit_one() {
    let dir = TempDir::new("transcode-chunk-vbv");
    let source = dir.join("noisy.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=854x480:rate=30:duration=18,noise=alls=40:allf=t+u",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        source.to_str().unwrap(),
    ]);
    let specs = vec![RenditionSpec {
        name: "360p".into(),
        short_side: 360,
    }];
    let plan = chunk::plan(&transcode::probe(&source).unwrap(), 6.0).expect("three chunks");
    let (options, cancel) = (TranscodeOptions::default(), CancelHandle::new());
    let whole = transcode::transcode(&source, &specs, &dir.join("unsplit"), &options, &mut |_| {}, &cancel).unwrap();
    let kbps = whole.outputs[0].bytes as f64 * 8.0 / 18.0 / 1000.0;
    assert!(
        kbps > 950.0,
        "the unsplit 360p must meet its 1000 kb/s cap: {kbps:.0} kb/s"
    );
    let mut chunks = Vec::new();
    for c in &plan.chunks {
        let report =
            chunk::transcode_chunk(&source, &specs, c, &dir.join("chunks"), &options, &mut |_| {}, &cancel).unwrap();
        chunks.push(report.outputs[0].path.clone());
    }
    let stitched = chunk::stitch(&chunks, &source, &dir.join("360p.mp4")).unwrap();
    let change = stitched.bytes as f64 / whole.outputs[0].bytes as f64 - 1.0;
    eprintln!(
        "360p at {kbps:.0} kb/s: stitched {:+.2}% against unsplit",
        change * 100.0
    );
    assert!(change.abs() < 0.02, "stitched {:+.2}% against unsplit", change * 100.0);
}

/// A file of `source`'s size holding only `ranges` of it (the rest reads as zeros, and takes no
/// disk: a sparse file), as a chunk Job that fetched those ranges alone would have it.
fn sparse_copy(source: &Path, ranges: &[(u64, u64)], to: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut from = std::fs::File::open(source).unwrap();
    let mut out = std::fs::File::create(to).unwrap();
    out.set_len(from.metadata().unwrap().len()).unwrap();
    for &(a, b) in ranges {
        let mut buf = vec![0u8; (b - a) as usize];
        from.seek(SeekFrom::Start(a)).unwrap();
        from.read_exact(&mut buf).unwrap();
        out.seek(SeekFrom::Start(a)).unwrap();
        out.write_all(&buf).unwrap();
    }
}

/// Every chunk of a source with its index at the end and of the same source with its index
/// first, encoded from a file holding only the chunk's ranges, has the pictures of the chunk
/// encoded from the whole file; a late chunk needs well under the whole file; a Matroska
/// source has no ranges (its chunks need the whole file); a file cut short is an error.
#[test]
fn a_chunk_encoded_from_its_source_ranges_alone_is_the_chunk_encoded_from_the_whole_source() {
    let dir = TempDir::new("transcode-chunk-ranges");
    let index_last = source(dir.path());
    let index_first = dir.join("faststart.mp4");
    ffmpeg(&[
        "-i",
        index_last.to_str().unwrap(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        index_first.to_str().unwrap(),
    ]);
    assert_eq!(top_level_boxes(&index_last).last().map(String::as_str), Some("moov"));
    assert_eq!(top_level_boxes(&index_first).iter().position(|b| b == "moov"), Some(1));
    let options = TranscodeOptions::default();
    let cancel = CancelHandle::new();
    for (name, whole) in [("index last", &index_last), ("index first", &index_first)] {
        let info = transcode::probe(whole).unwrap();
        let plan = chunk::plan(&info, 6.0).expect("20 s is more than two 6 s chunks");
        let size = std::fs::metadata(whole).unwrap().len();
        let all = chunk::source_ranges(whole, &plan.chunks)
            .unwrap()
            .expect("an MP4 source has ranges");
        assert_eq!(all.len(), plan.chunks.len(), "{name}");
        for (c, ranges) in plan.chunks.iter().zip(all) {
            let fetched: u64 = ranges.iter().map(|(a, b)| b - a).sum();
            eprintln!(
                "{name}, chunk {}: {} ranges, {fetched} of {size} bytes",
                c.index,
                ranges.len()
            );
            // The source's keyframes are 8.3 s apart: the last chunk (12 s on) is decoded from
            // the one at 8.3 s, and needs nothing before it.
            if c.is_last() {
                assert!(
                    fetched < size * 3 / 4,
                    "{name}: the last chunk needs {fetched} of {size} bytes"
                );
            }
            let sparse = dir.join(format!("sparse-{}.mp4", c.index));
            sparse_copy(whole, &ranges, &sparse);
            let tag = format!("{}-{}", name.replace(' ', "-"), c.index);
            let encode = |input: &Path, out: &str| {
                chunk::transcode_chunk(input, &specs(), c, &dir.join(out), &options, &mut |_| {}, &cancel)
                    .unwrap_or_else(|e| panic!("{name}, chunk {} from {}: {e}", c.index, input.display()))
            };
            let from_whole = encode(whole, &format!("whole-{tag}"));
            let from_ranges = encode(&sparse, &format!("ranges-{tag}"));
            // Two encodes of the same chunk are not always the same bytes (the encoder's
            // threads), so the pictures are compared: a picture decoded from a hole (zeros) or
            // one frame off would cost far more than 0.01.
            for (w, r) in from_whole.outputs.iter().zip(&from_ranges.outputs) {
                assert_eq!(w.frames, r.frames, "{name}, chunk {}, {}", c.index, w.name);
                let similar = ssim(&r.path, &w.path);
                assert!(
                    similar >= 0.99,
                    "{name}, chunk {}, {}: SSIM {similar} of the encode from the ranges against the encode from the whole file",
                    c.index,
                    w.name
                );
            }
        }
    }
    let mkv = dir.join("source.mkv");
    ffmpeg(&["-i", index_last.to_str().unwrap(), "-c", "copy", mkv.to_str().unwrap()]);
    let info = transcode::probe(&mkv).unwrap();
    let plan = chunk::plan(&info, 6.0).unwrap();
    assert_eq!(chunk::source_ranges(&mkv, &plan.chunks).unwrap(), None);
    // A file cut short (its index first, so it still opens): its boxes do not add up.
    let cut = dir.join("cut.mp4");
    let mut bytes = std::fs::read(&index_first).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&cut, bytes).unwrap();
    let e = chunk::source_ranges(&cut, &plan.chunks).unwrap_err().to_string();
    assert!(e.contains("cut.mp4") && e.contains("runs past"), "{e}");
}
