//! Split and stitch: one long source encoded as chunks (by many Jobs at once), then joined.
//!
//! ```text
//!            plan(): chunk boundaries on the 2 s keyframe grid, stored as JSON
//!                 │
//! source ─┬─ transcode_chunk(chunk 0) ─▶ 720p.chunk-00000.mp4, 480p.chunk-00000.mp4 …  (video only)
//!         ├─ transcode_chunk(chunk 1) ─▶ 720p.chunk-00001.mp4, …
//!         ├─ …
//!         └─ encode_audio() ─▶ audio.m4a (beside the chunks)
//!                 │ per rendition, in order
//!            stitch(chunks, audio) ─▶ 720p.mp4: video copied, audio copied (or encoded once), index first
//! ```
//!
//! A chunk is whole GOPs of the output, so it starts with the keyframe the unsplit encode has
//! there; its encode decodes from the source keyframe at or before it and drops what comes
//! before. The stitched file has the unsplit one's frames, duration and keyframe grid.
//!
//! # Layout
//!
//! Each module imports only those above it in this list:
//!
//! - `plan`: [`plan()`], [`Plan`], [`Chunk`]: pure arithmetic on the probed source.
//! - `encode`: [`transcode_chunk()`]: the pipeline over a window of the source.
//! - `ranges`: [`source_ranges()`]: the bytes of an MP4 source one chunk's encode reads, so a
//!   chunk Job can fetch those alone.
//! - `audio`: [`encode_audio()`]: the source's audio encoded once, ahead of the stitch (the
//!   split Job makes it while the chunks encode); [`StitchAudio`]: a stitch's audio, encoded
//!   from the source or copied from that file, and the thread that hands it over.
//! - `stitch`: [`stitch()`], [`stitch_ladder()`] (every rendition, the audio encoded once for
//!   all or copied), [`StitchReport`]: the chunks joined and checked, the audio added.

mod audio;
mod encode;
mod plan;
mod ranges;
mod stitch;
#[cfg(test)]
mod tests;

pub use audio::{AudioReport, StitchAudio, encode_audio};
pub use encode::{chunk_file_name, chunk_paths, transcode_chunk};
pub use plan::{Chunk, PLAN_VERSION, Plan, plan};
pub use ranges::{ByteRanges, source_ranges};
pub use stitch::{StitchReport, stitch, stitch_ladder};
