//! In-memory stand-ins for the seams, for the unit tests of the lifecycle, the lease and the work:
//! a queue that records what happened to each message, a store of objects in memory, a media that
//! writes small files, a report sink that keeps the events, and a work whose result is chosen.
//! (The real SQS, S3 and FFmpeg are tested end to end, against both emulators.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use encoding_common::upload::Stored;
use encoding_common::{EncodeRequest, Event, S3Uri};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use transcode::RenditionSpec;

use crate::media::{Encoded, EncodedAudio, EncodedFile, Media, MediaError, PackageJob, Packaged, StitchAudio};
use crate::progress::Progress;
use crate::queue::{Queue, Received};
use crate::report::Reports;
use crate::storage::{SourceError, SourceObject, Store, TransferError};
use crate::work::{AfterSplit, Done, Stop, Work};

/// Something done to the received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Its visibility set (a renewal, or zero: a release).
    Visibility(Duration),
    /// Deleted.
    Deleted,
    /// Sent to the dead-letter queue with this reason (and deleted).
    DeadLettered(String),
    /// Deleted because there is no dead-letter queue (after a rejection).
    DeletedWithoutDeadLetterQueue(String),
    /// A completion notice of this outcome sent (recorded here by a [`NoticeBox`] on the same
    /// timeline, to see it come before the delete).
    Notice(String),
    /// A message of this key sent to the queue (a chunk or the stitch).
    Sent(String),
}

/// What the in-memory queue does when asked.
#[derive(Debug, Default)]
struct QueueState {
    messages: Vec<String>,
    fates: Vec<Fate>,
    visibility_attempts: usize,
    fail_receive: bool,
    hang_receive: bool,
    fail_visibility: bool,
    fail_delete: bool,
    fail_dead_letter: bool,
    no_dead_letter_queue: bool,
    max_receive_count: Option<u32>,
    receive_count: u32,
    fail_send: bool,
}

/// An in-memory queue: hands out its messages once each and records every fate.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue(Arc<Mutex<QueueState>>);

impl MemoryQueue {
    /// A queue holding these bodies.
    pub fn with_messages(bodies: &[&str]) -> Self {
        let q = Self::default();
        q.0.lock().unwrap().messages = bodies.iter().map(|b| (*b).to_owned()).collect();
        q
    }

    /// Receives one message at once (for the lease's tests).
    pub async fn receive_now(&self) -> Received {
        self.receive(0, Duration::from_secs(30))
            .await
            .unwrap()
            .expect("a message")
    }

    /// Sending fails.
    pub fn fail_send(&self) {
        self.0.lock().unwrap().fail_send = true;
    }

    /// The bodies waiting in the queue (those sent by a run included), in order.
    pub fn waiting(&self) -> Vec<String> {
        self.0.lock().unwrap().messages.clone()
    }

    /// What happened to the messages, in order.
    pub fn fates(&self) -> Vec<Fate> {
        self.0.lock().unwrap().fates.clone()
    }

    /// The fates other than lease renewals (a visibility above zero).
    pub fn endings(&self) -> Vec<Fate> {
        self.fates()
            .into_iter()
            .filter(|f| !matches!(f, Fate::Visibility(d) if !d.is_zero()))
            .collect()
    }

    /// How many visibility changes were tried, failed ones included.
    pub fn visibility_attempts(&self) -> usize {
        self.0.lock().unwrap().visibility_attempts
    }

    /// Makes receives wait for ever (a long poll that nothing ends).
    pub fn hang_receive(&self) {
        self.0.lock().unwrap().hang_receive = true;
    }

    /// Makes receives fail.
    pub fn fail_receive(&self) {
        self.0.lock().unwrap().fail_receive = true;
    }

    /// Makes visibility changes (renewals, releases) fail, or work again.
    pub fn fail_visibility(&self, fail: bool) {
        self.0.lock().unwrap().fail_visibility = fail;
    }

