//! `producer`: see the crate docs (`lib.rs`) and `producer --help`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = producer::Config::parse();
    encoding_common::telemetry::init();
    match producer::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "failed");
            ExitCode::FAILURE
        }
    }
}
