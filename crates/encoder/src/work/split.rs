//! Split requests: one long source encoded as chunks by many Jobs at once, then stitched.
//!
//! ```text
//! request ──▶ split: plan stored, one chunk message per chunk not stored yet ──▶ (request deleted)
//!             ├─ before the messages: each chunk's bytes of an MP4 source, ranges.json
//!             └─ then, while the chunks encode: the source's audio encoded once, audio.m4a
//! chunk i ──▶ fetch its bytes of the source (or all of it), encode frames [start, end) of every
//!             rendition, store {q}.chunk-{i}.mp4
//!             └─ the chunk that finds every chunk stored claims the stitch (a conditional
//!                write of stitch.json) and sends the stitch message
//! stitch  ──▶ join the chunks (video copied, audio copied from audio.m4a, or encoded once from
//!             the source when it is not stored), verify, store the outputs as a whole request
//!             does (packaging included), then remove the chunk folder
//! ```
//!
//! Everything of one split lives in the plan's folder, `{output}/{video_id}/chunks/{plan}/`,
//! where `{plan}` is a digest of the chunk plan, the source's content (its ETag) and the
//! settings: a redelivered request makes the same plan and finds what is stored; a chunk or a
//! stitch of a plan that no longer matches the source is rejected, so no output mixes two plans.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use encoding_common::identity::{SETTINGS_VERSION, fnv1a64, rendition_metadata};
use encoding_common::part::Part;
use encoding_common::{EncodeRequest, S3Uri};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use transcode::chunk::{Plan as ChunkPlan, chunk_file_name};

use super::{AfterSplit, Done, Job, Stop};
use crate::media::{Encoded, Media, MediaError, StitchAudio};
use crate::progress::{Progress, Stage};
use crate::queue::Outgoing;
use crate::storage::{SPLIT_TAGGING, SourceObject, Store, TransferError};

/// The plan's object in its folder.
const PLAN: &str = "plan.json";
/// The stitch claim's object in the plan's folder: the chunk whose run sends the stitch message.
const CLAIM: &str = "stitch.json";
/// The source's audio, encoded by the split run for the stitch to copy, in the plan's folder.
const AUDIO: &str = "audio.m4a";

/// The stitch claim's content.
#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    /// The chunk whose run claimed the stitch.
    chunk: u32,
}

/// The plan's key: `p-` and a digest of the chunk plan's id, the source's location and content,
/// the settings and the qualities.
fn plan_key(plan_id: &str, request: &EncodeRequest, etag: &str) -> String {
    let qualities: Vec<&str> = request.qualities.iter().map(|q| q.as_str()).collect();
    let text = format!(
        "{plan_id}\n{}\n{}\n{etag}\n{SETTINGS_VERSION}\n{}",
        request.source.bucket,
        request.source.key,
        qualities.join("+")
    );
    format!("p-{:016x}", fnv1a64(text.as_bytes()))
}

/// `request` again, asking for `part`.
fn with_part(request: &EncodeRequest, part: Part) -> EncodeRequest {
    EncodeRequest {
        part: Some(part),
        ..request.clone()
    }
}

/// The message of chunk `index` of plan `key`.
fn chunk_message(request: &EncodeRequest, key: &str, index: u32, count: u32) -> Outgoing {
    let part = Part::Chunk {
        plan: key.to_owned(),
        index,
        count,
    };
    Outgoing {
        body: with_part(request, part).to_json(),
        key: format!("{key}-c{index:05}"),
    }
}

/// The stitch message of plan `key`.
fn stitch_message(request: &EncodeRequest, key: &str, count: u32) -> Outgoing {
    let part = Part::Stitch {
        plan: key.to_owned(),
        count,
    };
    Outgoing {
        body: with_part(request, part).to_json(),
        key: format!("{key}-stitch"),
    }
}

impl<S: Store, M: Media> Job<S, M> {
    /// The folder of plan `key` of `request`.
    fn plan_folder(&self, request: &EncodeRequest, key: &str) -> Result<S3Uri, Stop> {
        request
            .video_folder(self.default_output.as_ref())
            .map(|f| f.join(&format!("chunks/{key}")))
            .ok_or_else(|| Stop::Reject("the request has no \"output\" and the encoder has no OUTPUT_URI".into()))
    }