    /// Makes deletes fail.
    pub fn fail_delete(&self) {
        self.0.lock().unwrap().fail_delete = true;
    }

    /// Makes dead-lettering fail.
    pub fn fail_dead_letter(&self) {
        self.0.lock().unwrap().fail_dead_letter = true;
    }

    /// As a queue whose RedrivePolicy dead-letters after `max` receives, delivering its message
    /// for the `count`th time.
    pub fn delivering(&self, count: u32, max: u32) {
        let mut s = self.0.lock().unwrap();
        s.receive_count = count;
        s.max_receive_count = Some(max);
    }

    /// Records a notice on this queue's timeline.
    fn record_notice(&self, outcome: &str) {
        self.0.lock().unwrap().fates.push(Fate::Notice(outcome.to_owned()));
    }

    /// As a queue without a RedrivePolicy.
    pub fn without_dead_letter_queue(&self) {
        self.0.lock().unwrap().no_dead_letter_queue = true;
    }
}

impl Queue for MemoryQueue {
    async fn receive(&self, _wait_seconds: i32, _lease: Duration) -> anyhow::Result<Option<Received>> {
        let hang = self.0.lock().unwrap().hang_receive;
        if hang {
            std::future::pending::<()>().await;
        }
        let mut s = self.0.lock().unwrap();
        if s.fail_receive {
            return Err(anyhow!("receiving from the queue: connection refused"));
        }
        if s.messages.is_empty() {
            return Ok(None);
        }
        let body = s.messages.remove(0);
        Ok(Some(Received {
            message_id: "m-1".into(),
            receipt_handle: "h-1".into(),
            body,
            receive_count: s.receive_count.max(1),
            received_at: Instant::now(),
        }))
    }

    async fn set_visibility(&self, _msg: &Received, timeout: Duration) -> anyhow::Result<()> {
        let mut s = self.0.lock().unwrap();
        s.visibility_attempts += 1;
        if s.fail_visibility {
            return Err(anyhow!("changing the message's visibility: connection refused"));
        }
        s.fates.push(Fate::Visibility(timeout));
        Ok(())
    }

    async fn delete(&self, _msg: &Received) -> anyhow::Result<()> {
        let mut s = self.0.lock().unwrap();
        if s.fail_delete {
            return Err(anyhow!("deleting the message: connection refused"));
        }
        s.fates.push(Fate::Deleted);
        Ok(())
    }

    async fn max_receive_count(&self) -> anyhow::Result<Option<u32>> {
        Ok(self.0.lock().unwrap().max_receive_count)
    }

    async fn send(&self, msg: &crate::queue::Outgoing) -> anyhow::Result<()> {
        let mut s = self.0.lock().unwrap();
        if s.fail_send {
            return Err(anyhow!("sending {} to the queue: connection refused", msg.key));
        }
        s.fates.push(Fate::Sent(msg.key.clone()));
        s.messages.push(msg.body.clone());
        Ok(())
    }

    async fn dead_letter(&self, _msg: &Received, reason: &str) -> anyhow::Result<Option<String>> {
        let mut s = self.0.lock().unwrap();
        if s.fail_dead_letter {
            return Err(anyhow!(
                "sending the message to the dead-letter queue: connection refused"
            ));
        }
        if s.no_dead_letter_queue {
            s.fates.push(Fate::DeletedWithoutDeadLetterQueue(reason.to_owned()));
            return Ok(None);
        }
        s.fates.push(Fate::DeadLettered(reason.to_owned()));
        Ok(Some("memory://dlq".into()))
    }
}

/// Keeps every event sent.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    /// The events, in order.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

