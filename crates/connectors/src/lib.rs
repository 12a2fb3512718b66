//! # gearpump-connectors
//!
//! Sources and sinks that move data between applications and the outside world.
//!
//! - [`files`]: [`files::LineSource`] reads a text file line by line and replays from any
//!   time, seeking through an offset↔timestamp store; [`files::LineSink`] appends one line per
//!   message to a file per task, durable before the application's clock passes it
//!   (at-least-once across failures).
//!
//! A sink is a [`gearpump_api::DataSink`], run by `Processor::sink`; a source a
//! [`gearpump_api::DataSource`], run by `Processor::source`.

pub mod files;
