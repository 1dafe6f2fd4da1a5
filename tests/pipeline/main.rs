//! End-to-end tests of the pipeline: the real programs against moto and real media.
//!
//! - `walking_skeleton`: one video through producer, SQS, encoder, S3 and analyzer.

mod walking_skeleton;
