//! Installs a service on every worker of a running DistributeService:
//! `distributeservice_client -appid 1 -file app.tgz -script start.sh -serviceName app -target /opt/app`.
//! Prints each worker's script output under a header naming the worker; exits non-zero if the
//! installation failed anywhere.

use clap::Parser;
use gearpump::application::AppClient;
use gearpump_examples::distributedshell::report;
use gearpump_examples::distributeservice::{ServiceMaster, request};

/// A client of a running DistributeService application.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The DistributeService's application id (printed by `gear app`).
    #[arg(long)]
    appid: u32,
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
    let install = request(&args.file, &args.script, &args.service_name, &args.target).map_err(anyhow::Error::msg)?;
    let (masters, secret) =
        gearpump::cli::cluster_of(args.master.as_deref(), args.conf.as_deref()).map_err(anyhow::Error::msg)?;
    let mut client = AppClient::<ServiceMaster>::connect(&masters, &secret, gearpump::AppId(args.appid))?;
    let results = client.ask(&install)?;
    let (text, failed) = report(&results);
    print!("{text}");
    if failed > 0 {
        anyhow::bail!("installing {} failed on {failed} of {} workers", args.service_name, results.len());
    }
    Ok(())
}
