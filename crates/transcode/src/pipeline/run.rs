//! The transcode itself: [`transcode()`] opens the input and the stages, reads the packets, hands
//! each to the video or the audio stage, and fans the results out to one worker thread per
//! rendition; it reports progress, honours its [`CancelHandle`], and removes its partial outputs
//! whenever it does not finish.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ffmpeg::{Packet, Rational, frame};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use super::audio::AudioPipe;
use super::mux::{RenditionMux, VideoInput};
use super::report::{Progress, RenditionOutput, TranscodeReport};
use super::time::ts_seconds;
use super::video::{VideoPipe, nominal_fps};
use crate::error::{FfmpegContext, Result, TranscodeError};
use crate::geometry::rendition_size;
use crate::ladder::{self, VideoSettings};
use crate::probe;

/// One rendition to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionSpec {
    /// The file stem: the rendition is written to `{output_dir}/{name}.mp4`.
    pub name: String,
    /// The short side of the displayed picture, in pixels (never upscaled).
    pub short_side: u32,
}

/// Encoder settings shared by every rendition of a transcode.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscodeOptions {
    /// The x264 preset.
    pub preset: String,
    /// The x264 constant-quality target.
    pub crf: u8,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            preset: ladder::DEFAULT_PRESET.to_owned(),
            crf: ladder::DEFAULT_CRF,
        }
    }
}

/// Stops a running transcode from another thread. Clones share the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A handle that has not been cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the transcode to stop; it returns [`TranscodeError::Cancelled`] soon after.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Transcodes `input` into one MP4 per rendition in `output_dir`, decoding the source once.
///
/// # Errors
///
/// A rejection ([`TranscodeError::is_rejection`]) when the input is not a usable video, with the
/// reason; [`TranscodeError::Cancelled`] when `cancel` was used; other variants for failures that
/// may be transient. On any error no output file is left behind.
pub fn transcode(
    input: &Path,
    renditions: &[RenditionSpec],
    output_dir: &Path,
    options: &TranscodeOptions,
    progress: &mut dyn FnMut(&Progress),
    cancel: &CancelHandle,
) -> Result<TranscodeReport> {
    transcode_window(input, renditions, output_dir, options, None, progress, cancel)
}

/// A part of the source to encode instead of all of it: one chunk of a split encode.
///
/// The input is sought to the keyframe at or before `seek_seconds`; every picture is decoded
/// from there (the shared filters see them all), but only those presented in
/// `[start_seconds, end_seconds)` reach the renditions, with the timestamps they have in a whole
/// transcode. The renditions have no audio: a split encode adds it once, when it stitches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    /// Where to seek to, in seconds from the start of the output (at or before `start_seconds`);
    /// 0: no seek, the decode starts at the beginning.
    pub(crate) seek_seconds: f64,
    /// The first instant kept, in seconds from the start of the output.
    pub(crate) start_seconds: f64,
    /// The first instant no longer kept; `None`: to the end of the source.
    pub(crate) end_seconds: Option<f64>,
    /// Added to each rendition's file stem: `{output_dir}/{name}{file_suffix}.mp4`.
    pub(crate) file_suffix: String,
}

/// [`transcode()`], of the whole source (`window` = `None`) or of a [`Window`] of it.
///
/// # Errors
///
/// As [`transcode()`]; for a window, also [`TranscodeError::Chunk`] when no picture lies in it.
pub(crate) fn transcode_window(
    input: &Path,
    renditions: &[RenditionSpec],
    output_dir: &Path,
    options: &TranscodeOptions,
    window: Option<&Window>,
    progress: &mut dyn FnMut(&Progress),
    cancel: &CancelHandle,
) -> Result<TranscodeReport> {
    if renditions.is_empty() {
        return Err(TranscodeError::Options("no rendition asked for".into()));
    }
    let started = Instant::now();
    let mut guard = OutputGuard::default();
    let target = Target {
        output_dir,
        options,
        window,
    };
    let report = run(input, renditions, &target, progress, cancel, &mut guard, started)?;
    guard.keep();
    Ok(report)
}

