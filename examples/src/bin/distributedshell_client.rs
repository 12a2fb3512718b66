//! Runs a command on every worker of a running DistributedShell:
//! `distributedshell_client -appid 1 -command echo -args hello`. Prints each worker's output
//! under a header naming the worker; exits non-zero if the command failed anywhere.

use clap::Parser;
use gearpump_examples::distributedshell::{AppArgs, ShellCommand, ShellMaster, ask_and_report};

/// A client of a running DistributedShell application.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    app: AppArgs,
    /// The program to run on every worker.
    #[arg(long)]
    command: String,
    /// Its arguments, separated by whitespace.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    args: String,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    let what = format!("{:?}", args.command);
    ask_and_report::<ShellMaster>(&args.app, &ShellCommand { command: args.command, args: args.args }, &what)
}
