//! End-to-end tests of the pipeline: the real programs against both AWS emulators (moto and
//! LocalStack, one of each for the binary; every test runs once on each, as `<module>::moto::<test>`
//! and `<module>::localstack::<test>`) and real media.
//!
//! - `media`: every file of the sample media set through the transcoding core.
//! - `media_queue`: every file of the media set through the queue, the encoder and S3.
//! - `scaling`: local-scaler with the real ScaledJob manifest bounds the encoders at once.
//! - `walking_skeleton`: one video through producer, SQS, encoder, S3 and analyzer.
//! - `chaos`: random SIGTERM/SIGKILL; every request still ends with exactly one output.
//! - `lifecycle`: what the encoder does with its message under signals, bad input, duplicates,
//!   failures and configuration errors.
//! - `results`: completion notices on the results queue, and `producer --wait`.
//! - `split`: a long source split into chunks, chunk runs killed at random, stitched once.
//! - `streaming`: HLS and DASH through the queue and S3, played by hls.js and dash.js.
//! - `faults`: SQS and S3 unreachable for 10 s during an upload and during a lease renewal.

mod chaos;
mod faults;
mod lifecycle;
mod media;
mod media_queue;
mod results;
mod scaling;
mod split;
mod streaming;
mod walking_skeleton;
