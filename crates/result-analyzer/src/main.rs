//! `result-analyzer`: see the crate docs (`lib.rs`) and `result-analyzer --help`.
//!
//! Exit status: 0 after a clean shutdown (SIGTERM or SIGINT: in-flight requests drained, database
//! closed), 2 when it cannot start (settings, database, port), 1 when the server fails.

use std::process::ExitCode;

use clap::Parser;
use result_analyzer::{Application, Config, shutdown_signal};

// Every request allocates a little (the body, the parsed event, the answer) on whichever worker
// thread runs it; mimalloc's per-thread heaps make that about 5% faster for POST /events under
// load than glibc's arenas (scripts/bench.sh analyzer).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    encoding_common::telemetry::init();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(2);
        }
    };
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the server failed");
            ExitCode::FAILURE
        }
    }
}
