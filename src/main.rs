use std::process::ExitCode;

use clap::Parser;
use secret_injector::cli::Cli;

mod run;

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let serving = matches!(cli.command, secret_injector::cli::Command::Serve(_));
    secret_injector::logging::init(cli.log_format, serving);
    run::run(cli)
}
