//! Files: sources and sinks over any store [`gearpump_storage::Files`] serves (local disks,
//! HDFS, WebHDFS, S3), in text lines, Hadoop SequenceFiles and Parquet.
//!
//! - [`FileSource`] reads a directory, a glob or a file, spread over its tasks, replayable
//!   from any time, and picks up new files while it runs if asked to;
//! - [`FileSink`] writes rolling part files exactly once: in progress until the checkpoint
//!   covering them completes, then committed (renamed into place, or, on an object store,
//!   completed).
//! - [`LineSource`] and [`LineSink`] are the simple local-file line source and at-least-once
//!   line sink.
//!
//! [`seqfile`] is the SequenceFile format itself; Parquet goes through [`ParquetRecord`].

/// The `parquet` crate's row types, for [`ParquetRecord`] implementations.
pub mod parquet_types {
    pub use ::parquet::errors::ParquetError;
    pub use ::parquet::record::{Field, Row, RowAccessor};
}

mod lines;
mod parquet;
pub use gearpump_formats::seqfile;
mod sink;
mod source;

pub use lines::{LineFormat, LineSink, LineSource, LineTime};
pub use parquet::{ParquetFiles, ParquetFormat, ParquetPart, ParquetReader, ParquetRecord};
pub use sink::{FileSink, SequenceFileFormat, SinkFormat, TextFormat};
pub use source::{ByteReader, FileSource, RecordTime, SequenceFiles, SourceFormat, TextLines, TextReader};
