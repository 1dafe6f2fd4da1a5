//! `result-analyzer`: see the crate docs (`lib.rs`) and `result-analyzer --help`.

use std::process::ExitCode;

use clap::Parser;
use result_analyzer::{Application, Config, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    encoding_common::telemetry::init();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot start");
            return ExitCode::from(2);
        }
    };
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the server failed");
            ExitCode::FAILURE
        }
    }
}
