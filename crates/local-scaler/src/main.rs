//! `local-scaler`: KEDA ScaledJob semantics on one machine. See `local-scaler --help` and the
//! crate's README.
//!
//! ```text
//! local-scaler plan --queue-length 10 --max-replicas 3
//! QUEUE_URL=... local-scaler run --scaledjob k8s/base/encoder-scaledjob.yaml --until-empty
//! ```

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    // Like encoding_common::telemetry::init(), plus erasing the terminal status line.
    local_scaler::telemetry::init();
    let cli = local_scaler::Cli::parse();
    match local_scaler::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "local-scaler failed");
            local_scaler::exit_code_for(&error)
        }
    }
}
