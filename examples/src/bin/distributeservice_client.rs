//! Installs a service on every worker of a running DistributeService:
//! `distributeservice_client -appid 1 -file app.tgz -script start.sh -serviceName app -target /opt/app`.
//! Prints each worker's script output under a header naming the worker; exits non-zero if the
//! installation failed anywhere.

use clap::Parser;
use gearpump_examples::distributedshell::{AppArgs, ask_and_report};
use gearpump_examples::distributeservice::{ServiceMaster, request};

/// A client of a running DistributeService application.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    app: AppArgs,
    /// The file to ship (a `.tar`, `.tar.gz` or `.tgz` is unpacked in the target directory).
    #[arg(long)]
    file: std::path::PathBuf,
    /// The service script, run on every worker in the target directory.
    #[arg(long)]
    script: std::path::PathBuf,
    /// The service's name (the script is installed under it).
    #[arg(long = "serviceName")]
    service_name: String,
    /// The directory to install into, on every worker.
    #[arg(long)]
    target: String,
}

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse_from(gearpump::cli::normalize_args(std::env::args()));
    let install = request(&args.file, &args.script, &args.service_name, &args.target).map_err(anyhow::Error::msg)?;
    ask_and_report::<ServiceMaster>(&args.app, &install, &format!("installing {}", args.service_name))
}
