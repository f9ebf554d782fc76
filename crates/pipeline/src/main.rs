use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pipeline::cli::Cli::parse();
    match pipeline::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line, with the chain of causes: "error: reading x.distill: corrupt …".
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
