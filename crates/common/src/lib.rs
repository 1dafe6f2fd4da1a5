//! Pieces every program of the pipeline shares.
//!
//! - [`request`]: the encode request, the SQS message body of `../shared/CONTRACT.md`, with the
//!   validation that keeps a typo from silently becoming a default.
//! - [`identity`]: a request's identity and what each stored rendition's metadata says about who
//!   made it, for the duplicate check.
//! - [`part`]: the chunk or the stitch of a split request a message may ask for.
//! - [`format`]: the output formats a request may ask for (`mp4`, `hls`, `dash`).
//! - [`event`]: what the encoder reports to the result analyzer, and the rules the analyzer checks.
//! - [`notice`]: the completion notice the encoder sends to the results queue, one per request.
//! - [`aws`]: AWS clients built once from the standard SDK configuration (`AWS_REGION`, the default
//!   credentials chain, `AWS_ENDPOINT_URL` for an emulator).
//! - [`telemetry`]: `tracing` set-up (`LOG_FORMAT=json` for JSON lines, `RUST_LOG` filters).
//! - [`upload`]: storing a local file in S3 (multipart above 16 MiB, CRC32 checked by S3 and read
//!   back, aborted when stopped).
//! - [`shutdown`]: SIGTERM and SIGINT, handled the same way by every program (with the "defer until
//!   ready" step the encoder needs).

pub mod aws;
pub mod event;
pub mod format;
pub mod identity;
pub mod notice;
pub mod part;
pub mod request;
pub mod shutdown;
pub mod telemetry;
pub mod upload;

pub use event::{Event, EventKind};
pub use format::Format;
pub use request::{EncodeRequest, Quality, RequestError, S3Uri};
