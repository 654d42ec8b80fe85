//! Man pages (`clap_mangen`) and shell completions (`clap_complete`) from the command line's own
//! definition, so they cannot drift from it. `packaging/build.sh` runs these and the packages
//! install the results (`/usr/share/man/man8`, bash, zsh and fish completion dirs).

use super::Cli;
use anyhow::Context;
use clap::CommandFactory;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Write flink-agent.8 and flink-agent-<command>.8 into DIR.
    Man { dir: PathBuf },
    /// Print the completion script for SHELL.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

pub fn run(what: What) -> anyhow::Result<()> {
    match what {
        What::Man { dir } => man_pages(&dir),
        What::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "flink-agent", &mut script);
            let mut script = String::from_utf8(script)?;
            if shell == clap_complete::Shell::Bash {
                // clap_complete 4.6 names a subcommand's branch `flink__subcmd__agent__…` but
                // sets `cmd=flink__agent__…` for a binary name with a '-': without this, no
                // subcommand's options complete (tests/cli.rs checks `status --w`).
                script = script.replace("flink__subcmd__agent", "flink__agent");
            }
            print!("{script}");
            Ok(())
        }
    }
}

/// One page per command, section 8 (system administration), hidden commands left out:
/// `flink-agent.8`, `flink-agent-status.8`, `flink-agent-jobs-deploy.8`, ...
fn man_pages(dir: &Path) -> anyhow::Result<()> {
    fn generate(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            generate(sub, dir)?;
        }
        clap_mangen::Man::new(cmd)
            .section("8")
            .manual("System Administration")
            .generate_to(dir)
            .map(drop)
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Subcommands get their full name (`flink-agent-jobs-deploy`) once built.
    cmd.build();
    generate(cmd, dir).with_context(|| format!("writing man pages into {}", dir.display()))
}