impl Reports for Recorder {
    async fn send(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// [`StubWork::afters`]: each plan key and the queue's endings when its after-work began.
pub type Afters = Arc<Mutex<Vec<(String, Vec<Fate>)>>>;

/// A work whose result is chosen by the test (made when asked, as errors do not clone).
pub struct StubWork {
    result: Box<dyn Fn() -> Result<Done, Stop> + Send + Sync>,
    /// Before answering: wait until this fires (a signal or a lost lease), then answer.
    pub wait_for_cancel: bool,
    /// Cancelled while the work runs (as a signal arriving mid-work would).
    pub shutdown_during: Option<CancellationToken>,
    /// Progress to make first: after each wait, the percent encoded.
    pub progress: Vec<(Duration, f64)>,
    /// Each [`Work::after_split`] call: its plan's key and the queue's endings at that moment
    /// (from `timeline`).
    pub afters: Afters,
    /// The queue whose endings `afters` records.
    pub timeline: Option<MemoryQueue>,
}

impl std::fmt::Debug for StubWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubWork").finish_non_exhaustive()
    }
}

impl StubWork {
    /// A work that answers `result()`.
    pub fn answering(result: impl Fn() -> Result<Done, Stop> + Send + Sync + 'static) -> Self {
        Self {
            result: Box::new(result),
            wait_for_cancel: false,
            shutdown_during: None,
            progress: Vec::new(),
            afters: Arc::default(),
            timeline: None,
        }
    }
}

impl Work for StubWork {
    async fn work_on(
        &self,
        _request: &EncodeRequest,
        _run_id: &str,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<Done, Stop> {
        if let Some(token) = &self.shutdown_during {
            token.cancel();
        }
        for (after, percent) in &self.progress {
            tokio::time::sleep(*after).await;
            progress.encoding(Some(*percent), 25.0);
        }
        if self.wait_for_cancel {
            cancel.cancelled().await;
        }
        (self.result)()
    }

    async fn after_split(&self, then: AfterSplit, _cancel: &CancellationToken) {
        let endings = self.timeline.as_ref().map(MemoryQueue::endings).unwrap_or_default();
        self.afters.lock().unwrap().push((then.key().to_owned(), endings));
    }
}

/// One object in the in-memory store.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its user metadata.
    pub metadata: HashMap<String, String>,
    /// Its ETag.
    pub etag: String,
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its tags, URL-encoded, if any.
    pub tagging: Option<String>,
}

/// How the in-memory store misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFault {
    /// It works.
    #[default]
    None,
    /// Every look-up fails (S3 unreachable).
    Unreachable,
    /// Downloads stop short of the announced size.
    ShortDownload,
    /// Uploads fail.
    UploadFails,
    /// Uploads are stopped (the run's token fired).
    UploadStopped,
}

/// S3 in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<HashMap<String, Object>>>,
    order: Arc<Mutex<Vec<String>>>,
    downloaded: Arc<Mutex<Vec<String>>>,
    /// The fault to play.
    pub fault: StoreFault,
}

impl MemoryStore {
    /// Puts an object.
    pub fn put(&self, uri: &str, bytes: &[u8], etag: &str, metadata: HashMap<String, String>) {
        self.objects.lock().unwrap().insert(
            uri.to_owned(),
            Object {
                bytes: bytes.to_vec(),
                metadata,
                etag: etag.to_owned(),
                content_type: "binary/octet-stream".into(),
                tagging: None,
            },
        );
    }

    /// An object, if stored.
    pub fn get(&self, uri: &str) -> Option<Object> {
        self.objects.lock().unwrap().get(uri).cloned()
    }

    /// Removes every object whose URI starts with `prefix`.
    pub fn remove_prefix(&self, prefix: &str) {
        self.objects.lock().unwrap().retain(|uri, _| !uri.starts_with(prefix));
    }

    /// The URIs uploaded, in the order of their uploads.
    pub fn uploads(&self) -> Vec<String> {
        self.order.lock().unwrap().clone()
    }

