//! Encoding and stitching chunks of a source made on the spot (with the `ffmpeg` tool: a test
//! input, not the product's encoding), against the unsplit transcode of the same source.

use std::path::{Path, PathBuf};
use std::process::Command;

use ffmpeg_next::Packet;
use test_support::TempDir;

use super::stitch::{ChunkFile, verify};
use super::*;
use crate::{CancelHandle, RenditionSpec, TranscodeError, TranscodeOptions, TranscodeReport};

/// 12 s of 128x72 at 25 fps with a tone; H.264 with B-frames and a keyframe every 37 frames, so
/// that no chunk starts on a source keyframe.
fn source(dir: &TempDir) -> PathBuf {
    made_with_ffmpeg(dir, "source.mp4", "37")
}

/// The same 12 s as MPEG-TS (no index: seeks are rough; a start time of 1.4 s) with one keyframe
/// every 10 s, so that a chunk starts far from any.
fn ts_source(dir: &TempDir) -> PathBuf {
    made_with_ffmpeg(dir, "source.ts", "250")
}

fn made_with_ffmpeg(dir: &TempDir, name: &str, gop: &str) -> PathBuf {
    let path = dir.join(name);
    let video = "testsrc2=size=128x72:rate=25:duration=12";
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", video])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=12"])
        .args(["-c:v", "libx264", "-g", gop, "-bf", "2", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): install Debian's ffmpeg package (scripts/test.sh does)"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

fn specs() -> Vec<RenditionSpec> {
    [("72p", 72), ("36p", 36)]
        .map(|(name, short_side)| RenditionSpec {
            name: name.into(),
            short_side,
        })
        .to_vec()
}

fn the_plan(input: &Path) -> Plan {
    plan(&crate::probe(input).unwrap(), 4.0).expect("12 s is three 4 s chunks")
}

fn encode(input: &Path, chunk: &Chunk, out: &Path) -> crate::Result<TranscodeReport> {
    let options = TranscodeOptions::default();
    transcode_chunk(input, &specs(), chunk, out, &options, &mut |_| {}, &CancelHandle::new())
}

/// Every chunk of the plan encoded into `dir/chunks`: the files of each rendition, in order.
fn encode_all(input: &Path, plan: &Plan, dir: &TempDir) -> Vec<Vec<PathBuf>> {
    let out = dir.join("chunks");
    let mut per_rendition = vec![Vec::new(); specs().len()];
    for chunk in &plan.chunks {
        let report = encode(input, chunk, &out).unwrap();
        for (r, o) in report.outputs.iter().enumerate() {
            assert_eq!(o.path, out.join(chunk_file_name(&o.name, chunk.index)));
            per_rendition[r].push(o.path.clone());
        }
        assert_eq!(
            chunk_paths(&specs(), chunk, &out),
            per_rendition.iter().map(|p| p[chunk.index].clone()).collect::<Vec<_>>()
        );
    }
    per_rendition
}

/// The video packets of a file: presentation time in seconds, and whether each is a keyframe.
fn video_packets(path: &Path) -> Vec<(f64, bool)> {
    let mut ictx = crate::probe::open_input(path).unwrap();
    let index = ictx.streams().best(ffmpeg_next::media::Type::Video).unwrap().index();
    let tb = ictx.stream(index).unwrap().time_base();
    let mut out = Vec::new();
    loop {
        let mut p = Packet::empty();
        match p.read(&mut ictx) {
            Ok(()) if p.stream() == index => out.push((crate::pipeline::ts_seconds(p.pts().unwrap(), tb), p.is_key())),
            Ok(()) => {}
            Err(_) => break,
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn keyframe_times(path: &Path) -> Vec<f64> {
    video_packets(path).into_iter().filter(|p| p.1).map(|p| p.0).collect()
}

#[test]
fn chunks_encoded_one_by_one_and_stitched_have_the_unsplit_frames_duration_keyframes_and_audio() {
    let dir = TempDir::new("transcode-chunk");
    let input = source(&dir);
    let plan = the_plan(&input);
    assert_eq!(
        plan.chunks
            .iter()
            .map(|c| (c.start_frame, c.end_frame))
            .collect::<Vec<_>>(),
        [(0, 100), (100, 200), (200, 300)]
    );
    let chunks = encode_all(&input, &plan, &dir);
    // Each chunk: its frames only, a keyframe first, timed as in the whole output, no audio.
    for (chunk, path) in plan.chunks.iter().zip(&chunks[0]) {
        let packets = video_packets(path);
        assert_eq!(packets.len() as u64, chunk.frames(), "{}", path.display());
        assert!(packets[0].1, "chunk {} starts with a keyframe", chunk.index);
        assert!((packets[0].0 - chunk.start_seconds).abs() < 1e-3, "{:?}", packets[0]);
        assert!(crate::probe(path).unwrap().audio.is_none());
    }
    let whole = crate::transcode(
        &input,
        &specs(),
        &dir.join("whole"),
        &TranscodeOptions::default(),
        &mut |_| {},
        &CancelHandle::new(),
    )
    .unwrap();
    for (r, files) in chunks.iter().enumerate() {
        let output = dir.join(format!("{}.mp4", specs()[r].name));
        let report = stitch(files, &input, &output).unwrap();
        let unsplit = &whole.outputs[r];
        assert_eq!((report.chunks, report.frames), (3, unsplit.frames));
        let (got, want) = (crate::probe(&output).unwrap(), crate::probe(&unsplit.path).unwrap());
        let (gv, wv) = (got.video.unwrap(), want.video.unwrap());
        assert_eq!((gv.width, gv.height, gv.frames), (wv.width, wv.height, wv.frames));
        assert!(
            (report.video_seconds - wv.duration_seconds.unwrap()).abs() <= 0.04,
            "{report:?}"
        );
        assert_eq!(keyframe_times(&output), keyframe_times(&unsplit.path));
        assert_eq!(keyframe_times(&output), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let (ga, wa) = (
            report.audio_seconds.unwrap(),
            want.audio.unwrap().duration_seconds.unwrap(),
        );
        assert!((ga - wa).abs() <= 0.025, "audio {ga} s against {wa} s");
    }
}

#[test]
fn a_source_that_seeks_roughly_and_starts_late_is_split_and_stitched_as_well() {
    let dir = TempDir::new("transcode-chunk");
    let input = ts_source(&dir);
    let info = crate::probe(&input).unwrap();
    let plan = plan(&info, 4.0).expect("12 s is three 4 s chunks");
    let chunks = encode_all(&input, &plan, &dir);
    // The video starts a little after the audio: every output, unsplit or not, starts there.
    let lead = video_packets(&chunks[0][0])[0].0;
    assert!(lead > 0.0 && lead < 0.1, "{lead}");
    for (chunk, path) in plan.chunks.iter().zip(&chunks[0]) {
        let packets = video_packets(path);
        assert_eq!(packets.len() as u64, chunk.frames(), "{}", path.display());
        assert!(
            (packets[0].0 - lead - chunk.start_seconds).abs() < 1e-3,
            "{:?}",
            packets[0]
        );
    }
    let output = dir.join("out.mp4");
    let report = stitch(&chunks[0], &input, &output).unwrap();
    let whole = crate::transcode(
        &input,
        &specs()[..1],
        &dir.join("whole"),
        &TranscodeOptions::default(),
        &mut |_| {},
        &CancelHandle::new(),
    )
    .unwrap();
    assert_eq!(report.frames, whole.outputs[0].frames);
    assert_eq!(report.frames, 300);
    assert_eq!(keyframe_times(&output), keyframe_times(&whole.outputs[0].path));
    let audio = crate::probe(&whole.outputs[0].path).unwrap().audio.unwrap();
    assert!(
        (report.audio_seconds.unwrap() - audio.duration_seconds.unwrap()).abs() <= 0.025,
        "{report:?}"
    );
}

#[test]
fn a_chunk_outside_its_plan_or_beyond_the_source_is_refused_and_leaves_no_file() {
    let dir = TempDir::new("transcode-chunk");
    let input = source(&dir);
    let plan = the_plan(&input);
    let out = dir.join("chunks");
    let refused = |chunk: &Chunk| match encode(&input, chunk, &out) {
        Err(TranscodeError::Chunk(why)) => why,
        other => panic!("{other:?}"),
    };
    let outside = Chunk {
        index: 3,
        ..plan.chunks[2].clone()
    };
    assert!(refused(&outside).contains("out of range: chunk 3 of a plan of 3"));
    let backwards = Chunk {
        end_frame: 100,
        ..plan.chunks[1].clone()
    };
    assert!(refused(&backwards).contains("out of range"));
    // A plan made for a longer source: its last chunk starts after this one ends.
    let beyond = Chunk {
        start_frame: 400,
        end_frame: 500,
        start_seconds: 16.0,
        end_seconds: 20.0,
        ..plan.chunks[2].clone()
    };
    let why = refused(&beyond);
    assert!(why.contains("beyond the end of the source"), "{why}");
    // A middle chunk that the source cannot fill.
    let short = Chunk {
        index: 1,
        start_frame: 250,
        end_frame: 350,
        start_seconds: 10.0,
        end_seconds: 14.0,
        ..plan.chunks[1].clone()
    };
    let why = refused(&short);
    assert!(why.contains("has 50 frames where the plan has 100"), "{why}");
    assert!(std::fs::read_dir(&out).map_or(0, |d| d.count()) == 0);
}

#[test]
fn a_stitch_refuses_missing_foreign_misplaced_or_no_chunks_and_leaves_no_file() {
    let dir = TempDir::new("transcode-chunk");
    let input = source(&dir);
    let plan = the_plan(&input);
    let chunks = encode_all(&input, &plan, &dir);
    let output = dir.join("out.mp4");
    let refused = |files: &[PathBuf]| {
        let why = match stitch(files, &input, &output) {
            Err(TranscodeError::Chunk(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(!output.exists(), "{why}");
        why
    };
    let mut missing = chunks[0].clone();
    missing[1] = dir.join("chunks/nothing-here.mp4");
    assert!(refused(&missing).starts_with("chunk 1 is missing"));
    let mixed = [chunks[0][0].clone(), chunks[1][1].clone(), chunks[0][2].clone()];
    let why = refused(&mixed);
    assert!(
        why.contains("chunk 1") && why.contains("64x36 pictures") && why.contains("chunks of different renditions"),
        "{why}"
    );
    let gap = [chunks[0][0].clone(), chunks[0][2].clone()];
    assert!(refused(&gap).contains("chunk 1 starts at 8.000 s where the chunk before ends at 4.000 s"));
    let swapped = [chunks[0][1].clone(), chunks[0][0].clone(), chunks[0][2].clone()];
    assert!(refused(&swapped).contains("a chunk is missing, repeated or out of order"));
    assert!(refused(std::slice::from_ref(&input)).contains("is not one video stream"));
    assert_eq!(refused(&[]), "no chunk to stitch");
    // A ladder: every rendition has as many chunks as the first, and one output each.
    let outputs = [dir.join("a.mp4"), dir.join("b.mp4")];
    let uneven = [chunks[0].clone(), chunks[1][..2].to_vec()];
    let err = stitch_ladder(&uneven, StitchAudio::Encode(&input), &outputs).unwrap_err();
    assert!(
        err.to_string()
            .contains("rendition 1 has 2 chunks where rendition 0 has 3"),
        "{err}"
    );
    let err = stitch_ladder(&chunks, StitchAudio::Encode(&input), &outputs[..1]).unwrap_err();
    assert!(
        err.to_string().contains("2 renditions of chunks for 1 outputs"),
        "{err}"
    );
    assert!(outputs.iter().all(|o| !o.exists()));
}

#[test]
fn the_stitched_file_is_refused_when_its_frames_or_its_duration_do_not_add_up() {
    let dir = TempDir::new("transcode-chunk");
    let input = source(&dir);
    let plan = the_plan(&input);
    let chunks = encode_all(&input, &plan, &dir);
    let output = dir.join("out.mp4");
    let report = stitch(&chunks[1], &input, &output).unwrap();
    let files: Vec<_> = chunks[1]
        .iter()
        .enumerate()
        .map(|(i, p)| ChunkFile::read(i, p).unwrap())
        .collect();
    assert!(verify(&output, &files, 300, report.video_seconds).is_ok());
    let err = verify(&output, &files, 299, report.video_seconds).unwrap_err();
    assert!(
        err.to_string()
            .contains("300 frames (299 written) where the chunks have 300"),
        "{err}"
    );
    let mut more = files.clone();
    more[2].frames += 1;
    assert!(verify(&output, &more, 300, report.video_seconds).is_err());
    let err = verify(&output, &files, 300, report.video_seconds + 0.05).unwrap_err();
    assert!(err.to_string().contains("the stitched video lasts 12.000 s"), "{err}");
}

#[test]
fn a_cancelled_chunk_stops_and_leaves_no_file() {
    let dir = TempDir::new("transcode-chunk");
    let input = source(&dir);
    let plan = the_plan(&input);
    let out = dir.join("chunks");
    let cancel = CancelHandle::new();
    cancel.cancel();
    let options = TranscodeOptions::default();
    let err = transcode_chunk(&input, &specs(), &plan.chunks[1], &out, &options, &mut |_| {}, &cancel).unwrap_err();
    assert!(matches!(err, TranscodeError::Cancelled), "{err:?}");
    assert!(chunk_paths(&specs(), &plan.chunks[1], &out).iter().all(|p| !p.exists()));
}
