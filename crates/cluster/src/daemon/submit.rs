//! Submitting an application binary: it runs in the client role, uploads itself and submits.

use gearpump_core::AppId;
use std::path::Path;
use std::time::Duration;

/// Why a binary could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitBinaryError {
    /// The path is not an executable file.
    #[error("{0}")]
    NotExecutable(String),
    /// The binary ran but is not a Gearpump application.
    #[error("{0}")]
    NotAnApplication(String),
    /// The cluster refused the application.
    #[error("the application was refused: {0}")]
    Refused(String),
    /// Running it failed.
    #[error("running {path}: {source}")]
    Io {
        /// The binary.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// How a binary is submitted (`gear app`'s options, or the REST API's).
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Prepended to the application's name, with `_`.
    pub name_prefix: String,
    /// Executor processes wanted (0: one per worker it gets slots on).
    pub executors: u32,
    /// How urgent its requests for slots are.
    pub priority: gearpump_protocol::Priority,
    /// Who submits it (`None`: the user running this process).
    pub user: Option<String>,
}

/// Runs `jar` in the client role against the masters `masters_env` (`host:port,…`): it
/// uploads itself and submits its application. Returns the application's id. A binary that is
/// not an application is given 300 s to exit, then killed.
pub fn submit_binary(
    jar: &Path,
    args: &[String],
    options: &SubmitOptions,
    masters: &[gearpump_config::HostPort],
    system_config: &str,
) -> Result<AppId, SubmitBinaryError> {
    let SubmitOptions { name_prefix, executors, priority, user } = options;
    use std::os::unix::fs::PermissionsExt;
    let shown = jar.display().to_string();
    let io = |source| SubmitBinaryError::Io { path: shown.clone(), source };
    let meta = std::fs::metadata(jar)
        .map_err(|_| SubmitBinaryError::NotExecutable(format!("no application binary at {shown}")))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(SubmitBinaryError::NotExecutable(format!("{shown} is not an executable file")));
    }
    let started = std::time::Instant::now();
    let report = std::env::temp_dir().join(format!(
        "gear-app-{}-{}.report",
        std::process::id(),
        started.elapsed().as_nanos() ^ fastrand::u64(..) as u128
    ));
    let _ = std::fs::remove_file(&report);
    // `Command::new("wc")` searches the PATH; a relative path means the working directory.
    let program = if jar.is_relative() { Path::new(".").join(jar) } else { jar.to_path_buf() };
    let env = crate::env::ProcessEnv {
        role: Some(crate::env::ProcessRole::Client),
        masters: masters.to_vec(),
        // The cluster's configuration, its secret (or secret file) with it.
        conf: Some(system_config.to_string()),
        name_prefix: name_prefix.clone(),
        executors: *executors,
        priority: *priority,
        report: Some(report.clone()),
        user: Some(user.clone().unwrap_or_else(crate::current_user)),
        ..Default::default()
    };
    let mut command = std::process::Command::new(program);
    // Nothing of the contract leaks in from this process's own environment.
    for name in crate::env::ProcessEnv::NAMES {
        command.env_remove(name);
    }
    let mut child = command.args(args).envs(env.vars()).stdin(std::process::Stdio::null()).spawn().map_err(io)?;
    let limit = Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SubmitBinaryError::NotAnApplication(format!(
                "{shown} did not submit anything within {limit:?}; is it a Gearpump application binary?"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let outcome = std::fs::read_to_string(&report).ok();
    let _ = std::fs::remove_file(&report);
    match outcome.as_deref().and_then(|o| o.split_once(' ')) {
        Some(("app_id", id)) => id
            .trim()
            .parse()
            .map(AppId)
            .map_err(|_| SubmitBinaryError::NotAnApplication(format!("a malformed report from {shown}: {id:?}"))),
        Some(("error", e)) => Err(SubmitBinaryError::Refused(e.trim().to_string())),
        _ => Err(SubmitBinaryError::NotAnApplication(format!(
            "{shown} is not a Gearpump application binary: it exited ({status}) without submitting anything"
        ))),
    }
}