    /// The URIs downloaded, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.downloaded.lock().unwrap().clone()
    }

    /// Every stored URI, sorted.
    pub fn uris(&self) -> Vec<String> {
        let mut uris: Vec<String> = self.objects.lock().unwrap().keys().cloned().collect();
        uris.sort();
        uris
    }
}

impl Store for MemoryStore {
    async fn head_source(&self, uri: &S3Uri) -> Result<SourceObject, SourceError> {
        if self.fault == StoreFault::Unreachable {
            return Err(SourceError::Other(anyhow!(
                "looking up the source {uri}: dispatch failure"
            )));
        }
        match self.get(&uri.to_string()) {
            Some(o) => Ok(SourceObject {
                etag: o.etag,
                size: o.bytes.len() as u64,
            }),
            None => Err(SourceError::Missing(uri.to_string())),
        }
    }

    async fn download(&self, uri: &S3Uri, path: &Path, cancel: &CancellationToken) -> Result<u64, TransferError> {
        if cancel.is_cancelled() {
            return Err(TransferError::Cancelled);
        }
        let o = self
            .get(&uri.to_string())
            .ok_or_else(|| TransferError::Failed(anyhow!("downloading {uri}: NoSuchKey")))?;
        self.downloaded.lock().unwrap().push(uri.to_string());
        let bytes = if self.fault == StoreFault::ShortDownload {
            &o.bytes[..o.bytes.len() / 2]
        } else {
            &o.bytes[..]
        };
        std::fs::write(path, bytes).map_err(|e| TransferError::Failed(e.into()))?;
        Ok(bytes.len() as u64)
    }

