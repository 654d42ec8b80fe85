//! `flink-agent`: the daemon (`run`) and a thin CLI over its Unix-socket API.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main().into()
}
