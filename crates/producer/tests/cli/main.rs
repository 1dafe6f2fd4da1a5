//! The `producer` program run as a user runs it, against each real SQS/S3 emulator (moto and
//! LocalStack, one of each shared by the binary; every test has a queue and a bucket of its own),
//! with what it sent read back from the queue and the bucket.
//!
//! - `helpers`: running the program with a clean environment, queues, reading a queue back.
//! - `from_file`: `--from-file`: valid files, invalid lines (nothing sent), `--skip-invalid`, stdin.
//! - `source`: `--source` and the environment the Kubernetes Job sets, `--json`, `--dry-run`.
//! - `upload`: `--upload`: a real video, a multipart upload, an upload stopped by SIGINT, failures.
//! - `sending`: batches: one entry SQS refuses, several batches, a missing queue.
//! - `fifo`: FIFO queues: group and deduplication ids, a re-sent file enqueued once.

mod fifo;
mod from_file;
mod helpers;
mod sending;
mod source;
mod upload;
