//! End-to-end tests of the pipeline: the real programs against moto and real media.
//!
//! - `media`: every file of the sample media set through the transcoding core.
//! - `scaling`: local-scaler with the real ScaledJob manifest bounds the encoders at once.
//! - `walking_skeleton`: one video through producer, SQS, encoder, S3 and analyzer.
//! - `chaos`: random SIGTERM/SIGKILL; every request still ends with exactly one output.
//! - `lifecycle`: what the encoder does with its message under signals, bad input, duplicates,
//!   failures and configuration errors.

mod chaos;
mod lifecycle;
mod media;
mod scaling;
mod walking_skeleton;
