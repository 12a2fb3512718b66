//! # gearpump-connectors
//!
//! Sources and sinks that move data between applications and the outside world.
//!
//! - [`files`]: [`files::LineSink`] appends one line per message to a file per task, durable
//!   before the application's clock passes it (at-least-once across failures).
//!
//! A sink is a [`gearpump_api::DataSink`], run by `Processor::sink`; a source a
//! [`gearpump_api::DataSource`], run by `Processor::source`.

pub mod files;
