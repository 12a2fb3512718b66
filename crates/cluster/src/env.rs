//! The environment contract between the cluster and the processes of an application binary.
//!
//! `gear app` starts the binary as a client, a worker starts it as an AppMaster or an
//! executor; what each process needs (its role, the masters, its application and executor,
//! where its AppMaster listens, the cluster's configuration) travels in `GEARPUMP_*`
//! environment variables. [`ProcessEnv`] is that contract, typed: the starting side fills one
//! in and hands over [`ProcessEnv::vars`]; the started process parses its environment once
//! ([`ProcessEnv::current`]), and a variable that does not parse is an error naming it.

use gearpump_config::HostPort;
use gearpump_core::{AppId, Timestamp};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The role a process of an application binary plays in a cluster (`GEARPUMP_ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRole {
    /// Started by `gear app`: submits the application.
    Client,
    /// The application's AppMaster, on a worker.
    AppMaster,
    /// One of the application's executors, on a worker.
    Executor,
}

impl ProcessRole {
    /// The value of `GEARPUMP_ROLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessRole::Client => "client",
            ProcessRole::AppMaster => "appmaster",
            ProcessRole::Executor => "executor",
        }
    }

    fn parse(value: &str) -> Option<ProcessRole> {
        [ProcessRole::Client, ProcessRole::AppMaster, ProcessRole::Executor].into_iter().find(|r| r.as_str() == value)
    }

    /// This process's role alone (`None`: run directly), without parsing the rest of the
    /// contract; an unknown value is returned as the error.
    pub fn from_env() -> Result<Option<ProcessRole>, String> {
        match std::env::var(ROLE) {
            Err(_) => Ok(None),
            Ok(value) => ProcessRole::parse(&value).map(Some).ok_or(value),
        }
    }
}

/// A variable of the contract that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}: {reason}")]
pub struct EnvError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// What the environment tells a process of an application binary. Unset variables are `None`
/// (or the default); see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessEnv {
    /// `GEARPUMP_ROLE`; `None`: run directly (an embedded cluster).
    pub role: Option<ProcessRole>,
    /// `GEARPUMP_MASTERS`: `host:port,…`.
    pub masters: Vec<HostPort>,
    /// `GEARPUMP_APP_ID`.
    pub app_id: Option<AppId>,
    /// `GEARPUMP_EXECUTOR_ID` (-1: the AppMaster).
    pub executor: Option<i32>,
    /// `GEARPUMP_HOSTNAME`: the address this process binds and is reached at.
    pub hostname: Option<IpAddr>,
    /// `GEARPUMP_CONF`: the cluster's configuration (HOCON) as its worker or client has it.
    pub conf: Option<String>,
    /// `GEARPUMP_USER`: who submitted the application.
    pub user: Option<String>,
    /// `GEARPUMP_EXECUTORS`: executor processes wanted (0: one per worker).
    pub executors: u32,
    /// `GEARPUMP_PRIORITY`: the application's priority (`low`, `normal`, `high`), set by
    /// `gear app -priority`.
    pub priority: gearpump_protocol::Priority,
    /// `GEARPUMP_SAME_PROCESS`: run the executors inside the AppMaster's process.
    pub same_process: bool,
    /// `GEARPUMP_HOME`: where the application's relative paths (its checkpoint store) start.
    pub home: Option<PathBuf>,
    /// `GEARPUMP_START_CLOCK`: where a relaunched AppMaster resumes.
    pub start_clock: Timestamp,
    /// `GEARPUMP_APPMASTER_ATTEMPT`: which AppMaster of its application this is (0: the first).
    pub attempt: u32,
    /// `GEARPUMP_APPMASTER`: where an executor's AppMaster listens.
    pub appmaster: Option<SocketAddr>,
    /// `GEARPUMP_NAME_PREFIX`: prepended (with `_`) to the application's name by a client.
    pub name_prefix: String,
    /// `GEARPUMP_REPORT`: the file a client writes its outcome to, for `gear app`.
    pub report: Option<PathBuf>,
}

