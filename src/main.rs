//! `zerotrain`: parses the command line and hands over to `cli`.
use clap::Parser;

fn main() {
    let args = zerotrain::cli::Cli::parse();
    std::process::exit(zerotrain::cli::run(args));
}
