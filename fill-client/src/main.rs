//! The `fill` command. All the work is in the library; this maps errors to exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    fill_client::main()
}
