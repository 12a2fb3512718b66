//! An application's status.

use std::fmt;

/// The status of an application: `pending` → `active` → one of
/// `succeeded`, `failed`, `terminated`. Terminal states never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Submitted; not yet running.
    Pending,
    /// Running.
    Active,
    /// Its min clock reached the end of time.
    Succeeded,
    /// A task failed (or it could not start).
    Failed,
    /// Killed.
    Terminated,
}

impl AppStatus {
    /// Whether the status is final.
    pub fn is_terminal(self) -> bool {
        matches!(self, AppStatus::Succeeded | AppStatus::Failed | AppStatus::Terminated)
    }

    /// The status of a lowercase name ([`AppStatus::as_str`]).
    pub fn from_name(name: &str) -> Option<AppStatus> {
        [AppStatus::Pending, AppStatus::Active, AppStatus::Succeeded, AppStatus::Failed, AppStatus::Terminated]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// The lowercase name used by the CLI and REST API.
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Pending => "pending",
            AppStatus::Active => "active",
            AppStatus::Succeeded => "succeeded",
            AppStatus::Failed => "failed",
            AppStatus::Terminated => "terminated",
        }
    }
}

impl fmt::Display for AppStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