/// Where and how a run writes: the output folder, the encoder settings, the part of the source.
struct Target<'a> {
    output_dir: &'a Path,
    options: &'a TranscodeOptions,
    window: Option<&'a Window>,
}

/// The VBV buffer's fill when a window after the start of the source starts encoding: x264
/// starts every encode with it 90% full, right for a video's first frames, but the unsplit encode
/// reaches a chunk's start with its buffer drained to its running level, so a chunk starting at
/// 90% spends a burst of bits the unsplit encode does not (+9% size at a VBV-capped rung).
const MID_STREAM_VBV_INIT: Option<f64> = Some(0.5);

/// How the error of a window whose seek landed after its start begins: the caller may try again
/// from further back (containers without an index seek only roughly).
pub(crate) const SEEK_LANDED_LATE: &str = "the seek landed at";

/// How long after the input's start its video stream starts, in seconds (a transport stream's
/// video often starts a few frames after its audio): the output's first frame is there, and a
/// window counts its frames from it.
fn video_lead(ictx: &ffmpeg::format::context::Input, index: usize, start_us: i64) -> f64 {
    let stream = ictx.stream(index).expect("index comes from this input");
    let tb = stream.time_base();
    match stream.start_time() {
        t if t == ffi::AV_NOPTS_VALUE => 0.0,
        t => ts_seconds(t, tb) - start_us as f64 / 1e6,
    }
}

/// What a [`Window`] lets through, counted.
#[derive(Debug, Default)]
struct Cut {
    /// The window, in seconds: start, end.
    bounds: Option<(f64, Option<f64>)>,
    /// Where the video starts, in seconds, and the window with it.
    lead: f64,
    /// The first picture's instant, to tell a seek that landed too late.
    first_seconds: Option<f64>,
    /// Pictures kept.
    kept: u64,
    /// A picture at or after the end was seen: nothing more to keep.
    done: bool,
}

impl Cut {
    fn new(window: Option<&Window>, lead: f64) -> Self {
        Self {
            bounds: window.map(|w| (w.start_seconds, w.end_seconds)),
            lead,
            ..Self::default()
        }
    }

    /// Whether the picture at `pts` in `tb` goes to the renditions.
    fn keep(&mut self, pts: Option<i64>, tb: Rational) -> bool {
        let Some((start, end)) = self.bounds else {
            self.kept += 1;
            return true;
        };
        let t = pts.map_or(f64::NAN, |p| ts_seconds(p, tb)) - self.lead;
        if self.first_seconds.is_none() {
            self.first_seconds = Some(t);
            // The seek landed after the start: stop now, before encoding anything.
            self.done = start.is_finite() && t > start;
            if self.done {
                return false;
            }
        }
        if end.is_some_and(|e| t >= e) {
            self.done = true;
            return false;
        }
        let kept = t >= start;
        self.kept += u64::from(kept);
        kept
    }

    /// Refuses a window the decode did not cover from its start, or that held no picture.
    fn check(&self) -> Result<()> {
        let Some((start, _)) = self.bounds else {
            return Ok(());
        };
        if start.is_finite() && self.first_seconds.is_some_and(|f| f > start) {
            return Err(TranscodeError::Chunk(format!(
                "{SEEK_LANDED_LATE} {:.3} s, after the chunk's start at {start:.3} s",
                self.first_seconds.unwrap_or_default()
            )));
        }
        if self.kept == 0 {
            return Err(TranscodeError::Chunk(format!(
                "no picture from {start:.3} s on: the chunk lies beyond the end of the source"
            )));
        }
        Ok(())
    }
}

/// Deletes the files it holds unless told to keep them.
#[derive(Default)]
struct OutputGuard {
    paths: Vec<PathBuf>,
    keep: bool,
}