    /// After the download of a whole request (`input`): its split, when the source lasts at least
    /// two chunks of `SPLIT_SECONDS`; `None` to encode it whole.
    pub(super) async fn split(
        &self,
        request: &EncodeRequest,
        source: &SourceObject,
        input: &Path,
        progress: &Progress,
    ) -> Result<Option<Done>, Stop> {
        if self.split_seconds <= 0.0 {
            return Ok(None);
        }
        let Some(plan) = self.media.plan(input.to_owned(), self.split_seconds).await else {
            return Ok(None);
        };
        progress.stage(Stage::Splitting);
        let count = plan.chunks.len() as u32;
        let key = plan_key(&plan.id, request, &source.etag);
        let folder = self.plan_folder(request, &key)?;
        // The same request, source and settings always make the same plan: a redelivery finds it
        // stored and keeps it.
        let body = serde_json::to_vec_pretty(&plan).map_err(|e| Stop::Fail(e.into()))?;
        self.store
            .write_small(&folder.join(PLAN), body, "application/json", true)
            .await
            .map_err(Stop::Fail)?;
        let names = self.names(&folder).await?;
        if !names.contains(ranges::RANGES) {
            self.store_ranges(&folder, &key, input, &plan, source.size).await;
        }
        let stored = stored_chunks(&names, request, count);
        let messages: Vec<Outgoing> = (0..count)
            .filter(|i| !stored.contains(i))
            .map(|i| chunk_message(request, &key, i, count))
            .collect();
        tracing::info!(plan = %key, chunks = count, stored = stored.len(), sending = messages.len(), split_seconds = self.split_seconds, "split the request");
        // The audio, unless an earlier delivery stored it or the stitch is under way already.
        let then = (!names.contains(AUDIO) && !names.contains(CLAIM)).then(|| AfterSplit {
            folder,
            key,
            input: input.to_owned(),
            scratch: None,
        });
        Ok(Some(Done::Split { count, messages, then }))
    }

    /// The plan `key` of `request`, read back and checked against the message's `count` and
    /// the source as it is now.
    async fn stored_plan(
        &self,
        request: &EncodeRequest,
        folder: &S3Uri,
        key: &str,
        count: u32,
        etag: &str,
    ) -> Result<ChunkPlan, Stop> {
        let uri = folder.join(PLAN);
        let Some(bytes) = self.store.read_small(&uri).await.map_err(Stop::Fail)? else {
            return Err(Stop::Reject(format!(
                "the plan {uri} is not stored: the chunks of a split are sent by the encoder that splits the request"
            )));
        };
        let plan: ChunkPlan =
            serde_json::from_slice(&bytes).map_err(|e| Stop::Reject(format!("the plan {uri} cannot be read: {e}")))?;
        plan.validate().map_err(|e| Stop::Reject(e.to_string()))?;
        if plan_key(&plan.id, request, etag) != key {
            return Err(Stop::Reject(format!(
                "the plan {key} was made for another source content or other settings: send the request again"
            )));
        }
        if plan.chunks.len() as u32 != count {
            return Err(Stop::Reject(format!(
                "the message names {count} chunks where the plan {key} has {}",
                plan.chunks.len()
            )));
        }
        Ok(plan)
    }

    /// The names of the objects in `folder`.
    async fn names(&self, folder: &S3Uri) -> Result<BTreeSet<String>, Stop> {
        Ok(self.store.list(folder).await.map_err(Stop::Fail)?.into_iter().collect())
    }

    /// The chunks of which every rendition is stored in `folder`.
    async fn stored_chunks(&self, request: &EncodeRequest, folder: &S3Uri, count: u32) -> Result<BTreeSet<u32>, Stop> {
        Ok(stored_chunks(&self.names(folder).await?, request, count))
    }

