//! The guide's DistributedShell: a non-streaming application with one executor on every
//! worker. A client sends a shell command to its AppMaster, which has every executor run it
//! and answers with what each printed.
//!
//! Submit it with `gear app -jar distributedshell`, then ask it with
//! `distributedshell_client -appid N -command echo -args hello`.

use gearpump::application::{AppMaster, AppMasterContext, Application, Executor, ExecutorContext};
use serde::{Deserialize, Serialize};

/// The application's kind, which its clients check.
pub const KIND: &str = "DistributedShell";

/// A command to run on every worker: a program and its arguments (split at whitespace).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellCommand {
    /// The program.
    pub command: String,
    /// Its arguments, separated by whitespace.
    pub args: String,
}

/// What one run of a command gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellOutput {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// One worker's part of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerResult {
    /// The worker.
    pub worker: u32,
    /// Its host.
    pub host: String,
    /// The executor that ran the command.
    pub executor: i32,
    /// The command's output, or why it could not run.
    pub result: Result<ShellOutput, String>,
}

impl WorkerResult {
    /// Whether the command ran and exited with 0.
    pub fn succeeded(&self) -> bool {
        matches!(&self.result, Ok(out) if out.code == Some(0))
    }
}

/// Runs the commands it is sent.
pub struct ShellExecutor;

impl Executor for ShellExecutor {
    type Task = ShellCommand;
    type Output = ShellOutput;

    fn on_task(&mut self, _: &ExecutorContext, task: ShellCommand) -> Result<ShellOutput, String> {
        let out = std::process::Command::new(&task.command)
            .args(task.args.split_whitespace())
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {:?}: {e}", task.command))?;
        Ok(ShellOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Sends each client's command to every executor and gathers their outputs.
pub struct ShellMaster;

impl AppMaster for ShellMaster {
    const KIND: &'static str = KIND;
    type Executor = ShellExecutor;
    type Request = ShellCommand;
    type Response = Vec<WorkerResult>;

    fn on_request(
        &mut self,
        ctx: &mut AppMasterContext<ShellExecutor>,
        request: ShellCommand,
    ) -> Result<Vec<WorkerResult>, String> {
        if request.command.trim().is_empty() {
            return Err("no command given".into());
        }
        ask_every_worker(ctx, &request)
    }
}

/// Sends `task` to every executor and gathers what each worker answered, by worker.
pub fn ask_every_worker<E: Executor<Output = ShellOutput>>(
    ctx: &mut AppMasterContext<E>,
    task: &E::Task,
) -> Result<Vec<WorkerResult>, String> {
    if ctx.executors().is_empty() {
        return Err("no executor is running (no worker has a free slot?)".into());
    }
    let mut results: Vec<WorkerResult> = ctx
        .ask_all(task)
        .into_iter()
        .map(|(e, result)| WorkerResult { worker: e.worker.0, host: e.host, executor: e.id, result })
        .collect();
    results.sort_by_key(|r| (r.worker, r.executor));
    Ok(results)
}

/// The application: an AppMaster and one shell executor on every worker.
pub fn application() -> Application<ShellMaster> {
    Application::new("DistributedShell", |_| ShellMaster, |_| ShellExecutor)
}

/// The client's report: each worker's output under a header naming it. Returns it and how
/// many workers the command failed on.
pub fn report(results: &[WorkerResult]) -> (String, usize) {
    let mut text = String::new();
    let mut failed = 0;
    for r in results {
        let status = match &r.result {
            Ok(out) => match out.code {
                Some(code) => format!("exit {code}"),
                None => "killed by a signal".to_string(),
            },
            Err(_) => "failed".to_string(),
        };
        text.push_str(&format!("== worker {} ({}), executor {}: {status} ==\n", r.worker, r.host, r.executor));
        match &r.result {
            Ok(out) => {
                text.push_str(&out.stdout);
                text.push_str(&out.stderr);
            }
            Err(e) => text.push_str(&format!("error: {e}\n")),
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if !r.succeeded() {
            failed += 1;
        }
    }
    (text, failed)
}

/// The options every client of a running application takes (flattened into theirs).
#[derive(Clone, Debug, clap::Args)]
pub struct AppArgs {
    /// The application's id (printed by `gear app`).
    #[arg(long)]
    pub appid: u32,
    /// The masters, `host:port,host:port` (default: gearpump.cluster.masters of gear.conf).
    #[arg(long)]
    pub master: Option<String>,
    /// A configuration file over conf/gear.conf (for the cluster's secret, say).
    #[arg(long)]
    pub conf: Option<std::path::PathBuf>,
}

/// A client's whole run: sends `request` to the application `app` names, prints each
/// worker's part ([`report`]), and fails naming `what` if it failed on any worker.
pub fn ask_and_report<M>(app: &AppArgs, request: &M::Request, what: &str) -> anyhow::Result<()>
where
    M: AppMaster<Response = Vec<WorkerResult>>,
{
    let (masters, secret) =
        gearpump::cli::cluster_of(app.master.as_deref(), app.conf.as_deref()).map_err(anyhow::Error::msg)?;
    let mut client = gearpump::application::AppClient::<M>::connect(&masters, &secret, gearpump::AppId(app.appid))?;
    let results = client.ask(request)?;
    let (text, failed) = report(&results);
    print!("{text}");
    if failed > 0 {
        anyhow::bail!("{what} failed on {failed} of {} workers", results.len());
    }
    Ok(())
}
