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
        if ctx.executors().is_empty() {
            return Err("no executor is running (no worker has a free slot?)".into());
        }
        let mut results: Vec<WorkerResult> = ctx
            .ask_all(&request)
            .into_iter()
            .map(|(e, result)| WorkerResult { worker: e.worker.0, host: e.host, executor: e.id, result })
            .collect();
        results.sort_by_key(|r| (r.worker, r.executor));
        Ok(results)
    }
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
