//! Numbers into Parquet, exactly once, on any store (a local directory, HDFS, S3): a replayable
//! source of numbered messages → hash → exactly-once Parquet part files of
//! `(n, square, parity)` rows, committed on completed checkpoints.

use gearpump::prelude::*;
use gearpump::{NumberSource, api::TaskError};
use gearpump_connectors::files::parquet_types::{Field, ParquetError, Row, RowAccessor};
use gearpump_connectors::files::{FileSink, ParquetRecord};

/// One row of the output.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Number {
    /// The number.
    pub n: i64,
    /// Its square.
    pub square: i64,
    /// `"even"` or `"odd"`.
    pub parity: String,
}

impl Number {
    /// The row of number `n`.
    pub fn of(n: i64) -> Self {
        Number { n, square: n.wrapping_mul(n), parity: if n % 2 == 0 { "even" } else { "odd" }.into() }
    }
}

impl ParquetRecord for Number {
    const SCHEMA: &'static str =
        "message number { required int64 n; required int64 square; required binary parity (STRING); }";

    fn to_fields(&self) -> Vec<Field> {
        vec![Field::Long(self.n), Field::Long(self.square), Field::Str(self.parity.clone())]
    }

    fn from_row(row: &Row) -> Result<Self, String> {
        let e = |e: ParquetError| e.to_string();
        Ok(Number {
            n: row.get_long(0).map_err(e)?,
            square: row.get_long(1).map_err(e)?,
            parity: row.get_string(2).map_err(e)?.clone(),
        })
    }
}

/// The row a message carrying number `n` becomes.
pub fn row(msg: &Message) -> Result<Number, TaskError> {
    let n = *msg.get::<u64>().ok_or_else(|| TaskError::msg(format!("expected a number, got {:?}", msg.value())))?;
    Ok(Number::of(n as i64))
}

/// The application: numbers `1..=messages`, `per_ms` per millisecond of application time, at
/// most `pace` a second (0: unpaced), into Parquet files of `sink_tasks` tasks under `output`.
pub fn application(
    messages: u64,
    per_ms: u64,
    pace: u64,
    sink_tasks: u32,
    output: &str,
) -> Result<StreamApplication, gearpump::AppError> {
    let source = Processor::source("gearpump_examples::numbers_to_parquet::Numbers", 1, move |_| {
        let numbers = NumberSource::new(messages, per_ms);
        Ok::<_, TaskError>(if pace > 0 { numbers.paced(pace) } else { numbers })
    });
    let output = output.to_string();
    let sink = Processor::sink("gearpump_examples::numbers_to_parquet::Parquet", sink_tasks, move |_| {
        Ok(FileSink::parquet(output.clone(), row))
    });
    StreamApplication::builder("numbersToParquet").edge(&source, PartitionerSpec::hash(), &sink).build()
}
