//! # gearpump-connectors
//!
//! Sources and sinks that move data between applications and the outside world.
//!
//! - [`files`]: on every store `gearpump_storage::Files` serves (local disks, `hdfs://`,
//!   `webhdfs://`, S3), [`files::FileSource`] reads directories, globs or files of text lines,
//!   Hadoop SequenceFiles or Parquet, spread over its tasks and replayable from any time
//!   (positions stored with the checkpoints); [`files::FileSink`] writes rolling part files
//!   exactly once, committed when the checkpoint covering them completes. The simpler
//!   [`files::LineSource`] and [`files::LineSink`] read and append local line files
//!   (replayable, at-least-once).
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
mod positions;
