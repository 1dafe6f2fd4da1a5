//! Pieces every program of the pipeline shares.
//!
//! - [`request`]: the encode request, the SQS message body of `../shared/CONTRACT.md`, with the
//!   validation that keeps a typo from silently becoming a default.
//! - [`event`]: what the encoder reports to the result analyzer, and how the analyzer stores it.
//! - [`aws`]: AWS clients built once from the standard SDK configuration (`AWS_REGION`, the default
//!   credentials chain, `AWS_ENDPOINT_URL` for an emulator).
//! - [`telemetry`]: `tracing` set-up (`LOG_FORMAT=json` for JSON lines, `RUST_LOG` filters).
//! - [`upload`]: storing a local file in S3 (multipart above 16 MiB, aborted when stopped).

pub mod aws;
pub mod event;
pub mod request;
pub mod telemetry;
pub mod upload;

pub use event::{Event, EventKind};
pub use request::{EncodeRequest, Quality, RequestError, S3Uri};
