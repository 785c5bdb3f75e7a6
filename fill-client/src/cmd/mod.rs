//! The commands, one module per family; `run` dispatches a parsed command line.
//!
//! Each module is one command family and imports no other but `delta` and `run` (whose
//! tables the demo prints too); what several share is in `crate::common`.

use anyhow::Result;

use crate::Outcome;
use crate::cli::{Cli, Command};

mod appliance;
mod bench;
mod catalog;
pub(crate) mod delta;
pub(crate) mod demo;
mod docs;
mod plan;
mod prefill;
pub(crate) mod run;
mod simulate;
mod site;
mod store;

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Store(cmd) => store::store(cmd),
        Command::Catalog(cmd) => catalog::catalog(cmd),
        Command::Delta(args) => delta::delta_cmd(&args),
        Command::Run(args) if args.site.is_some() => site::run_site(&args),
        Command::Run(args) => run::run_cmd(&args),
        Command::Site(cmd) => site::site(cmd),
        Command::Prefill(args) => prefill::prefill_cmd(&args),
        Command::Plan(args) => plan::plan_cmd(&args),
        Command::Appliance(cmd) => appliance::appliance(cmd),
        Command::Simulate(args) => simulate::run(&args),
        Command::Bench(cmd) => bench::bench(cmd),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { dir } => docs::man(&dir),
    }
}
