//! [`Watermarks`]: how far behind its newest record a source's watermark stays.

use std::time::Duration;

/// A source's watermark strategy ([`crate::Stream::watermarks`]).
///
/// The watermark is the application's clock: a window fires when every source's watermark (and
/// every value in flight) has passed its end. By default a source's watermark is the largest
/// timestamp it has read (timestamps in order). With out-of-order timestamps, a bound keeps the
/// watermark that far behind, so records up to that late are still on time. Records later than
/// the bound reach the windows late: they count if the window allows that lateness, and go to
/// its late records otherwise.
///
/// ```
/// use gearpump_dsl::Watermarks;
/// use std::time::Duration;
/// let w = Watermarks::bounded(Duration::from_secs(5)).idle_after(Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    pub(crate) out_of_orderness: i64,
    pub(crate) idle: Option<Duration>,
}

impl Watermarks {
    /// Timestamps in order: the watermark is the largest timestamp read.
    pub fn ascending() -> Self {
        Watermarks::default()
    }

    /// Timestamps at most `bound` out of order: the watermark is the largest timestamp read
    /// less `bound`.
    pub fn bounded(bound: Duration) -> Self {
        Watermarks { out_of_orderness: i64::try_from(bound.as_millis()).unwrap_or(i64::MAX), idle: None }
    }

    /// After `idle` without a record, the watermark follows the wall clock less `idle` (for
    /// sources whose timestamps are wall-clock times: an idle partition must not hold every
    /// window back). A record stamped earlier than that, arriving later, is late.
    #[must_use]
    pub fn idle_after(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }
}
