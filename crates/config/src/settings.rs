//! The typed settings: built once from the layered configuration ([`GearConfig::settings`]),
//! every key read with its type, so that what runs reads fields rather than keys.

use crate::{ConfigError, GearConfig, HostPort};
use std::path::PathBuf;
use std::time::Duration;

/// What a master, a worker or a process of an application binary runs with, from `gear.conf`.
/// [`GearConfig::validate`] builds it, so a configuration that loads builds it too.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `gearpump.cluster.masters`.
    pub masters: Vec<HostPort>,
    /// `gearpump.hostname`: the address this node binds and is reached at.
    pub hostname: String,
    /// `gearpump.cluster.heartbeat-interval-ms`.
    pub heartbeat_interval: Duration,
    /// `gearpump.cluster.worker-timeout-ms`: a worker silent this long is dead.
    pub worker_timeout: Duration,
    /// `gearpump.cluster.master-timeout-ms`: how long a worker or AppMaster goes on without a
    /// master.
    pub master_timeout: Duration,
    /// `gearpump.worker.slots`.
    pub worker_slots: u32,
    /// `gearpump.application.total-retries`.
    pub total_retries: u32,
    /// `gearpump.application.stop-timeout-ms`.
    pub stop_timeout: Duration,
    /// `gearpump.scheduling.scheduler-class`.
    pub scheduler: String,
    /// `gearpump.streaming.ack-once-every-message-count`.
    pub ack_once_every: u32,
    /// `gearpump.streaming.max-pending-message-count-per-connection`.
    pub max_pending: u32,
    /// `gearpump.netty.max-retries`.
    pub max_retries: u32,
    /// `gearpump.netty.base-sleep-ms`.
    pub base_sleep: Duration,
    /// `gearpump.netty.max-sleep-ms`.
    pub max_sleep: Duration,
    /// `gearpump.network.max-connections` (at least 1).
    pub max_connections: u32,
    /// `gearpump.network.hello-timeout-ms` (at least 1 ms).
    pub hello_timeout: Duration,
    /// `gearpump.metrics.enabled`.
    pub metrics_enabled: bool,
    /// `gearpump.metrics.sample-rate`.
    pub metrics_sample_rate: u32,
    /// `gearpump.metrics.report-interval-ms`.
    pub metrics_report_interval_ms: u64,
    /// `gearpump.retainRecentData.intervalMs` and `.seconds` (as ms).
    pub recent: (i64, i64),
    /// `gearpump.retainHistoryData.intervalMs` and `.hours` (as ms).
    pub history: (i64, i64),
    /// `gearpump.log.daemon.dir`.
    pub daemon_log_dir: PathBuf,
    /// `gearpump.log.application.dir`.
    pub application_log_dir: PathBuf,
    /// `gearpump.jarstore.rootpath`.
    pub jarstore: String,
    /// `gearpump.app.name.prefix`.
    pub app_name_prefix: String,
}

impl GearConfig {
    /// The typed settings of this configuration; an ill-typed key is an error naming it.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let ms = |key: &str| self.get_num::<u64>(key).map(Duration::from_millis);
        let text = |key: &str, default: &str| self.get_str(key).unwrap_or(default).to_string();
        let (max_connections, hello_timeout) = self.port_limits()?;
        Ok(Settings {
            masters: self.masters()?,
            hostname: self.hostname().to_string(),
            heartbeat_interval: ms("gearpump.cluster.heartbeat-interval-ms")?,
            worker_timeout: ms("gearpump.cluster.worker-timeout-ms")?,
            master_timeout: ms("gearpump.cluster.master-timeout-ms")?,
            worker_slots: self.get_num("gearpump.worker.slots")?,
            total_retries: self.get_num("gearpump.application.total-retries")?,
            stop_timeout: ms("gearpump.application.stop-timeout-ms")?,
            scheduler: text("gearpump.scheduling.scheduler-class", "priority"),
            ack_once_every: self.get_num("gearpump.streaming.ack-once-every-message-count")?,
            max_pending: self.get_num("gearpump.streaming.max-pending-message-count-per-connection")?,
            max_retries: self.get_num("gearpump.netty.max-retries")?,
            base_sleep: ms("gearpump.netty.base-sleep-ms")?,
            max_sleep: ms("gearpump.netty.max-sleep-ms")?,
            max_connections,
            hello_timeout,
            metrics_enabled: self.get_bool("gearpump.metrics.enabled")?,
            metrics_sample_rate: self.get_num("gearpump.metrics.sample-rate")?,
            metrics_report_interval_ms: self.get_num("gearpump.metrics.report-interval-ms")?,
            recent: (
                self.get_num("gearpump.retainRecentData.intervalMs")?,
                self.get_num::<i64>("gearpump.retainRecentData.seconds")?.saturating_mul(1000),
            ),
            history: (
                self.get_num("gearpump.retainHistoryData.intervalMs")?,
                self.get_num::<i64>("gearpump.retainHistoryData.hours")?.saturating_mul(3_600_000),
            ),
            daemon_log_dir: PathBuf::from(text("gearpump.log.daemon.dir", "logs")),
            application_log_dir: PathBuf::from(text("gearpump.log.application.dir", "logs")),
            jarstore: text("gearpump.jarstore.rootpath", "jarstore/"),
            app_name_prefix: text("gearpump.app.name.prefix", ""),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_and_a_layer_give_typed_settings() {
        let s = GearConfig::defaults().settings().unwrap();
        assert_eq!(s.worker_slots, GearConfig::defaults().worker_slots());
        assert!(s.heartbeat_interval < s.worker_timeout);
        assert_eq!(s.scheduler, "priority");
        let conf = GearConfig::defaults()
            .with_str("t", "gearpump.worker.slots = 7\ngearpump.application.stop-timeout-ms = 1500")
            .unwrap();
        let s = conf.settings().unwrap();
        assert_eq!((s.worker_slots, s.stop_timeout), (7, Duration::from_millis(1500)));
        let bad = GearConfig::defaults().with_str("t", "gearpump.netty.max-retries = -1");
        let e = bad.and_then(|c| c.settings()).unwrap_err();
        assert!(e.to_string().contains("gearpump.netty.max-retries"), "{e}");
    }
}
