//! `encoder`: the ScaledJob worker. One message per run, then exit. See the crate docs (`lib.rs`)
//! for the lifecycle and exit codes, and `encoder --help` for the settings.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Until the handlers are ready, a SIGTERM waits instead of ending the run unreleased.
    encoding_common::shutdown::defer();
    let cli = encoder::Cli::parse();
    encoding_common::telemetry::init();
    encoder::main(cli)
}
