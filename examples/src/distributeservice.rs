//! The guide's DistributeService: a non-streaming application with one executor on every
//! worker. A client ships a file (an archive, say) and a service script; every executor puts
//! the file in a target directory (unpacking a `.tar`, `.tar.gz` or `.tgz` there), installs
//! the script there as `<serviceName>` and runs it, and the client prints each worker's
//! output.
//!
//! Submit it with `gear app -jar distributeservice`, then
//! `distributeservice_client -appid N -file app.tgz -script start.sh -serviceName app -target /opt/app`.

use crate::distributedshell::{ShellOutput, WorkerResult, ask_every_worker};
use gearpump::application::{AppMaster, AppMasterContext, Application, Executor, ExecutorContext};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The application's kind, which its clients check.
pub const KIND: &str = "DistributeService";

/// Install a service on every worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallService {
    /// The file's name.
    pub file_name: String,
    /// Its bytes.
    pub file: Vec<u8>,
    /// The service script.
    pub script: String,
    /// The service's name: the script is installed as `<target>/<service_name>`.
    pub service_name: String,
    /// Where to install, on every worker (relative: to the executor's working directory).
    pub target: String,
}

/// Installs and starts the services it is sent.
pub struct ServiceExecutor;

fn plain_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    if ok { Ok(()) } else { Err(format!("{what} {name:?} must be a plain file name")) }
}

impl ServiceExecutor {
    fn install(task: &InstallService) -> Result<ShellOutput, String> {
        plain_name(&task.file_name, "the file name")?;
        plain_name(&task.service_name, "the service name")?;
        let target = PathBuf::from(&task.target);
        std::fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
        let target = target.canonicalize().map_err(|e| format!("resolving {}: {e}", target.display()))?;
        let file = target.join(&task.file_name);
        std::fs::write(&file, &task.file).map_err(|e| format!("writing {}: {e}", file.display()))?;
        let name = task.file_name.as_str();
        if name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            run(std::process::Command::new("tar").arg("-xf").arg(&file).arg("-C").arg(&target)).and_then(|out| {
                if out.code == Some(0) { Ok(()) } else { Err(format!("unpacking {name}: {}", out.stderr)) }
            })?;
        }
        let script = target.join(&task.service_name);
        std::fs::write(&script, &task.script).map_err(|e| format!("writing {}: {e}", script.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("making {} executable: {e}", script.display()))?;
        run(std::process::Command::new("sh").arg(&script).current_dir(&target))
    }
}

fn run(cmd: &mut std::process::Command) -> Result<ShellOutput, String> {
    let out = cmd.stdin(std::process::Stdio::null()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    Ok(ShellOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl Executor for ServiceExecutor {
    type Task = InstallService;
    type Output = ShellOutput;

    fn on_task(&mut self, _: &ExecutorContext, task: InstallService) -> Result<ShellOutput, String> {
        Self::install(&task)
    }
}

/// Sends each installation to every executor and gathers what the scripts printed.
pub struct ServiceMaster;

impl AppMaster for ServiceMaster {
    const KIND: &'static str = KIND;
    type Executor = ServiceExecutor;
    type Request = InstallService;
    type Response = Vec<WorkerResult>;

    fn on_request(
        &mut self,
        ctx: &mut AppMasterContext<ServiceExecutor>,
        request: InstallService,
    ) -> Result<Vec<WorkerResult>, String> {
        ask_every_worker(ctx, &request)
    }
}

/// The application: an AppMaster and one service executor on every worker.
pub fn application() -> Application<ServiceMaster> {
    Application::new("DistributeService", |_| ServiceMaster, |_| ServiceExecutor)
}

/// The request for `file` and `script` (read here, on the client's machine).
pub fn request(file: &Path, script: &Path, service_name: &str, target: &str) -> Result<InstallService, String> {
    let file_name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} names no file", file.display()))?
        .to_string();
    let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    // Every request crosses the control plane whole.
    let limit = 15 << 20;
    if bytes.len() > limit {
        return Err(format!(
            "{} is {} MiB; at most {} MiB can be shipped",
            file.display(),
            bytes.len() >> 20,
            limit >> 20
        ));
    }
    let script = std::fs::read_to_string(script).map_err(|e| format!("reading {}: {e}", script.display()))?;
    plain_name(service_name, "the service name")?;
    Ok(InstallService {
        file_name,
        file: bytes,
        script,
        service_name: service_name.to_string(),
        target: target.to_string(),
    })
}