    /// A file of the object's size holding only `ranges` (zeros elsewhere); recorded in
    /// [`downloads`](Self::downloads) as `{uri} {ranges:?}`.
    async fn download_ranges(
        &self,
        uri: &S3Uri,
        object: &SourceObject,
        ranges: &[(u64, u64)],
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TransferError> {
        if cancel.is_cancelled() {
            return Err(TransferError::Cancelled);
        }
        let o = self
            .get(&uri.to_string())
            .ok_or_else(|| TransferError::Failed(anyhow!("downloading {uri}: NoSuchKey")))?;
        if o.etag != object.etag {
            return Err(TransferError::Failed(anyhow!("{uri} changed since it was looked up")));
        }
        self.downloaded.lock().unwrap().push(format!("{uri} {ranges:?}"));
        let mut bytes = vec![0u8; o.bytes.len()];
        let mut total = 0;
        for &(a, b) in ranges {
            let (a, b) = (a as usize, b as usize);
            bytes[a..b].copy_from_slice(&o.bytes[a..b]);
            total += (b - a) as u64;
        }
        std::fs::write(path, bytes).map_err(|e| TransferError::Failed(e.into()))?;
        Ok(total)
    }

    async fn existing_metadata(&self, uri: &S3Uri) -> anyhow::Result<Option<HashMap<String, String>>> {
        if self.fault == StoreFault::Unreachable {
            return Err(anyhow!("looking up {uri}: dispatch failure"));
        }
        Ok(self.get(&uri.to_string()).map(|o| o.metadata))
    }

    async fn upload(
        &self,
        path: &Path,
        uri: &S3Uri,
        content_type: &str,
        metadata: &HashMap<String, String>,
        tagging: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Stored, TransferError> {
        match self.fault {
            StoreFault::UploadFails => return Err(TransferError::Failed(anyhow!("uploading {uri}: InternalError"))),
            StoreFault::UploadStopped => return Err(TransferError::Cancelled),
            _ if cancel.is_cancelled() => return Err(TransferError::Cancelled),
            _ => {}
        }
        let bytes = std::fs::read(path).map_err(|e| TransferError::Failed(e.into()))?;
        let size = bytes.len() as u64;
        self.put(&uri.to_string(), &bytes, "\"new\"", metadata.clone());
        if let Some(o) = self.objects.lock().unwrap().get_mut(&uri.to_string()) {
            o.content_type = content_type.to_owned();
            o.tagging = tagging.map(str::to_owned);
        }
        self.order.lock().unwrap().push(uri.to_string());
        Ok(Stored {
            size,
            crc32: "AAAAAA==".into(),
        })
    }

    async fn read_small(&self, uri: &S3Uri) -> anyhow::Result<Option<Vec<u8>>> {
        if self.fault == StoreFault::Unreachable {
            return Err(anyhow!("reading {uri}: dispatch failure"));
        }
        Ok(self.get(&uri.to_string()).map(|o| o.bytes))
    }

    async fn write_small(
        &self,
        uri: &S3Uri,
        body: Vec<u8>,
        content_type: &str,
        only_if_absent: bool,
    ) -> anyhow::Result<bool> {
        if self.fault == StoreFault::UploadFails {
            return Err(anyhow!("storing {uri}: InternalError"));
        }
        let mut objects = self.objects.lock().unwrap();
        if only_if_absent && objects.contains_key(&uri.to_string()) {
            return Ok(false);
        }
        objects.insert(
            uri.to_string(),
            Object {
                bytes: body,
                metadata: HashMap::new(),
                etag: "\"small\"".into(),
                content_type: content_type.to_owned(),
                tagging: Some(crate::storage::SPLIT_TAGGING.into()),
            },
        );
        self.order.lock().unwrap().push(uri.to_string());
        Ok(true)
    }

    async fn list(&self, prefix: &S3Uri) -> anyhow::Result<Vec<String>> {
        let folder = format!("{prefix}/");
        let mut names: Vec<String> = self
            .objects
            .lock()
            .unwrap()
            .keys()
            .filter_map(|k| k.strip_prefix(&folder).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn delete(&self, uris: &[S3Uri]) -> anyhow::Result<()> {
        let mut objects = self.objects.lock().unwrap();
        for u in uris {
            objects.remove(&u.to_string());
        }
        Ok(())
    }
}

/// How the stand-in media answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaAnswer {
    /// Writes one small file per spec.
    #[default]
    Renditions,
    /// Not a usable video.
    Rejected,
    /// A failure that may pass.
    Failed,
    /// Stopped.
    Cancelled,
}

/// The calls a [`FakeMedia`] received: each input and its renditions' names.
pub type Calls = Arc<Mutex<Vec<(PathBuf, Vec<String>)>>>;

/// A media that writes `{name}.mp4` files of a few bytes, or answers as told; it records the
/// specs and the input it was given.
#[derive(Debug, Clone, Default)]
pub struct FakeMedia {
    /// The answer.
    pub answer: MediaAnswer,
    /// The inputs and spec names it was called with.
    pub calls: Calls,
    /// Packaging fails.
    pub package_fails: bool,
    /// The packaging jobs it was given.
    pub packaged: Arc<Mutex<Vec<PackageJob>>>,
    /// Plans every source in this many chunks of 4 s (none: never split).
    pub split_into: Option<usize>,
    /// The chunks encoded, by index, in order.
    pub chunks_encoded: Arc<Mutex<Vec<usize>>>,
    /// The stitches made: each rendition's chunk files (their names).
    pub stitched: Arc<Mutex<Vec<Vec<Vec<String>>>>>,
    /// Stitches fail their checks.
    pub stitch_fails: bool,
    /// The audio each stitch was given, in order.
    pub stitch_audio: Arc<Mutex<Vec<StitchAudio>>>,
    /// How the audio's encode ahead of a stitch ends (`Renditions`: an `audio.m4a` written).
    pub audio_answer: MediaAnswer,
    /// The sources whose audio was encoded ahead.
    pub audio_encoded: Arc<Mutex<Vec<PathBuf>>>,
    /// Tells the bytes each chunk's encode reads: the source's first two bytes and the byte at
    /// 2 + the chunk's index (none: every chunk needs the whole source).
    pub ranged: bool,
    /// A chunk's encode rejects an input with a zero byte (a sparse source missing what it reads).
    pub holes_fail: bool,
    /// The input each chunk's encode was given, as it was then.
    pub chunk_inputs: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// A valid plan of `count` chunks of 120 frames at 30 frames per second.
pub fn fake_plan(count: usize) -> transcode::chunk::Plan {
    let id = format!("v{}-fake{count}", transcode::chunk::PLAN_VERSION);
    let chunks = (0..count)
        .map(|i| transcode::chunk::Chunk {
            plan_id: id.clone(),
            index: i,
            count,
            start_frame: i as u64 * 120,
            end_frame: (i as u64 + 1) * 120,
            start_seconds: i as f64 * 4.0,
            end_seconds: (i as f64 + 1.0) * 4.0,
            frame_rate: 30.0,
        })
        .collect();
    transcode::chunk::Plan {
        version: transcode::chunk::PLAN_VERSION,
        id,
        frame_rate: 30.0,
        keyint: 60,
        frames: count as u64 * 120,
        split_seconds: 4.0,
        chunks,
    }
}

/// Writes `text` at `dir/name` and describes it as a packaged file.
fn fake_file(dir: &Path, name: &str, text: &str) -> Result<transcode::package::PackagedFile, MediaError> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| MediaError::Failed(e.into()))?;
    }
    std::fs::write(&path, text).map_err(|e| MediaError::Failed(e.into()))?;
    Ok(transcode::package::PackagedFile {
        name: name.to_owned(),
        path,
        content_type: transcode::package::content_type(name),
    })
}

impl Media for FakeMedia {
    async fn encode(
        &self,
        input: PathBuf,
        renditions: Vec<RenditionSpec>,
        out_dir: PathBuf,
        _cancel: CancellationToken,
        progress: Progress,
    ) -> Result<Encoded, MediaError> {
        progress.encoding(Some(50.0), 30.0);
        self.calls
            .lock()
            .unwrap()
            .push((input.clone(), renditions.iter().map(|r| r.name.clone()).collect()));
        match self.answer {
            MediaAnswer::Rejected => {
                return Err(MediaError::Rejected(
                    "no video stream: this is an audio-only file".into(),
                ));
            }
            MediaAnswer::Failed => return Err(MediaError::Failed(anyhow!("the rendition 480p.mp4 lasts 1.000 s"))),
            MediaAnswer::Cancelled => return Err(MediaError::Cancelled),
            MediaAnswer::Renditions => {}
        }
        std::fs::create_dir_all(&out_dir).map_err(|e| MediaError::Failed(e.into()))?;
        let mut files = Vec::new();
        for r in &renditions {
            let path = out_dir.join(format!("{}.mp4", r.name));
            std::fs::write(&path, format!("rendition {}", r.name)).map_err(|e| MediaError::Failed(e.into()))?;
            files.push(EncodedFile {
                path,
                width: r.short_side * 16 / 9,
                height: r.short_side,
                bytes: 14,
                duration_seconds: 5.0,
                audio: true,
            });
        }
        Ok(Encoded {
            files,
            frames: 150,
            source_seconds: Some(5.0),
            encode_seconds: 2.5,
        })
    }

