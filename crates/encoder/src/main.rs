//! `encoder`: the ScaledJob worker. One message per run, then exit. See the crate docs (`lib.rs`)
//! for the lifecycle and exit codes, and `encoder --help` for the settings.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = encoder::Cli::parse();
    encoding_common::telemetry::init();
    encoder::main(cli)
}