    /// After a split (its request deleted): encodes the source's audio and stores it in the
    /// plan's folder for the stitch to copy. A failure, a signal or a stitch that got there
    /// first only costs the stitch the audio's encode.
    pub(super) async fn store_audio(&self, then: AfterSplit, cancel: &CancellationToken) {
        let AfterSplit {
            folder,
            key,
            input,
            scratch,
        } = then;
        let Some(scratch) = scratch else {
            return;
        };
        let path = scratch.path.join(AUDIO);
        let audio = match self.media.encode_audio(input, path, cancel.clone()).await {
            Ok(Some(audio)) => audio,
            Ok(None) => {
                tracing::info!(plan = %key, "the source has no audio: nothing to store for the stitch");
                return;
            }
            Err(MediaError::Cancelled) => {
                tracing::info!(plan = %key, "stopped before the audio was stored: the stitch encodes it");
                return;
            }
            Err(e) => {
                tracing::warn!(plan = %key, error = %format!("{e:#}"), "the audio could not be encoded: the stitch encodes it");
                return;
            }
        };
        // A stitch claimed meanwhile (chunks quicker than the audio) may be running: it encodes
        // the audio itself, and an object stored now would outlive its folder's removal.
        match self.store.read_small(&folder.join(CLAIM)).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                tracing::info!(plan = %key, "the stitch is claimed already: it encodes the audio itself");
                return;
            }
            Err(e) => {
                tracing::warn!(plan = %key, error = %format!("{e:#}"), "cannot tell whether the stitch is claimed: not storing the audio");
                return;
            }
        }
        let uri = folder.join(AUDIO);
        match self
            .store
            .upload(
                &audio.path,
                &uri,
                "audio/mp4",
                &HashMap::new(),
                Some(SPLIT_TAGGING),
                cancel,
            )
            .await
        {
            Ok(object) => {
                tracing::info!(plan = %key, %uri, bytes = object.size, seconds = audio.seconds, "stored the audio for the stitch")
            }
            Err(TransferError::Cancelled) => {
                tracing::info!(plan = %key, "stopped before the audio was stored: the stitch encodes it");
            }
            Err(TransferError::Failed(e)) => {
                tracing::warn!(plan = %key, %uri, error = %format!("{e:#}"), "the audio could not be stored: the stitch encodes it");
            }
        }
    }

    /// A chunk message: encode and store chunk `index` unless it is stored; then, when every
    /// chunk is stored, claim the stitch.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn chunk(
        &self,
        request: &EncodeRequest,
        source: &SourceObject,
        (key, index, count): (&str, u32, u32),
        scratch: &Path,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<Done, Stop> {
        let folder = self.plan_folder(request, key)?;
        let plan = self.stored_plan(request, &folder, key, count, &source.etag).await?;
        let chunk = plan.chunks[index as usize].clone();
        let mut stored = self.stored_chunks(request, &folder, count).await?;
        let encoded = if stored.contains(&index) {
            tracing::info!(plan = %key, chunk = index, "the chunk is already stored");
            None
        } else {
            let input = scratch.join("source");
            let ranged = self
                .fetch_chunk_source(request, source, &folder, (key, index, count), &input, cancel, progress)
                .await?;
            let out = scratch.join("out");
            let encode = || {
                progress.stage(Stage::Encoding);
                self.media.encode_chunk(
                    input.clone(),
                    super::specs(request),
                    chunk.clone(),
                    out.clone(),
                    cancel.clone(),
                    progress.clone(),
                )
            };
            let encoded = match encode().await {
                // The ranges missed what the encode reads (a source laid out as the ranges did not
                // foresee): the whole source, as a run without ranges fetches it.
                Err(e @ (MediaError::Failed(_) | MediaError::Rejected(_))) if ranged => {
                    tracing::warn!(plan = %key, chunk = index, error = %format!("{e:#}"), "the chunk does not encode from its bytes of the source: fetching the whole source");
                    let _ = std::fs::remove_dir_all(&out);
                    self.fetch_source(request, source, &input, None, cancel, progress)
                        .await?;
                    encode().await?
                }
                encoded => encoded?,
            };
            progress.stage(Stage::Uploading);
            for (q, file) in request.qualities.iter().zip(&encoded.files) {
                let uri = folder.join(&chunk_file_name(q.as_str(), index as usize));
                let meta = rendition_metadata(request, &source.etag, *q);
                let object = self
                    .store
                    .upload(&file.path, &uri, "video/mp4", &meta, Some(SPLIT_TAGGING), cancel)
                    .await?;
                tracing::info!(%uri, bytes = object.size, "stored the chunk");
            }
            stored = self.stored_chunks(request, &folder, count).await?;
            Some(encoded)
        };
        let stitch = if stored.len() as u32 == count {
            self.claim_stitch(request, &folder, key, index, count).await?
        } else {
            None
        };
        Ok(Done::Chunk {
            encoded,
            stitch,
            note: None,
        })
    }

    /// Every chunk is stored: the stitch message, if this chunk's run is the one to send it (it
    /// won the conditional write of the claim now, or in an earlier delivery of its message).
    async fn claim_stitch(
        &self,
        request: &EncodeRequest,
        folder: &S3Uri,
        key: &str,
        index: u32,
        count: u32,
    ) -> Result<Option<Outgoing>, Stop> {
        let uri = folder.join(CLAIM);
        let claim = serde_json::to_vec(&Claim { chunk: index }).map_err(|e| Stop::Fail(e.into()))?;
        let ours = if self
            .store
            .write_small(&uri, claim, "application/json", true)
            .await
            .map_err(Stop::Fail)?
        {
            true
        } else {
            let found = self.store.read_small(&uri).await.map_err(Stop::Fail)?;
            let by = found
                .and_then(|b| serde_json::from_slice::<Claim>(&b).ok())
                .map(|c| c.chunk);
            tracing::info!(plan = %key, chunk = index, claimed_by = ?by, "the stitch is claimed");
            by == Some(index)
        };
        Ok(ours.then(|| {
            tracing::info!(plan = %key, chunk = index, "every chunk is stored: sending the stitch message");
            stitch_message(request, key, count)
        }))
    }

    /// A stitch message: download the stored chunks and the split run's audio (or, without it,
    /// the source) at once, and join them into one verified file per rendition under
    /// `scratch/out`. The source comes down to `input` too when the outputs are packaged (for
    /// its subtitles), or when the chunks do not stitch (to encode it whole instead).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stitch(
        &self,
        request: &EncodeRequest,
        source: &SourceObject,
        (key, count, packaging): (&str, u32, bool),
        scratch: &Path,
        input: &Path,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<Encoded, Stop> {
        let folder = self.plan_folder(request, key)?;
        self.stored_plan(request, &folder, key, count, &source.etag).await?;
        let names = self.names(&folder).await?;
        let stored = stored_chunks(&names, request, count);
        if let Some(missing) = (0..count).find(|i| !stored.contains(i)) {
            return Err(Stop::Fail(anyhow::anyhow!(
                "chunk {missing} of the plan {key} is not stored: the stitch waits for it"
            )));
        }
        // The chunks, the audio (or the source, for its audio) come down at the same time.
        let dir = scratch.join("chunks");
        let audio = names.contains(AUDIO).then(|| dir.join(AUDIO));
        let with_source = audio.is_none() || packaging;
        let fetch_chunks = async {
            std::fs::create_dir_all(&dir).map_err(|e| Stop::Fail(e.into()))?;
            let mut chunks = Vec::with_capacity(request.qualities.len());
            for q in &request.qualities {
                let mut paths = Vec::with_capacity(count as usize);
                for i in 0..count as usize {
                    let name = chunk_file_name(q.as_str(), i);
                    let path = dir.join(&name);
                    self.store.download(&folder.join(&name), &path, cancel).await?;
                    paths.push(path);
                }
                chunks.push(paths);
            }
            Ok::<_, Stop>(chunks)
        };
        let fetch_audio = async {
            if let Some(path) = &audio {
                self.store.download(&folder.join(AUDIO), path, cancel).await?;
            }
            Ok::<_, Stop>(())
        };
        let fetch_source = async {
            if with_source {
                self.fetch_source(request, source, input, None, cancel, progress)
                    .await?;
            }
            Ok::<_, Stop>(())
        };
        let ((), chunks, ()) = tokio::try_join!(fetch_source, fetch_chunks, fetch_audio)?;
        let out = scratch.join("out");
        std::fs::create_dir_all(&out).map_err(|e| Stop::Fail(e.into()))?;
        let outputs = request
            .qualities
            .iter()
            .map(|q| out.join(format!("{}.mp4", q.as_str())))
            .collect();
        progress.stage(Stage::Stitching);
        let how = match audio {
            Some(path) => StitchAudio::Encoded(path),
            None => StitchAudio::Source(input.to_owned()),
        };
        let copied = matches!(how, StitchAudio::Encoded(_));
        match self.media.stitch(chunks, how, outputs).await {
            Ok(encoded) => {
                tracing::info!(plan = %key, chunks = count, seconds = encoded.encode_seconds, audio_copied = copied, "stitched the chunks");
                Ok(encoded)
            }
            // Chunks that do not join into what the checks expect (a source whose timestamps
            // the plan did not foresee) would fail every retry alike: the request is encoded
            // whole instead, from the source at hand, so it still ends with correct outputs.
            Err(MediaError::Failed(e)) => {
                tracing::warn!(plan = %key, error = %format!("{e:#}"), "the chunks do not stitch; encoding the source whole instead");
                if !with_source {
                    self.fetch_source(request, source, input, None, cancel, progress)
                        .await?;
                }
                progress.stage(Stage::Encoding);
                let _ = std::fs::remove_dir_all(&out);
                Ok(self
                    .media
                    .encode(
                        input.to_owned(),
                        super::specs(request),
                        out,
                        cancel.clone(),
                        progress.clone(),
                    )
                    .await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the folder of plan `key` once the outputs are stored (a failure is logged: the
    /// bucket's lifecycle rule expires what is left).
    pub(super) async fn remove_plan(&self, request: &EncodeRequest, key: &str) {
        let Ok(folder) = self.plan_folder(request, key) else {
            return;
        };
        let removed = async {
            let names = self.store.list(&folder).await?;
            let uris: Vec<S3Uri> = names.iter().map(|n| folder.join(n)).collect();
            self.store.delete(&uris).await?;
            anyhow::Ok(uris.len())
        }
        .await;
        match removed {
            Ok(n) => tracing::info!(plan = %key, objects = n, "removed the chunks"),
            Err(e) => tracing::warn!(plan = %key, error = %format!("{e:#}"), "the chunks could not be removed"),
        }
    }
}

/// The chunks of which every rendition is among `names` (a plan folder's objects).
fn stored_chunks(names: &BTreeSet<String>, request: &EncodeRequest, count: u32) -> BTreeSet<u32> {
    (0..count)
        .filter(|i| {
            request
                .qualities
                .iter()
                .all(|q| names.contains(&chunk_file_name(q.as_str(), *i as usize)))
        })
        .collect()
}

mod ranges;
#[cfg(test)]
mod tests;
