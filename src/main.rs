//! Parse the command line, run the library, print the error chain, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gazette::cli::Cli::parse();
    match gazette::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`gazette subscribers list | head`) is not an error.
        Err(err) if gazette::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            if !err.is::<gazette::Reported>() {
                eprint!("error: {err}");
                for cause in err.chain().skip(1) {
                    eprint!(": {cause}");
                }
                eprintln!();
            } else {
                eprintln!("{err}");
            }
            ExitCode::FAILURE
        }
    }
}
