//! # gearpump-connectors
//!
//! Sources and sinks that move data between applications and the outside world.
//!
//! - [`files`]: [`files::LineSource`] reads a text file line by line and replays from any
//!   time, seeking through an offset↔timestamp store; [`files::LineSink`] appends one line per
//!   message to a file per task, durable before the application's clock passes it
//!   (at-least-once across failures).
//!
//! - [`kafka`]: [`kafka::KafkaSource`] reads topics, spread over its tasks, and replays from
//!   any time (offsets stored with the checkpoints, or the broker's offsets-for-times);
//!   [`kafka::KafkaSink`] writes at least once, [`kafka::ExactlyOnceKafkaSink`] exactly once
//!   (transactions committed on completed checkpoints).
//!
//! A sink is a [`gearpump_api::DataSink`], run by `Processor::sink`; a source a
//! [`gearpump_api::DataSource`], run by `Processor::source`.

pub mod files;
pub mod kafka;
