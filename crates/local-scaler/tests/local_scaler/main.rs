//! local-scaler's integration tests: the real binary (`CARGO_BIN_EXE_local-scaler`).
//!
//! A test that needs SQS starts its own `moto_server` on a free port (see `helpers::Moto`) and
//! fails, never skips, when moto is missing.

/// Starting moto, writing manifests, running the binary.
mod helpers;
/// The real manifest, `k8s/base/encoder-scaledjob.yaml`: local-scaler must be able to run it.
mod k8s;
/// `local-scaler plan`: the JSON it prints and its usage errors.
mod plan;
/// `local-scaler run` against moto with fake encoders: the loop, env precedence, deadlines,
/// exit statuses, signals.
mod run;
