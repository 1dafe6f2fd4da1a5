//! The part of a split request a message asks for: one chunk to encode, or the stitch.
//!
//! The encoder splits a long request itself (`SPLIT_SECONDS`): it stores the plan beside the
//! outputs, under `{output}/{video_id}/chunks/{plan}/`, and sends the request again to the same
//! queue once per chunk with a `chunk` field; the chunk that completes the set sends it once more
//! with a `stitch` field. Both name the plan, so a chunk of another plan (another source content,
//! other settings) is never mixed in:
//!
//! ```json
//! {"video_id": "v", "source": "s3://in/v.mov", "qualities": ["720p", "480p"],
//!  "chunk": {"plan": "p-9f2c6a1e0b3d4c5f", "index": 3, "count": 12}}
//! {"video_id": "v", "source": "s3://in/v.mov", "qualities": ["720p", "480p"],
//!  "stitch": {"plan": "p-9f2c6a1e0b3d4c5f", "count": 12}}
//! ```
//!
//! A producer never needs to send either: a message whose plan is not stored, or does not match
//! the source and settings, is rejected.

use serde::{Deserialize, Serialize};

/// Most chunks a plan may have.
pub const MAX_CHUNKS: u32 = 10_000;
/// Longest plan id.
pub const MAX_PLAN_LEN: usize = 64;

/// What part of a split request a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Encode chunk `index` (from 0) of the `count` chunks of plan `plan`.
    Chunk {
        /// The plan's id.
        plan: String,
        /// Which chunk.
        index: u32,
        /// How many chunks the plan has.
        count: u32,
    },
    /// Join the `count` stored chunks of plan `plan` into the outputs.
    Stitch {
        /// The plan's id.
        plan: String,
        /// How many chunks the plan has.
        count: u32,
    },
}

impl Part {
    /// The plan's id.
    pub fn plan(&self) -> &str {
        match self {
            Self::Chunk { plan, .. } | Self::Stitch { plan, .. } => plan,
        }
    }

    /// How many chunks the plan has.
    pub fn count(&self) -> u32 {
        match self {
            Self::Chunk { count, .. } | Self::Stitch { count, .. } => *count,
        }
    }

    /// The chunk's index, for a chunk.
    pub fn index(&self) -> Option<u32> {
        match self {
            Self::Chunk { index, .. } => Some(*index),
            Self::Stitch { .. } => None,
        }
    }
}

/// Why a `chunk` or `stitch` field is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// Both fields at once.
    #[error("give either \"chunk\" or \"stitch\", not both")]
    Both,
    /// A plan id that no encoder makes.
    #[error("invalid plan {0:?}: 1 to 64 characters of a-z, 0-9 and -")]
    Plan(String),
    /// A count out of range.
    #[error("invalid count {0}: a plan has 2 to 10000 chunks")]
    Count(u32),
    /// An index beyond the count.
    #[error("invalid index {index}: the plan has {count} chunks, numbered from 0")]
    Index {
        /// As received.
        index: u32,
        /// As received.
        count: u32,
    },
}

/// `chunk` on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireChunk {
    plan: String,
    index: u32,
    count: u32,
}

/// `stitch` on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireStitch {
    plan: String,
    count: u32,
}

/// The part the two wire fields name, checked.
pub(crate) fn from_wire(chunk: Option<WireChunk>, stitch: Option<WireStitch>) -> Result<Option<Part>, PartError> {
    let part = match (chunk, stitch) {
        (Some(_), Some(_)) => return Err(PartError::Both),
        (None, None) => return Ok(None),
        (Some(c), None) => Part::Chunk {
            plan: c.plan,
            index: c.index,
            count: c.count,
        },
        (None, Some(s)) => Part::Stitch {
            plan: s.plan,
            count: s.count,
        },
    };
    let plan = part.plan();
    if plan.is_empty()
        || plan.len() > MAX_PLAN_LEN
        || !plan
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(PartError::Plan(plan.to_owned()));
    }
    if !(2..=MAX_CHUNKS).contains(&part.count()) {
        return Err(PartError::Count(part.count()));
    }
    if let Some(index) = part.index()
        && index >= part.count()
    {
        return Err(PartError::Index {
            index,
            count: part.count(),
        });
    }
    Ok(Some(part))
}

/// The two wire fields of `part`.
pub(crate) fn to_wire(part: Option<&Part>) -> (Option<WireChunk>, Option<WireStitch>) {
    match part {
        None => (None, None),
        Some(Part::Chunk { plan, index, count }) => (
            Some(WireChunk {
                plan: plan.clone(),
                index: *index,
                count: *count,
            }),
            None,
        ),
        Some(Part::Stitch { plan, count }) => (
            None,
            Some(WireStitch {
                plan: plan.clone(),
                count: *count,
            }),
        ),
    }
}
