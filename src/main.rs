//! Parse the command line, run the library, print the error once, exit with its code.
//!
//! Three kinds of error reach here, each printed its own way:
//! - a located [`Diagnostic`](gazette::diagnostic::Diagnostic): printed as it is
//!   (`file:line:column: error: …`, the line, a caret, a hint);
//! - [`Reported`](gazette::Reported): the details were printed already; only its summary;
//! - anything else (I/O, SMTP, the database): `error: ` and the chain of causes, each naming
//!   what it was about (the path, the relay).

// A closed standard error must not panic a command: write with `eline!`/`etext!`.
#![deny(clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;
use gazette::diagnostic::Diagnostic;

fn main() -> ExitCode {
    let cli = gazette::cli::Cli::parse();
    match gazette::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`gazette subscribers list | head`) is not an error.
        Err(err) if gazette::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(d) = err.downcast_ref::<Diagnostic>() {
                gazette::eline!("{d}");
            } else if err.is::<gazette::Reported>() {
                gazette::eline!("{err}");
            } else {
                gazette::etext!("error: {err}");
                for cause in err.chain().skip(1) {
                    gazette::etext!(": {cause}");
                }
                gazette::eline!();
            }
            ExitCode::FAILURE
        }
    }
}
