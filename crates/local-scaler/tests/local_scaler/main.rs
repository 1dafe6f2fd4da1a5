//! local-scaler's integration tests: the real binary (`CARGO_BIN_EXE_local-scaler`).
//!
//! A test that needs SQS runs on both emulators (`test_support::Emulator`: moto and LocalStack,
//! one of each shared by the binary) and fails, never skips, when one is missing.

/// Queues, manifests, running the binary.
mod helpers;
/// The real manifest, `k8s/base/encoder-scaledjob.yaml`: local-scaler must be able to run it.
mod k8s;
/// `local-scaler plan`: the JSON it prints and its usage errors.
mod plan;
/// `local-scaler run` against each emulator with fake encoders: the loop, env precedence, deadlines,
/// exit statuses, signals.
mod run;