impl OutputGuard {
    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        if !self.keep {
            for p in &self.paths {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn run(
    input_path: &Path,
    renditions: &[RenditionSpec],
    target: &Target,
    progress: &mut dyn FnMut(&Progress),
    cancel: &CancelHandle,
    guard: &mut OutputGuard,
    started: Instant,
) -> Result<TranscodeReport> {
    let Target {
        output_dir,
        options,
        window,
    } = *target;
    let mut ictx = probe::open_input(input_path)?;
    let info = probe::describe(&ictx);
    let Some(vinfo) = info.video.clone() else {
        return Err(no_video_reason(&ictx));
    };
    if vinfo.width == 0 || vinfo.height == 0 {
        return Err(TranscodeError::Undecodable(
            "the video stream declares no picture size".into(),
        ));
    }
    let start_us = start_time_us(&ictx);

    let mut video = VideoPipe::open(&ictx, &vinfo, start_us, renditions.len())?;
    let mut audio = match &info.audio {
        Some(a) if window.is_none() => Some(AudioPipe::open(&ictx, a.index, start_us)?),
        _ => None,
    };
    if let Some(w) = window.filter(|w| w.seek_seconds > 0.0) {
        // At or before: the keyframe whose decode gives the chunk's first picture.
        let at = start_us.saturating_add((w.seek_seconds * 1e6) as i64);
        ictx.seek(at, ..at).ctx("seeking to the chunk")?;
    }
    let mut cut = Cut::new(window, video_lead(&ictx, vinfo.index, start_us));

    let fps = nominal_fps(&vinfo);
    std::fs::create_dir_all(output_dir).map_err(|source| TranscodeError::Io {
        path: output_dir.display().to_string(),
        source,
    })?;
    let display = (vinfo.display_width, vinfo.display_height);
    let pictures = VideoInput {
        time_base: video.stats.time_base,
        frame_step: video.stats.frame_step,
        colours: video.colours(),
    };
    let mut muxes = Vec::with_capacity(renditions.len());
    for spec in renditions {
        let (width, height) = rendition_size(display, spec.short_side);
        let mut settings = VideoSettings::new(width.min(height), fps, &options.preset, options.crf);
        settings.vbv_init = window.filter(|w| w.start_seconds > 0.0).and(MID_STREAM_VBV_INIT);
        let suffix = window.map_or("", |w| w.file_suffix.as_str());
        let path = output_dir.join(format!("{}{suffix}.mp4", spec.name));
        guard.paths.push(path.clone());
        muxes.push(RenditionMux::create(
            &spec.name,
            path,
            (width, height),
            &settings,
            &pictures,
            audio.as_ref().map(AudioPipe::encoder),
            renditions.len(),
        )?);
    }

    let mut outputs = Renditions::spawn(muxes)?;

    let duration = vinfo.duration_seconds.or(info.duration_seconds);
    let mut last_report = Instant::now();
    let mut read_errors = 0u32;
    loop {
        if cancel.is_cancelled() {
            return Err(TranscodeError::Cancelled);
        }
        let Some(packet) = next_packet(&mut ictx, &mut read_errors) else {
            break;
        };
        let index = packet.stream();
        if index == video.index {
            video.decode(Some(&packet), &mut |f, tb| match cut.keep(f.pts(), tb) {
                true => outputs.send_video(f, tb),
                false => Ok(()),
            })?;
            if cut.done {
                break;
            }
        } else if let Some(a) = audio.as_mut().filter(|a| a.index == index) {
            a.decode(Some(&packet), &mut |p, tb| outputs.send_audio(p, tb))?;
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            progress(&video.stats.progress(duration, started.elapsed()));
        }
    }
    if cancel.is_cancelled() {
        return Err(TranscodeError::Cancelled);
    }
    video.decode(None, &mut |f, tb| match cut.keep(f.pts(), tb) {
        true => outputs.send_video(f, tb),
        false => Ok(()),
    })?;
    if let Some(a) = audio.as_mut() {
        a.decode(None, &mut |p, tb| outputs.send_audio(p, tb))?;
    }
    if window.is_some() {
        // A window is checked against itself (the announced length is the whole source's), and
        // its decode against the damage policy.
        cut.check()?;
        video.stats.check_damage()?;
    } else {
        video.stats.check_complete(&vinfo, info.duration_seconds)?;
    }
    progress(&video.stats.progress(duration, started.elapsed()));

    let results = outputs.finish()?;
    Ok(TranscodeReport {
        source: info,
        frames_decoded: video.stats.frames,
        decode_errors: video.stats.errors,
        decoded_seconds: video.stats.span_seconds(),
        has_audio: audio.is_some(),
        tone_mapped: video.tone_mapped(),
        deinterlaced: video.deinterlaced(),
        outputs: results,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Read errors in a row after which an input is taken to end there.
const MAX_READ_ERRORS: u32 = 32;

/// The input's next packet; `None` at its end, or once [`MAX_READ_ERRORS`] reads in a row have
/// failed (a damaged or cut-off file: what cannot be read is skipped, and reading stops when
/// nothing more can be). `errors` counts the failures in a row between calls. The transcode and
/// the stitch's audio read the same way, so both see the same packets of a damaged source.
pub(crate) fn next_packet(ictx: &mut ffmpeg::format::context::Input, errors: &mut u32) -> Option<Packet> {
    loop {
        // A fresh packet each time: reading into a used one would leak its data.
        let mut packet = Packet::empty();
        match packet.read(ictx) {
            Ok(()) => {
                *errors = 0;
                return Some(packet);
            }
            Err(ffmpeg::Error::Eof) => return None,
            Err(_) => {
                *errors += 1;
                if *errors > MAX_READ_ERRORS {
                    return None;
                }
            }
        }
    }
}

/// The input's start time in microseconds (0 when it has none): what every stage subtracts so
/// that the outputs start at zero.
pub(crate) fn start_time_us(ictx: &ffmpeg::format::context::Input) -> i64 {
    // SAFETY: reading a plain field of the open input.
    match unsafe { (*ictx.as_ptr()).start_time } {
        t if t == ffi::AV_NOPTS_VALUE => 0,
        t => t,
    }
}

/// The rejection for a file with no usable video stream, saying what it holds instead.
fn no_video_reason(ictx: &ffmpeg::format::context::Input) -> TranscodeError {
    let has = |t| ictx.streams().any(|s| s.parameters().medium() == t);
    let cover_art = ictx.streams().any(|s| {
        s.disposition()
            .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
    });
    TranscodeError::NoVideo(if cover_art {
        "no video stream: the only picture is cover art (an attached picture), so this is an audio file"
    } else if has(ffmpeg::media::Type::Audio) {
        "no video stream: this is an audio-only file"
    } else {
        "no video stream in the file"
    })
}

/// What the decoding thread sends each rendition's worker.
enum Msg {
    /// A picture (a new reference to the shared frame) and its time base.
    Video(frame::Video, Rational),
    /// An AAC packet (shared by every rendition) and its time base.
    Audio(Packet, Rational),
    /// Everything was sent: finish the file.
    End,
}

/// Frames in flight to each worker: enough to keep it busy, few enough to bound memory.
const WORKER_QUEUE: usize = 16;

/// The worker's loop, on its own thread: scale and encode every frame, write every audio packet,
/// until the end (then finish the file) or until the sender goes away (then stop).
fn work(mut mux: RenditionMux, rx: mpsc::Receiver<Msg>) -> Result<RenditionOutput> {
    for msg in rx {
        match msg {
            Msg::Video(mut frame, tb) => mux.push_video(&mut frame, tb)?,
            Msg::Audio(packet, tb) => mux.push_audio(&packet, tb)?,
            Msg::End => return mux.finish(),
        }
    }
    Err(TranscodeError::Cancelled)
}

/// The renditions, each scaled, encoded and muxed on a thread of its own, so that the scalers
/// and the encoders of a ladder run in parallel while the source is decoded once.
struct Renditions {
    workers: Vec<(mpsc::SyncSender<Msg>, std::thread::JoinHandle<Result<RenditionOutput>>)>,
}

impl Renditions {
    fn spawn(muxes: Vec<RenditionMux>) -> Result<Self> {
        let mut workers = Vec::with_capacity(muxes.len());
        for mux in muxes {
            let (tx, rx) = mpsc::sync_channel(WORKER_QUEUE);
            let handle = std::thread::Builder::new()
                .name(format!("rendition-{}", mux.name()))
                .spawn(move || work(mux, rx))
                .map_err(|source| TranscodeError::Io {
                    path: "a rendition thread".into(),
                    source,
                })?;
            workers.push((tx, handle));
        }
        Ok(Self { workers })
    }

    fn send_video(&mut self, frame: &frame::Video, tb: Rational) -> Result<()> {
        for i in 0..self.workers.len() {
            let mut shared = frame::Video::empty();
            // SAFETY: a new reference to the same buffers; both frames are valid.
            let r = unsafe { ffi::av_frame_ref(shared.as_mut_ptr(), frame.as_ptr()) };
            if r < 0 {
                return Err(ffmpeg::Error::from(r)).ctx("sharing a frame with a rendition");
            }
            self.send(i, Msg::Video(shared, tb))?;
        }
        Ok(())
    }

    fn send_audio(&mut self, packet: &Packet, tb: Rational) -> Result<()> {
        for i in 0..self.workers.len() {
            self.send(i, Msg::Audio(packet.clone(), tb))?;
        }
        Ok(())
    }

    fn send(&mut self, i: usize, msg: Msg) -> Result<()> {
        if self.workers[i].0.send(msg).is_ok() {
            return Ok(());
        }
        // The worker stopped on an error of its own: that error is the one to report.
        let (_, handle) = self.workers.remove(i);
        Err(match handle.join() {
            Ok(Err(e)) => e,
            _ => TranscodeError::Options("a rendition worker stopped unexpectedly".into()),
        })
    }

    /// Tells every worker that all was sent and collects the finished renditions, in order.
    fn finish(mut self) -> Result<Vec<RenditionOutput>> {
        let workers = std::mem::take(&mut self.workers);
        let mut results = Vec::with_capacity(workers.len());
        let mut first_error = None;
        for (tx, handle) in workers {
            let _ = tx.send(Msg::End);
            drop(tx);
            match handle.join() {
                Ok(Ok(out)) => results.push(out),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(TranscodeError::Options("a rendition worker panicked".into()));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }
}

impl Drop for Renditions {
    /// Stops the workers that are still running (their channel closes) and waits for them, so no
    /// thread outlives the transcode and every file is closed before the partial ones are removed.
    fn drop(&mut self) {
        for (tx, handle) in self.workers.drain(..) {
            drop(tx);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use test_support::TempDir;

    use super::*;
    use crate::pipeline::audio::AacEncoder;
    use crate::pipeline::fixtures::{tone, write_wav};
    use crate::pipeline::mux::sample::{SD, write_mp4};

    fn spec(name: &str, short_side: u32) -> RenditionSpec {
        RenditionSpec {
            name: name.into(),
            short_side,
        }
    }

    /// A temporary directory with a source of `frames` pictures of `size` at 25 fps and as much
    /// AAC audio, and the path of an output directory in it.
    fn setup(size: (u32, u32), frames: i64) -> (TempDir, PathBuf, PathBuf) {
        let dir = TempDir::new("transcode-run");
        let input = source(&dir, size, frames);
        let out = dir.join("out");
        (dir, input, out)
    }

    /// Every packet of a source, through the one reader the transcode and the stitch share.
    fn packets(path: &Path) -> usize {
        let mut ictx = probe::open_input(path).unwrap();
        let mut errors = 0;
        std::iter::from_fn(|| next_packet(&mut ictx, &mut errors)).count()
    }

    #[test]
    fn the_shared_reader_reads_a_file_to_its_end_and_a_cut_off_one_to_the_cut() {
        let (dir, input, _) = setup((64, 36), 50);
        let whole = packets(&input);
        // 50 pictures and about 2 s of AAC (1024 samples a packet at 48 kHz).
        assert!((50 + 90..=50 + 98).contains(&whole), "{whole} packets");
        let bytes = std::fs::read(&input).unwrap();
        let cut = dir.join("cut.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let read = packets(&cut);
        assert!(read > 0 && read < whole, "{read} of {whole} packets before the cut");
    }

    /// A source of `frames` pictures of `size` at 25 fps with as much AAC audio, in `dir`.
    fn source(dir: &TempDir, size: (u32, u32), frames: i64) -> PathBuf {
        let mut aac = AacEncoder::new(48_000).unwrap();
        let mut packets = Vec::new();
        let mut sink = |p: &Packet, tb| {
            packets.push((p.clone(), tb));
            Ok(())
        };
        for n in 0..frames * 48_000 / 25 / 960 {
            aac.push(&mut tone(48_000, 1, 960, n * 960), &mut sink).unwrap();
        }
        aac.finish(&mut sink).unwrap();
        let path = dir.join("source.mp4");
        write_mp4(&path, size, frames, SD, Some((aac.encoder(), &packets)));
        path
    }

    fn transcode_to(
        input: &Path,
        specs: &[RenditionSpec],
        out: &Path,
        progress: &mut dyn FnMut(&Progress),
        cancel: &CancelHandle,
    ) -> Result<TranscodeReport> {
        transcode(input, specs, out, &TranscodeOptions::default(), progress, cancel)
    }

    /// The MP4 files in `dir`.
    fn mp4s(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir).map_or(Vec::new(), |d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
                .collect()
        })
    }

    #[test]
    fn a_ladder_is_made_from_one_decode_each_rendition_at_its_size_in_the_order_asked() {
        let (_dir, input, out) = setup((128, 96), 25);
        let specs = [spec("small", 48), spec("full", 96), spec("big", 480)];
        let mut calls = Vec::new();
        let report = transcode_to(&input, &specs, &out, &mut |p| calls.push(*p), &CancelHandle::new()).unwrap();
        assert_eq!((report.frames_decoded, report.decode_errors), (25, 0));
        assert_eq!(report.decoded_seconds, 1.0);
        assert!(report.has_audio && !report.tone_mapped && !report.deinterlaced);
        let got: Vec<_> = report
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.width, o.height, o.frames))
            .collect();
        // Never upscaled: the 480 asked for is the source's 96.
        assert_eq!(
            got,
            [("small", 64, 48, 25), ("full", 128, 96, 25), ("big", 128, 96, 25)]
        );
        for o in &report.outputs {
            assert_eq!(o.path, out.join(format!("{}.mp4", o.name)));
            let info = crate::probe::probe(&o.path).unwrap();
            assert_eq!(info.video.unwrap().frames, Some(25));
            assert_eq!(info.audio.unwrap().channels, 2);
        }
        // The last call comes when all is decoded.
        let last = calls.last().expect("progress is reported at least at the end");
        assert_eq!(last.frames, 25);
        assert_eq!(last.position_seconds, 0.96);
    }

    #[test]
    fn a_transcode_cancelled_before_it_starts_stops_and_leaves_no_file() {
        let (_dir, input, out) = setup((64, 48), 5);
        let cancel = CancelHandle::new();
        cancel.cancel();
        let err = transcode_to(&input, &[spec("a", 48), spec("b", 24)], &out, &mut |_| {}, &cancel).unwrap_err();
        assert!(matches!(err, TranscodeError::Cancelled), "{err:?}");
        assert!(!err.is_rejection());
        assert_eq!(mp4s(&out), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_cancel_from_another_thread_stops_a_running_transcode_within_a_packet_or_so() {
        let (_dir, input, out) = setup((320, 240), 300);
        let started = Instant::now();
        transcode_to(&input, &[spec("a", 240)], &out, &mut |_| {}, &CancelHandle::new()).unwrap();
        let whole = started.elapsed();
        std::fs::remove_file(out.join("a.mp4")).unwrap();

        let cancel = CancelHandle::new();
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(whole / 10);
                cancel.cancel();
            })
        };
        let started = Instant::now();
        let err = transcode_to(&input, &[spec("a", 240)], &out, &mut |_| {}, &cancel).unwrap_err();
        let stopped = started.elapsed();
        canceller.join().unwrap();
        assert!(matches!(err, TranscodeError::Cancelled), "{err:?}");
        assert!(
            stopped < whole / 2,
            "stopped after {stopped:?}; the whole transcode takes {whole:?}"
        );
        assert_eq!(mp4s(&out), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_file_cut_short_is_rejected_as_truncated_and_leaves_no_file() {
        let (_dir, input, out) = setup((64, 48), 50);
        // The index comes first: cutting the end off keeps a readable file that announces more.
        let bytes = std::fs::read(&input).unwrap();
        std::fs::write(&input, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let err = transcode_to(&input, &[spec("a", 48)], &out, &mut |_| {}, &CancelHandle::new()).unwrap_err();
        assert!(matches!(err, TranscodeError::Truncated(_)), "{err:?}");
        assert!(err.to_string().contains("of 50 announced frames decoded"), "{err}");
        assert_eq!(mp4s(&out), Vec::<PathBuf>::new());
    }

    #[test]
    fn an_audio_only_file_is_rejected_for_having_no_video() {
        let dir = TempDir::new("transcode-run");
        let input = dir.join("tone.wav");
        write_wav(&input, 44_100, 2, 4_410);
        let err = transcode_to(
            &input,
            &[spec("a", 360)],
            &dir.join("out"),
            &mut |_| {},
            &CancelHandle::new(),
        )
        .unwrap_err();
        assert!(err.is_rejection());
        assert_eq!(err.to_string(), "no video stream: this is an audio-only file");
    }

    #[test]
    fn a_transcode_with_no_rendition_is_refused_before_it_reads_the_input() {
        let err = transcode_to(
            Path::new("/nonexistent"),
            &[],
            Path::new("/nonexistent"),
            &mut |_| {},
            &CancelHandle::new(),
        )
        .unwrap_err();
        assert!(matches!(err, TranscodeError::Options(_)), "{err:?}");
    }

    fn window(start: f64, end: Option<f64>) -> Window {
        Window {
            seek_seconds: 0.0,
            start_seconds: start,
            end_seconds: end,
            file_suffix: String::new(),
        }
    }

    #[test]
    fn without_a_window_every_picture_is_kept() {
        let mut cut = Cut::new(None, 0.0);
        assert!((0..5).all(|n| cut.keep(Some(n), Rational::new(1, 25))));
        assert!(cut.keep(None, Rational::new(1, 25)));
        assert_eq!((cut.kept, cut.done), (6, false));
        assert!(cut.check().is_ok());
    }

    #[test]
    fn a_window_keeps_the_pictures_from_its_start_to_before_its_end_then_is_done() {
        let tb = Rational::new(1, 25);
        let mut cut = Cut::new(Some(&window(0.98, Some(1.98))), 0.0);
        let kept: Vec<i64> = (20..60).filter(|&n| cut.keep(Some(n), tb)).collect();
        assert_eq!(kept, (25..50).collect::<Vec<_>>());
        assert!(cut.done);
        assert_eq!(cut.kept, 25);
        assert!(cut.check().is_ok());
    }

    #[test]
    fn a_window_the_decode_started_after_or_never_reached_is_refused() {
        let tb = Rational::new(1, 25);
        let mut late = Cut::new(Some(&window(0.98, None)), 0.0);
        assert!(!late.keep(Some(30), tb));
        assert!(late.done, "nothing is encoded after a late seek");
        let err = late.check().unwrap_err();
        assert!(
            err.to_string()
                .contains("the seek landed at 1.200 s, after the chunk's start at 0.980 s"),
            "{err}"
        );
        let mut beyond = Cut::new(Some(&window(10.0, None)), 0.0);
        assert!(!beyond.keep(Some(0), tb));
        assert!(
            beyond
                .check()
                .unwrap_err()
                .to_string()
                .contains("beyond the end of the source")
        );
        // A video starting 0.08 s into the input: the window counts from there.
        let mut lead = Cut::new(Some(&window(0.98, Some(1.98))), 0.08);
        let kept: Vec<i64> = (20..60).filter(|&n| lead.keep(Some(n), tb)).collect();
        assert_eq!(kept, (27..52).collect::<Vec<_>>());
        // The first chunk starts wherever the source does.
        let mut first = Cut::new(Some(&window(f64::NEG_INFINITY, Some(1.0))), 0.0);
        assert!(first.keep(Some(3), tb));
        assert!(first.check().is_ok());
    }

    #[test]
    fn clones_of_a_cancel_handle_share_one_flag() {
        let a = CancelHandle::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
    }
}