    /// A track file per rendition and the audio, with their playlists for HLS; the poster, then
    /// the thumbnail track and the manifests asked for.
    async fn package(&self, job: PackageJob) -> Result<Packaged, MediaError> {
        self.packaged.lock().unwrap().push(job.clone());
        if self.package_fails {
            return Err(MediaError::Failed(anyhow!(
                "packaging the stream: the fragments of 480p do not line up"
            )));
        }
        let folder = format!("stream/{}", job.version);
        let mut media = Vec::new();
        let tracks = job.renditions.iter().map(|(n, _)| n.as_str()).chain(["audio"]);
        for track in tracks {
            media.push(fake_file(
                &job.dir,
                &format!("{folder}/{track}.mp4"),
                &format!("track {track}"),
            )?);
            if job.manifests.hls {
                media.push(fake_file(&job.dir, &format!("{folder}/{track}.m3u8"), "#EXTM3U\n")?);
            }
        }
        media.push(fake_file(&job.dir, "poster.jpg", "poster")?);
        let mut entry_points = vec![fake_file(&job.dir, "thumbnails.vtt", "WEBVTT\n")?];
        if job.manifests.hls {
            entry_points.push(fake_file(&job.dir, "master.m3u8", "#EXTM3U\n")?);
        }
        if job.manifests.dash {
            entry_points.push(fake_file(&job.dir, "manifest.mpd", "<MPD/>\n")?);
        }
        Ok(Packaged {
            media,
            entry_points,
            duration_seconds: 5.0,
            codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
            subtitles: 0,
        })
    }

