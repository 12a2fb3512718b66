//! Parquet files through the arrow-rs `parquet` crate: a record type states its schema and maps
//! itself to and from a row ([`ParquetRecord`]); [`ParquetFormat`] writes such records into
//! part files (Snappy-compressed row groups) and [`ParquetFiles`] reads them back.
//!
//! Columns are flat and `required`: booleans, 32- and 64-bit integers, floats, doubles and
//! byte arrays (strings with the `STRING`/`UTF8` annotation). Any other schema is an error that
//! names the column.

use super::seqfile::SeqPosition;
use super::sink::SinkFormat;
use super::source::{ByteReader, SourceFormat};
use gearpump_api::{TaskError, TaskResult};
use gearpump_core::{Message, Value};
use parquet::basic::{Compression, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::{SchemaDescriptor, Type};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Rows buffered per row group.
const ROW_GROUP_ROWS: usize = 65_536;

/// A record stored as a Parquet row.
///
/// ```
/// use gearpump_connectors::files::ParquetRecord;
/// use gearpump_connectors::files::parquet_types::{Field, Row, RowAccessor};
///
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct WordCount { word: String, count: i64 }
///
/// impl ParquetRecord for WordCount {
///     const SCHEMA: &'static str =
///         "message word_count { required binary word (STRING); required int64 count; }";
///     fn to_fields(&self) -> Vec<Field> {
///         vec![Field::Str(self.word.clone()), Field::Long(self.count)]
///     }
///     fn from_row(row: &Row) -> Result<Self, String> {
///         Ok(WordCount {
///             word: row.get_string(0).map_err(|e| e.to_string())?.clone(),
///             count: row.get_long(1).map_err(|e| e.to_string())?,
///         })
///     }
/// }
/// ```
pub trait ParquetRecord: Sized + Send + 'static {
    /// The schema, in Parquet's message-type syntax.
    const SCHEMA: &'static str;
    /// The record's fields, in schema order.
    fn to_fields(&self) -> Vec<Field>;
    /// The record of a row read (fields in schema order).
    fn from_row(row: &Row) -> Result<Self, String>;
}

/// The schema of `R`, checked: flat, required columns of the types served.
fn schema<R: ParquetRecord>() -> Result<Arc<Type>, String> {
    let t = parquet::schema::parser::parse_message_type(R::SCHEMA).map_err(|e| format!("the Parquet schema: {e}"))?;
    let t = Arc::new(t);
    let descr = SchemaDescriptor::new(t.clone());
    for c in descr.columns() {
        if c.max_def_level() > 0 || c.max_rep_level() > 0 {
            return Err(format!("column {}: only required, non-nested columns are supported", c.path()));
        }
        if !matches!(
            c.physical_type(),
            Physical::BOOLEAN
                | Physical::INT32
                | Physical::INT64
                | Physical::FLOAT
                | Physical::DOUBLE
                | Physical::BYTE_ARRAY
        ) {
            return Err(format!("column {}: type {} is not supported", c.path(), c.physical_type()));
        }
    }
    Ok(t)
}

/// A `Write` whose bytes the sink drains into its part file.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn drain_into(&self, out: &mut Vec<u8>) {
        out.append(&mut self.0.lock().expect("not poisoned"));
    }
}

/// Writes Parquet part files of records `encode` makes of the messages.
pub struct ParquetFormat<R> {
    encode: fn(&Message) -> Result<R, TaskError>,
}

impl<R> ParquetFormat<R> {
    /// The format writing `encode(message)` for each message.
    pub fn new(encode: fn(&Message) -> Result<R, TaskError>) -> Self {
        ParquetFormat { encode }
    }
}

/// A Parquet part file being written.
pub struct ParquetPart {
    writer: Option<SerializedFileWriter<Shared>>,
    bytes: Shared,
    rows: Vec<Vec<Field>>,
    schema: Arc<Type>,
}

fn column_error(column: usize, why: impl std::fmt::Display) -> TaskError {
    TaskError::msg(format!("writing Parquet column {column}: {why}"))
}

