//! Runs a command on every worker of a running DistributedShell:
//! `distributedshell_client -appid 1 -command echo -args hello`. Prints each worker's output
//! under a header naming the worker; exits non-zero if the command failed anywhere.

use clap::Parser;
use gearpump::application::AppClient;
use gearpump_examples::distributedshell::{ShellCommand, ShellMaster, report};

/// A client of a running DistributedShell application.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The DistributedShell's application id (printed by `gear app`).
    #[arg(long)]
    appid: u32,
    /// The program to run on every worker.
    #[arg(long)]
    command: String,
    /// Its arguments, separated by whitespace.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    args: String,
    /// The masters, `host:port,host:port` (default: gearpump.cluster.masters of gear.conf).
    #[arg(long)]
    master: Option<String>,
    /// A configuration file over conf/gear.conf (for the cluster's secret, say).
    #[arg(long)]
    conf: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    let (masters, secret) =
        gearpump::cli::cluster_of(args.master.as_deref(), args.conf.as_deref()).map_err(anyhow::Error::msg)?;
    let mut client = AppClient::<ShellMaster>::connect(&masters, &secret, gearpump::AppId(args.appid))?;
    let results = client.ask(&ShellCommand { command: args.command.clone(), args: args.args })?;
    let (text, failed) = report(&results);
    print!("{text}");
    if failed > 0 {
        anyhow::bail!("{:?} failed on {failed} of {} workers", args.command, results.len());
    }
    Ok(())
}