    async fn plan(&self, _input: PathBuf, split_seconds: f64) -> Option<transcode::chunk::Plan> {
        assert!(split_seconds > 0.0, "plan() is only asked when splitting is on");
        self.split_into.map(fake_plan)
    }

    async fn source_ranges(
        &self,
        _input: PathBuf,
        chunks: Vec<transcode::chunk::Chunk>,
    ) -> Option<Vec<transcode::chunk::ByteRanges>> {
        self.ranged.then(|| {
            chunks
                .iter()
                .map(|c| vec![(0, 2), (2 + c.index as u64, 3 + c.index as u64)])
                .collect()
        })
    }

    /// `{name}.chunk-{index}.mp4` files saying which chunk they are, or answers as told.
    async fn encode_chunk(
        &self,
        input: PathBuf,
        renditions: Vec<RenditionSpec>,
        chunk: transcode::chunk::Chunk,
        out_dir: PathBuf,
        _cancel: CancellationToken,
        _progress: Progress,
    ) -> Result<Encoded, MediaError> {
        match self.answer {
            MediaAnswer::Rejected => return Err(MediaError::Rejected("the chunk cannot be decoded".into())),
            MediaAnswer::Failed => {
                return Err(MediaError::Failed(anyhow!(
                    "chunk 1 has 50 frames where the plan has 120"
                )));
            }
            MediaAnswer::Cancelled => return Err(MediaError::Cancelled),
            MediaAnswer::Renditions => {}
        }
        let bytes = std::fs::read(&input).map_err(|e| MediaError::Failed(e.into()))?;
        self.chunk_inputs.lock().unwrap().push(bytes.clone());
        if self.holes_fail && bytes.contains(&0) {
            return Err(MediaError::Rejected(format!("chunk {} cannot be decoded", chunk.index)));
        }
        self.chunks_encoded.lock().unwrap().push(chunk.index);
        std::fs::create_dir_all(&out_dir).map_err(|e| MediaError::Failed(e.into()))?;
        let mut files = Vec::new();
        for r in &renditions {
            let path = out_dir.join(transcode::chunk::chunk_file_name(&r.name, chunk.index));
            std::fs::write(&path, format!("[{} {}]", r.name, chunk.index)).map_err(|e| MediaError::Failed(e.into()))?;
            files.push(EncodedFile {
                path,
                width: r.short_side * 16 / 9,
                height: r.short_side,
                bytes: 10,
                duration_seconds: 4.0,
                audio: false,
            });
        }
        Ok(Encoded {
            files,
            frames: chunk.frames(),
            source_seconds: None,
            encode_seconds: 1.0,
        })
    }