impl ParquetPart {
    /// Writes the buffered rows as one row group.
    fn row_group(&mut self) -> TaskResult {
        if self.rows.is_empty() {
            return Ok(());
        }
        let writer = self.writer.as_mut().expect("a part being written");
        let mut group = writer.next_row_group().map_err(|e| column_error(0, e))?;
        let mut c = 0;
        while let Some(mut column) = group.next_column().map_err(|e| column_error(c, e))? {
            let values = self.rows.iter().map(|r| r.get(c));
            let bad = |f: Option<&Field>| column_error(c, format!("a field of the wrong type for the schema: {f:?}"));
            let written = match column.untyped() {
                parquet::column::writer::ColumnWriter::BoolColumnWriter(_) => {
                    let v: Vec<bool> = values
                        .map(|f| match f {
                            Some(Field::Bool(b)) => Ok(*b),
                            f => Err(bad(f)),
                        })
                        .collect::<Result<_, _>>()?;
                    column.typed::<BoolType>().write_batch(&v, None, None)
                }
                parquet::column::writer::ColumnWriter::Int32ColumnWriter(_) => {
                    let v: Vec<i32> = values
                        .map(|f| match f {
                            Some(Field::Int(i) | Field::Date(i) | Field::TimeMillis(i)) => Ok(*i),
                            f => Err(bad(f)),
                        })
                        .collect::<Result<_, _>>()?;
                    column.typed::<Int32Type>().write_batch(&v, None, None)
                }
                parquet::column::writer::ColumnWriter::Int64ColumnWriter(_) => {
                    let v: Vec<i64> = values
                        .map(|f| match f {
                            Some(Field::Long(i) | Field::TimestampMillis(i) | Field::TimestampMicros(i)) => Ok(*i),
                            f => Err(bad(f)),
                        })
                        .collect::<Result<_, _>>()?;
                    column.typed::<Int64Type>().write_batch(&v, None, None)
                }
                parquet::column::writer::ColumnWriter::FloatColumnWriter(_) => {
                    let v: Vec<f32> = values
                        .map(|f| match f {
                            Some(Field::Float(x)) => Ok(*x),
                            f => Err(bad(f)),
                        })
                        .collect::<Result<_, _>>()?;
                    column.typed::<FloatType>().write_batch(&v, None, None)
                }
                parquet::column::writer::ColumnWriter::DoubleColumnWriter(_) => {
                    let v: Vec<f64> = values
                        .map(|f| match f {
                            Some(Field::Double(x)) => Ok(*x),
                            f => Err(bad(f)),
                        })
                        .collect::<Result<_, _>>()?;
                    column.typed::<DoubleType>().write_batch(&v, None, None)
                }
                parquet::column::writer::ColumnWriter::ByteArrayColumnWriter(_) => {
                    let v: Vec<ByteArray> = values
                        .map(|f| match f {
                            Some(Field::Str(s)) => Ok(ByteArray::from(s.as_bytes().to_vec())),
                            Some(Field::Bytes(b)) => Ok(b.clone()),
                            f => Err(bad(f)),
                        })
                        .collect::<Result<_, _>>()?;
                    column.typed::<ByteArrayType>().write_batch(&v, None, None)
                }
                _ => return Err(column_error(c, "an unsupported column type")),
            };
            written.map_err(|e| column_error(c, e))?;
            column.close().map_err(|e| column_error(c, e))?;
            c += 1;
        }
        group.close().map_err(|e| column_error(c, e))?;
        self.rows.clear();
        Ok(())
    }
}

impl<R: ParquetRecord> SinkFormat for ParquetFormat<R> {
    type Part = ParquetPart;

    fn extension(&self) -> &str {
        "parquet"
    }

    fn begin(&self, out: &mut Vec<u8>) -> Result<ParquetPart, TaskError> {
        let schema = schema::<R>().map_err(TaskError::msg)?;
        let bytes = Shared::default();
        let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
        let writer = SerializedFileWriter::new(bytes.clone(), schema.clone(), props)
            .map_err(|e| TaskError::msg(format!("starting a Parquet file: {e}")))?;
        bytes.drain_into(out);
        Ok(ParquetPart { writer: Some(writer), bytes, rows: Vec::new(), schema })
    }

    fn write(&self, part: &mut ParquetPart, msg: &Message, out: &mut Vec<u8>) -> TaskResult {
        let fields = (self.encode)(msg)?.to_fields();
        let columns = part.schema.get_fields().len();
        if fields.len() != columns {
            return Err(TaskError::msg(format!(
                "a record of {} fields for a schema of {columns} columns",
                fields.len()
            )));
        }
        part.rows.push(fields);
        if part.rows.len() >= ROW_GROUP_ROWS {
            part.row_group()?;
            part.bytes.drain_into(out);
        }
        Ok(())
    }

    fn finish(&self, part: &mut ParquetPart, out: &mut Vec<u8>) -> TaskResult {
        part.row_group()?;
        if let Some(writer) = part.writer.take() {
            writer.close().map_err(|e| TaskError::msg(format!("finishing a Parquet file: {e}")))?;
        }
        part.bytes.drain_into(out);
        Ok(())
    }
}

/// Reads Parquet files of `R` records (see [`ParquetRecord`]).
pub struct ParquetFiles<R>(std::marker::PhantomData<fn() -> R>);

impl<R> Default for ParquetFiles<R> {
    fn default() -> Self {
        ParquetFiles(std::marker::PhantomData)
    }
}

/// An open Parquet file.
pub struct ParquetReader {
    rows: RowIter<'static>,
    read: u64,
}

impl<R: ParquetRecord + Value> SourceFormat for ParquetFiles<R> {
    type Item = R;
    type Reader = ParquetReader;

    fn open(
        &self,
        _: ByteReader,
        header: &mut dyn FnMut() -> ByteReader,
        at: SeqPosition,
    ) -> Result<ParquetReader, String> {
        // A Parquet file is read from its footer: fetch it whole.
        let mut bytes = Vec::new();
        header().read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
            .map_err(|e| format!("not a Parquet file, or a damaged one: {e}"))?;
        let want = schema::<R>()?;
        let have = reader.metadata().file_metadata().schema_descr();
        let names = |d: &SchemaDescriptor| {
            d.columns().iter().map(|c| (c.path().string(), c.physical_type())).collect::<Vec<_>>()
        };
        let expected = names(&SchemaDescriptor::new(want));
        if names(have) != expected {
            return Err(format!("a Parquet file of columns {:?}, read as {expected:?}", names(have)));
        }
        let mut rows = RowIter::from_file_into(Box::new(reader) as Box<dyn FileReader>);
        for _ in 0..at.skip {
            if rows.next().is_none() {
                break;
            }
        }
        Ok(ParquetReader { rows, read: at.skip })
    }

    fn first(&self, _: &mut dyn FnMut() -> ByteReader) -> Result<SeqPosition, String> {
        Ok(SeqPosition::default())
    }

    fn next(&self, r: &mut ParquetReader) -> Result<Option<R>, String> {
        match r.rows.next() {
            None => Ok(None),
            Some(row) => {
                let row = row.map_err(|e| format!("row {}: {e}", r.read))?;
                let record = R::from_row(&row).map_err(|e| format!("row {}: {e}", r.read))?;
                r.read += 1;
                Ok(Some(record))
            }
        }
    }

    fn position(&self, r: &ParquetReader) -> SeqPosition {
        SeqPosition { offset: 0, skip: r.read }
    }
}
