//! `flink-agent`: the daemon (`run`) and a thin CLI over its Unix-socket API.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::execute(cli.command) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("flink-agent: {e:#}");
            cli::Exit::of(&e).into()
        }
    }
}