const ROLE: &str = "GEARPUMP_ROLE";
const MASTERS: &str = "GEARPUMP_MASTERS";
const APP_ID: &str = "GEARPUMP_APP_ID";
const EXECUTOR_ID: &str = "GEARPUMP_EXECUTOR_ID";
const HOSTNAME: &str = "GEARPUMP_HOSTNAME";
const CONF: &str = "GEARPUMP_CONF";
const USER: &str = "GEARPUMP_USER";
const EXECUTORS: &str = "GEARPUMP_EXECUTORS";
const PRIORITY: &str = "GEARPUMP_PRIORITY";
const SAME_PROCESS: &str = "GEARPUMP_SAME_PROCESS";
const HOME: &str = "GEARPUMP_HOME";
const START_CLOCK: &str = "GEARPUMP_START_CLOCK";
const ATTEMPT: &str = "GEARPUMP_APPMASTER_ATTEMPT";
const APPMASTER: &str = "GEARPUMP_APPMASTER";
const NAME_PREFIX: &str = "GEARPUMP_NAME_PREFIX";
const REPORT: &str = "GEARPUMP_REPORT";

impl ProcessEnv {
    /// This process's environment, parsed on first use.
    pub fn current() -> Result<&'static ProcessEnv, EnvError> {
        static CURRENT: OnceLock<Result<ProcessEnv, EnvError>> = OnceLock::new();
        CURRENT.get_or_init(|| ProcessEnv::from_vars(std::env::vars())).as_ref().map_err(Clone::clone)
    }

    /// The contract's variables among `vars`, parsed; others are ignored.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<ProcessEnv, EnvError> {
        let mut env = ProcessEnv::default();
        for (name, value) in vars {
            let Some(name) = ALL.iter().copied().find(|n| *n == name) else { continue };
            let bad = |reason: String| EnvError { name, reason };
            match name {
                ROLE => {
                    env.role = Some(ProcessRole::parse(&value).ok_or_else(|| bad(format!("unknown role {value:?}")))?);
                }
                MASTERS => {
                    env.masters = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().map_err(|reason| bad(format!("{s:?} {reason}"))))
                        .collect::<Result<_, _>>()?;
                }
                APP_ID => env.app_id = Some(AppId(parse(name, &value)?)),
                EXECUTOR_ID => env.executor = Some(parse(name, &value)?),
                HOSTNAME => {
                    env.hostname = Some(value.parse().map_err(|_| bad(format!("{value:?} is not an IP address")))?);
                }
                CONF => env.conf = Some(value).filter(|c| !c.is_empty()),
                USER => env.user = Some(value).filter(|u| !u.is_empty()),
                EXECUTORS => env.executors = parse(name, &value)?,
                PRIORITY => env.priority = value.parse().map_err(bad)?,
                SAME_PROCESS => env.same_process = value == "1",
                HOME => env.home = Some(PathBuf::from(value)).filter(|h| !h.as_os_str().is_empty()),
                START_CLOCK => env.start_clock = Timestamp(parse(name, &value)?),
                ATTEMPT => env.attempt = parse(name, &value)?,
                APPMASTER => env.appmaster = Some(parse(name, &value)?),
                NAME_PREFIX => env.name_prefix = value,
                REPORT => env.report = Some(PathBuf::from(value)),
                _ => {}
            }
        }
        Ok(env)
    }

    /// Every variable of the contract: a starting side removes these from what the started
    /// process would inherit before it sets [`ProcessEnv::vars`], so that nothing unset here
    /// leaks in from its own environment.
    pub const NAMES: &'static [&'static str] = &ALL;

    /// The variables to hand a process so that it parses this (what is unset is left out).
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(&str, String)> = Vec::new();
        if let Some(role) = self.role {
            vars.push((ROLE, role.as_str().into()));
        }
        if !self.masters.is_empty() {
            vars.push((MASTERS, self.masters.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")));
        }
        let optional: [(&str, Option<String>); 8] = [
            (APP_ID, self.app_id.map(|a| a.0.to_string())),
            (EXECUTOR_ID, self.executor.map(|e| e.to_string())),
            (HOSTNAME, self.hostname.map(|h| h.to_string())),
            (CONF, self.conf.clone()),
            (USER, self.user.clone()),
            (HOME, self.home.as_ref().map(|h| h.display().to_string())),
            (APPMASTER, self.appmaster.map(|a| a.to_string())),
            (REPORT, self.report.as_ref().map(|r| r.display().to_string())),
        ];
        vars.extend(optional.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
        if self.priority != gearpump_protocol::Priority::default() {
            vars.push((PRIORITY, format!("{:?}", self.priority).to_lowercase()));
        }
        if self.executors > 0 {
            vars.push((EXECUTORS, self.executors.to_string()));
        }
        if self.same_process {
            vars.push((SAME_PROCESS, "1".into()));
        }
        if self.start_clock != Timestamp(0) || self.attempt > 0 {
            vars.push((START_CLOCK, self.start_clock.0.to_string()));
            vars.push((ATTEMPT, self.attempt.to_string()));
        }
        if !self.name_prefix.is_empty() {
            vars.push((NAME_PREFIX, self.name_prefix.clone()));
        }
        vars.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
    }

    /// A variable this process needs, or an error naming it.
    fn required<T: Clone>(value: &Option<T>, name: &'static str) -> Result<T, EnvError> {
        value.clone().ok_or(EnvError { name, reason: "not set".into() })
    }

    /// The application id, which AppMasters and executors need.
    pub fn need_app_id(&self) -> Result<AppId, EnvError> {
        Self::required(&self.app_id, APP_ID)
    }

    /// The executor id, which executors need.
    pub fn need_executor(&self) -> Result<i32, EnvError> {
        Self::required(&self.executor, EXECUTOR_ID)
    }

    /// Where the AppMaster listens, which executors need.
    pub fn need_appmaster(&self) -> Result<SocketAddr, EnvError> {
        Self::required(&self.appmaster, APPMASTER)
    }

    /// The masters, which every cluster role needs.
    pub fn need_masters(&self) -> Result<&[HostPort], EnvError> {
        if self.masters.is_empty() {
            return Err(EnvError { name: MASTERS, reason: "not set".into() });
        }
        Ok(&self.masters)
    }

    /// The address to bind and be reached at (default 127.0.0.1).
    pub fn host(&self) -> IpAddr {
        self.hostname.unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }
}

/// `value` of variable `name` as a `T`, or an error naming it.
fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, EnvError> {
    value.parse().map_err(|_| EnvError { name, reason: format!("{value:?} is not valid") })
}

const ALL: [&str; 16] = [
    ROLE,
    MASTERS,
    APP_ID,
    EXECUTOR_ID,
    HOSTNAME,
    CONF,
    USER,
    EXECUTORS,
    PRIORITY,
    SAME_PROCESS,
    HOME,
    START_CLOCK,
    ATTEMPT,
    APPMASTER,
    NAME_PREFIX,
    REPORT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_side_writes_the_other_parses() {
        let env = ProcessEnv {
            role: Some(ProcessRole::AppMaster),
            masters: vec!["127.0.0.1:3000".parse().unwrap(), "10.0.0.2:3001".parse().unwrap()],
            app_id: Some(AppId(7)),
            executor: Some(-1),
            hostname: Some("10.0.0.5".parse().unwrap()),
            conf: Some("gearpump.worker.slots = 4".into()),
            user: Some("alice".into()),
            executors: 3,
            priority: gearpump_protocol::Priority::High,
            same_process: true,
            home: Some("/opt/gearpump".into()),
            start_clock: Timestamp(12_000),
            attempt: 2,
            appmaster: Some("10.0.0.5:4000".parse().unwrap()),
            name_prefix: "test".into(),
            report: Some("/tmp/report".into()),
        };
        let vars = env.vars();
        assert_eq!(vars.len(), ALL.len(), "{vars:?}");
        let noise = [("PATH".to_string(), "/bin".to_string())];
        assert_eq!(ProcessEnv::from_vars(vars.into_iter().chain(noise)).unwrap(), env);
        assert_eq!(ProcessEnv::from_vars(ProcessEnv::default().vars()).unwrap(), ProcessEnv::default());
    }

    #[test]
    fn a_variable_that_does_not_parse_is_named() {
        let cases = [
            ("GEARPUMP_ROLE", "boss", "unknown role"),
            ("GEARPUMP_MASTERS", "127.0.0.1", "GEARPUMP_MASTERS"),
            ("GEARPUMP_APP_ID", "x", "\"x\" is not valid"),
            ("GEARPUMP_HOSTNAME", "my-host", "not an IP address"),
            ("GEARPUMP_APPMASTER", "nowhere", "GEARPUMP_APPMASTER"),
        ];
        for (name, value, expected) in cases {
            let e = ProcessEnv::from_vars([(name.to_string(), value.to_string())]).unwrap_err();
            assert_eq!(e.name, name);
            assert!(e.to_string().contains(expected), "{e}");
        }
        let e = ProcessEnv::default().need_app_id().unwrap_err();
        assert_eq!(e.to_string(), "environment variable GEARPUMP_APP_ID: not set");
    }
}
