//! Metric reporters: where the master sends the latest metrics every
//! `gearpump.metrics.report-interval-ms`, besides serving them over REST.

use gearpump_config::GearConfig;
use gearpump_metrics::{MetricPoint, exporters};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A metrics destination (`gearpump.metrics.reporter`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reporter {
    /// Graphite's plaintext protocol over TCP (`graphite`, at `gearpump.metrics.graphite.host`
    /// and `.port`).
    Graphite {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// Lines appended to a file (`logfile`: `metrics.log` in `gearpump.log.daemon.dir`).
    LogFile(PathBuf),
}

impl fmt::Display for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reporter::Graphite { host, port } => write!(f, "graphite at {host}:{port}"),
            Reporter::LogFile(path) => write!(f, "log file {}", path.display()),
        }
    }
}

impl Reporter {
    /// The reporter a configuration asks for, and its interval; `None` when metrics are off or
    /// the reporter is `akka` (the built-in one the REST API serves).
    pub fn from_config(conf: &GearConfig) -> Result<Option<(Reporter, Duration)>, gearpump_config::ConfigError> {
        if !conf.get_bool("gearpump.metrics.enabled")? {
            return Ok(None);
        }
        let every = Duration::from_millis(conf.get_num::<u64>("gearpump.metrics.report-interval-ms")?.max(100));
        let reporter = match conf.get_str("gearpump.metrics.reporter").unwrap_or("akka") {
            "graphite" => Reporter::Graphite {
                host: conf.get_str("gearpump.metrics.graphite.host").unwrap_or("127.0.0.1").to_string(),
                port: conf.get_num("gearpump.metrics.graphite.port")?,
            },
            "logfile" => {
                let dir = conf.get_str("gearpump.log.daemon.dir").unwrap_or("logs");
                Reporter::LogFile(PathBuf::from(dir).join("metrics.log"))
            }
            _ => return Ok(None),
        };
        Ok(Some((reporter, every)))
    }

    /// Sends `points` in the background; a failure is logged, never fatal.
    pub fn send(&self, points: Vec<MetricPoint>) {
        if points.is_empty() {
            return;
        }
        let reporter = self.clone();
        tokio::spawn(async move {
            let result = match &reporter {
                Reporter::Graphite { host, port } => {
                    let text = exporters::graphite("gearpump", &points);
                    let send = async {
                        let mut s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                        s.write_all(text.as_bytes()).await?;
                        s.shutdown().await
                    };
                    tokio::time::timeout(Duration::from_secs(5), send)
                        .await
                        .unwrap_or_else(|_| Err(std::io::Error::other("timed out")))
                }
                Reporter::LogFile(path) => {
                    let text = exporters::log_lines(&points);
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || {
                        use std::io::Write;
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir)?;
                        }
                        std::fs::OpenOptions::new().create(true).append(true).open(&path)?.write_all(text.as_bytes())
                    })
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                }
            };
            if let Err(e) = result {
                tracing::warn!(%reporter, error = %e, "Reporting metrics failed.");
            }
        });
    }
}