    /// A file saying whose audio it is, or answers as told (`Rejected`: the source has none).
    async fn encode_audio(
        &self,
        input: PathBuf,
        output: PathBuf,
        _cancel: CancellationToken,
    ) -> Result<Option<EncodedAudio>, MediaError> {
        assert!(input.is_file(), "the source is kept for the audio: {}", input.display());
        self.audio_encoded.lock().unwrap().push(input.clone());
        match self.audio_answer {
            MediaAnswer::Rejected => return Ok(None),
            MediaAnswer::Failed => return Err(MediaError::Failed(anyhow!("the AAC encoder cannot be opened"))),
            MediaAnswer::Cancelled => return Err(MediaError::Cancelled),
            MediaAnswer::Renditions => {}
        }
        let text = format!("audio of {}", input.display());
        std::fs::write(&output, &text).map_err(|e| MediaError::Failed(e.into()))?;
        Ok(Some(EncodedAudio {
            path: output,
            seconds: 8.0,
            bytes: text.len() as u64,
        }))
    }

    /// Each output the concatenation of its chunks.
    async fn stitch(
        &self,
        chunks: Vec<Vec<PathBuf>>,
        audio: StitchAudio,
        outputs: Vec<PathBuf>,
    ) -> Result<Encoded, MediaError> {
        let (StitchAudio::Source(p) | StitchAudio::Encoded(p)) = &audio;
        assert!(p.is_file(), "the stitch's audio is not downloaded: {audio:?}");
        self.stitch_audio.lock().unwrap().push(audio);
        let names = |paths: &Vec<PathBuf>| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        self.stitched.lock().unwrap().push(chunks.iter().map(names).collect());
        if self.stitch_fails {
            return Err(MediaError::Failed(anyhow!(
                "the stitched video lasts 60.067 s where its chunks last 60.167 s"
            )));
        }
        let mut files = Vec::new();
        for (paths, out) in chunks.iter().zip(&outputs) {
            let mut bytes = Vec::new();
            for p in paths {
                bytes.extend(std::fs::read(p).map_err(|e| MediaError::Failed(e.into()))?);
            }
            std::fs::write(out, &bytes).map_err(|e| MediaError::Failed(e.into()))?;
            files.push(EncodedFile {
                path: out.clone(),
                width: 854,
                height: 480,
                bytes: bytes.len() as u64,
                duration_seconds: 4.0 * paths.len() as f64,
                audio: true,
            });
        }
        Ok(Encoded {
            frames: 120 * chunks.first().map_or(0, Vec::len) as u64,
            source_seconds: Some(4.0 * chunks.first().map_or(0, Vec::len) as f64),
            encode_seconds: 0.5,
            files,
        })
    }
}

/// Keeps every notice sent (and records it on a queue's timeline), or refuses them all.
#[derive(Debug, Clone, Default)]
pub struct NoticeBox {
    sent: Arc<Mutex<Vec<encoding_common::notice::Notice>>>,
    /// Refuse every notice (the results queue unreachable).
    pub refuse: bool,
    /// As no results queue set.
    pub disabled: bool,
    /// Where each sent notice is also recorded as a [`Fate::Notice`].
    pub timeline: Option<MemoryQueue>,
}

impl NoticeBox {
    /// Notices on `queue`'s timeline.
    pub fn on(queue: &MemoryQueue) -> Self {
        Self {
            timeline: Some(queue.clone()),
            ..Self::default()
        }
    }

    /// No results queue.
    pub fn none() -> Self {
        Self {
            disabled: true,
            ..Self::default()
        }
    }

    /// The notices, in order.
    pub fn sent(&self) -> Vec<encoding_common::notice::Notice> {
        self.sent.lock().unwrap().clone()
    }
}

impl crate::notify::Notify for NoticeBox {
    fn enabled(&self) -> bool {
        !self.disabled
    }

    async fn notify(&self, notice: &encoding_common::notice::Notice) -> anyhow::Result<()> {
        if self.refuse {
            return Err(anyhow!("sending the completion notice: connection refused"));
        }
        if let Some(q) = &self.timeline {
            q.record_notice(notice.outcome.as_str());
        }
        self.sent.lock().unwrap().push(notice.clone());
        Ok(())
    }
}
