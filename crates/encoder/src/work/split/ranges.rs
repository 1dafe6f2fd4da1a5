//! The bytes of the source each chunk run fetches. The split run tells them, for an MP4 or
//! QuickTime source ([`Media::source_ranges`]), and stores them beside the plan; a chunk run
//! fetches only its own into a sparse file of the source's size. It fetches the whole source
//! when none are stored, when they do not fit the source, or when its encode fails on them.

use std::path::Path;

use encoding_common::{EncodeRequest, S3Uri};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use transcode::chunk::{ByteRanges, Plan as ChunkPlan};

use super::super::{Job, Stop};
use crate::media::Media;
use crate::progress::Progress;
use crate::storage::{SourceObject, Store};

/// The ranges' object in the plan's folder.
pub(super) const RANGES: &str = "ranges.json";

/// Two ranges closer than this are fetched as one: a request costs more than the bytes between.
const JOIN_GAP: u64 = 1 << 20;

/// What `ranges.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRanges {
    /// The source's size when the ranges were told.
    size: u64,
    /// Each chunk's ranges, in the plan's order: `[start, end)` in bytes, sorted and apart.
    chunks: Vec<ByteRanges>,
}

impl StoredRanges {
    /// Chunk `index`'s ranges, joined across small gaps, when they fit a plan of `count` chunks
    /// and a source of `size` bytes; otherwise why not.
    fn chunk(&self, index: u32, count: u32, size: u64) -> Result<ByteRanges, String> {
        if self.size != size {
            return Err(format!(
                "they were told for {} bytes where the source has {size}",
                self.size
            ));
        }
        if self.chunks.len() != count as usize {
            return Err(format!(
                "they name {} chunks where the plan has {count}",
                self.chunks.len()
            ));
        }
        let ranges = &self.chunks[index as usize];
        let mut after = 0;
        for &(start, end) in ranges {
            if start < after || start >= end || end > size {
                return Err(format!(
                    "the range {start}..{end} is not sorted, apart and within the {size} bytes"
                ));
            }
            after = end;
        }
        if ranges.is_empty() {
            return Err("they are empty".into());
        }
        Ok(joined(ranges, JOIN_GAP))
    }
}

/// `ranges` (sorted, apart) with the gaps shorter than `gap` fetched too.
fn joined(ranges: &[(u64, u64)], gap: u64) -> ByteRanges {
    let mut out: ByteRanges = Vec::with_capacity(ranges.len());
    for &(start, end) in ranges {
        match out.last_mut() {
            Some(last) if start - last.1 < gap => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

impl<S: Store, M: Media> Job<S, M> {
    /// The split run: tells each chunk's ranges of `input` and stores them in `folder`, unless
    /// another delivery stored them. A failure only costs the chunk runs the whole source.
    pub(super) async fn store_ranges(&self, folder: &S3Uri, key: &str, input: &Path, plan: &ChunkPlan, size: u64) {
        let Some(chunks) = self.media.source_ranges(input.to_owned(), plan.chunks.clone()).await else {
            return;
        };
        let fetched: u64 = chunks.iter().flatten().map(|(a, b)| b - a).sum();
        let body = match serde_json::to_vec(&StoredRanges { size, chunks }) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(plan = %key, error = %e, "the ranges cannot be written: every chunk fetches the whole source");
                return;
            }
        };
        let uri = folder.join(RANGES);
        match self.store.write_small(&uri, body, "application/json", true).await {
            Ok(_) => tracing::info!(
                plan = %key,
                %uri,
                chunks = plan.chunks.len(),
                share = fetched as f64 / (size.max(1) * plan.chunks.len().max(1) as u64) as f64,
                "stored the source's bytes each chunk reads"
            ),
            Err(e) => {
                tracing::warn!(plan = %key, error = %format!("{e:#}"), "the ranges cannot be stored: every chunk fetches the whole source")
            }
        }
    }

    /// A chunk run: the source into `input`, only chunk `index`'s ranges when they are stored
    /// and fit, otherwise whole. Returns whether only the ranges were fetched.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fetch_chunk_source(
        &self,
        request: &EncodeRequest,
        source: &SourceObject,
        folder: &S3Uri,
        (key, index, count): (&str, u32, u32),
        input: &Path,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<bool, Stop> {
        let uri = folder.join(RANGES);
        let stored = self.store.read_small(&uri).await.map_err(Stop::Fail)?;
        let ranges = match stored.as_deref().map(serde_json::from_slice::<StoredRanges>) {
            None => None,
            Some(Ok(stored)) => match stored.chunk(index, count, source.size) {
                Ok(ranges) => Some(ranges),
                Err(why) => {
                    tracing::warn!(plan = %key, chunk = index, %uri, why, "the stored ranges do not fit: fetching the whole source");
                    None
                }
            },
            Some(Err(e)) => {
                tracing::warn!(plan = %key, chunk = index, %uri, error = %e, "the stored ranges cannot be read: fetching the whole source");
                None
            }
        };
        self.fetch_source(request, source, input, ranges.as_ref(), cancel, progress)
            .instrument(tracing::info_span!("chunk_source", plan = %key, chunk = index))
            .await?;
        Ok(ranges.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(chunks: Vec<ByteRanges>) -> StoredRanges {
        StoredRanges { size: 100, chunks }
    }

    #[test]
    fn ranges_closer_than_the_gap_are_fetched_as_one() {
        assert_eq!(
            joined(&[(0, 10), (15, 20), (40, 50), (51, 60)], 5),
            [(0, 10), (15, 20), (40, 60)]
        );
        assert_eq!(joined(&[(0, 10), (14, 20)], 5), [(0, 20)]);
    }

    #[test]
    fn ranges_that_do_not_fit_the_source_or_the_plan_are_refused() {
        let ok = stored(vec![vec![(0, 10)], vec![(0, 10), (50, 100)]]);
        assert_eq!(ok.chunk(1, 2, 100).unwrap(), [(0, 100)]);
        for (ranges, index, count, size, why) in [
            (
                stored(vec![vec![(0, 10)]]),
                0,
                1,
                99,
                "told for 100 bytes where the source has 99",
            ),
            (stored(vec![vec![(0, 10)]]), 0, 2, 100, "1 chunks where the plan has 2"),
            (stored(vec![vec![(0, 101)]]), 0, 1, 100, "0..101 is not"),
            (stored(vec![vec![(20, 30), (0, 10)]]), 0, 1, 100, "0..10 is not sorted"),
            (stored(vec![vec![(10, 10)]]), 0, 1, 100, "10..10 is not"),
            (stored(vec![vec![]]), 0, 1, 100, "empty"),
        ] {
            let e = ranges.chunk(index, count, size).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
