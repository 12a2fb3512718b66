//! # gearpump-formats
//!
//! The file formats of Gearpump's file connectors that are decoded here rather than by a crate
//! of their own: [`seqfile`], Hadoop's SequenceFile (version 6), read and written byte for byte
//! as Hadoop's `SequenceFile.Reader` and `Writer` do. Pure code over byte buffers and
//! `std::io::Read`, with no storage or runtime: `gearpump-connectors` puts it on files of any
//! store, and the fuzz targets feed it arbitrary bytes.

pub mod seqfile;
