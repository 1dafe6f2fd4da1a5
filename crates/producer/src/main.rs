//! `producer`: puts encode requests on the queue. See the crate docs (`lib.rs`) and `producer --help`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = producer::Config::load();
    let ui = producer::Ui::for_stderr();
    encoding_common::telemetry::init_with_writer(ui.log_writer());
    match producer::run(config, &ui).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "failed");
            ExitCode::from(producer::exit_code(&e))
        }
    }
}
