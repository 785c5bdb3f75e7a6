//! `fill completions SHELL` and `fill man --dir DIR`: shell completions and manual pages,
//! generated from the clap definitions that `--help` prints, so they never disagree.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::Outcome;
use crate::cli::Cli;

pub(crate) fn completions(shell: clap_complete::Shell) -> Result<Outcome> {
    let mut cmd = Cli::command();
    let mut out = crate::stdout();
    clap_complete::generate(shell, &mut cmd, "fill", &mut out);
    std::io::Write::flush(&mut out)?;
    Ok(Outcome::Ok)
}

pub(crate) fn man(dir: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".1"))
        .collect();
    pages.sort();
    outln!("wrote {} manual pages into {}", pages.len(), dir.display())?;
    Ok(Outcome::Ok)
}
