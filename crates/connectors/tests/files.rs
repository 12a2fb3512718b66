//! The file source and the exactly-once file sink, driven directly through a recorder
//! `TaskIo` (an in-memory state store), on real local files: replays resume at stored
//! positions, a sink that crashes (dropped without closing) between checkpoints leaves no
//! visible partial or duplicate data after its recovery, and files Hadoop wrote (every
//! compression it offers with the codecs we read) read back whole.

#[path = "../../../tools/hadoop/hdfs.rs"]
mod hdfs;

use gearpump_api::{DataSink, DataSource, StateStore, TaskContext, TaskError, TaskInfo, TaskIo, TimerId, UserConfig};
use gearpump_connectors::files::seqfile::{Compression, Writable};
use gearpump_connectors::files::{FileSink, FileSource};
use gearpump_core::{AppId, Message, TaskId, Timestamp};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Checkpoints in memory, as the runtime keeps them in its store.
#[derive(Default)]
struct Memory(Mutex<BTreeMap<(TaskId, Timestamp), Vec<u8>>>);

impl StateStore for Memory {
    fn load(&self, task: TaskId, time: Timestamp) -> Result<Option<Vec<u8>>, TaskError> {
        Ok(self.0.lock().get(&(task, time)).cloned())
    }
    fn save(&self, task: TaskId, time: Timestamp, state: &[u8]) -> Result<(), TaskError> {
        self.0.lock().insert((task, time), state.to_vec());
        Ok(())
    }
}

struct Io {
    store: Arc<Memory>,
    upstream: Timestamp,
}

impl TaskIo for Io {
    fn output(&mut self, _: Message) {}
    fn send_self(&mut self, _: Message) {}
    fn schedule(&mut self, _: Duration, _: Option<Duration>) -> TimerId {
        TimerId(0)
    }
    fn cancel(&mut self, _: TimerId) {}
    fn upstream_min_clock(&self) -> Timestamp {
        self.upstream
    }
    fn is_backpressured(&self) -> bool {
        false
    }
    fn state_store(&self) -> Option<&dyn StateStore> {
        Some(&*self.store)
    }
}

fn info(processor: u32, index: u32, parallelism: u32, interval: i64) -> TaskInfo {
    TaskInfo {
        task_id: TaskId::new(processor, index),
        parallelism,
        app_id: AppId(1),
        app_name: "files".into(),
        description: String::new(),
        config: Arc::new(UserConfig::empty().with(gearpump_api::state::CHECKPOINT_INTERVAL_KEY, interval)),
        predecessor: None,
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gearpump-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn drain<S: DataSource>(s: &mut S, max: usize) -> Vec<Message> {
    let mut out = Vec::new();
    while out.len() < max {
        match s.read().unwrap() {
            Some(m) => out.push(m),
            None => break,
        }
    }
    out
}

#[test]
fn a_replay_resumes_at_the_position_stored_with_the_checkpoint() {
    let dir = tmp("replay");
    for (name, from, to) in [("a.txt", 0, 3000), ("b.txt", 3000, 5000)] {
        let text: String = (from..to).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::write(dir.join(".hidden.txt"), "never read\n").unwrap();
    let store = Arc::new(Memory::default());
    let info = info(0, 0, 1, 1000);
    let mut io = Io { store: store.clone(), upstream: Timestamp::MIN };
    let mut source = FileSource::text(dir.to_str().unwrap());
    source.open(&mut TaskContext::new(&info, &mut io), Timestamp(0)).unwrap();
    let first = drain(&mut source, 3500);
    assert_eq!(first.len(), 3500);
    // The checkpoint at 3000 completes: the position of the record stamped 3000 is stored.
    source.on_checkpoint_complete(&mut TaskContext::new(&info, &mut io), Timestamp(3000)).unwrap();
    let rest = drain(&mut source, usize::MAX);
    assert_eq!(rest.len(), 1500);
    assert_eq!(source.watermark(), Some(Timestamp::MAX));
    assert!(store.load(info.task_id, Timestamp(3000)).unwrap().is_some());
    // A new incarnation from 3000 reads exactly the records stamped 3000 on.
    let mut again = FileSource::text(dir.to_str().unwrap());
    again.open(&mut TaskContext::new(&info, &mut io), Timestamp(3000)).unwrap();
    let replayed = drain(&mut again, usize::MAX);
    assert_eq!(replayed.len(), 2001);
    assert_eq!(replayed[0].timestamp(), Timestamp(3000));
    assert_eq!(replayed[0].get::<String>().unwrap(), "line 2999");
    assert_eq!(replayed.last().unwrap().get::<String>().unwrap(), "line 4999");
    // Two tasks share the files; a glob picks some.
    let mut got = Vec::new();
    for i in 0..2 {
        let info = self::info(0, i, 2, 1000);
        let mut s = FileSource::text(format!("{}/b*", dir.display()));
        s.open(&mut TaskContext::new(&info, &mut io), Timestamp(0)).unwrap();
        got.push(drain(&mut s, usize::MAX).len());
    }
    assert_eq!(got, [2000, 0]);
    let mut missing = FileSource::text(format!("{}/nothing-here", dir.display()));
    let err = missing.open(&mut TaskContext::new(&info, &mut io), Timestamp(0)).unwrap_err().to_string();
    assert!(err.contains("nothing-here"), "{err}");
}

fn record(m: &Message) -> Result<(i64, String), TaskError> {
    Ok((m.timestamp().0, m.get::<String>().cloned().unwrap_or_default()))
}

/// Every record of the visible part files under `dir`, read back with our reader.
fn committed(dir: &std::path::Path) -> Vec<i64> {
    let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp::MIN };
    let mut s = FileSource::sequence_file::<i64, String>(dir.to_str().unwrap());
    s.open(&mut TaskContext::new(&info(9, 0, 1, 1000), &mut io), Timestamp::MIN).unwrap();
    let mut keys: Vec<i64> = drain(&mut s, usize::MAX).iter().map(|m| m.get::<(i64, String)>().unwrap().0).collect();
    keys.sort_unstable();
    keys
}

fn write(sink: &mut impl DataSink, from: i64, to: i64) {
    for t in from..to {
        sink.write(Message::new(format!("record {t}"), Timestamp(t))).unwrap();
    }
}

#[test]
fn a_sink_that_crashes_between_checkpoints_commits_each_record_once() {
    let dir = tmp("sink");
    let url = dir.to_str().unwrap().to_string();
    let store = Arc::new(Memory::default());
    let info = info(1, 0, 1, 1000);
    let mut io = Io { store: store.clone(), upstream: Timestamp(0) };
    let make = || FileSink::sequence_file(url.clone(), record).roll_size(20_000).compressed(Compression::Record);
    let mut sink = make();
    sink.open(&mut TaskContext::new(&info, &mut io)).unwrap();
    write(&mut sink, 0, 2500);
    sink.flush().unwrap();
    // Nothing is visible before a checkpoint completes.
    assert!(committed(&dir).is_empty());
    sink.on_checkpoint_complete(&mut TaskContext::new(&info, &mut io), Timestamp(2000)).unwrap();
    assert_eq!(committed(&dir), (0..2000).collect::<Vec<_>>());
    assert!(store.load(info.task_id, Timestamp(2000)).unwrap().is_some(), "the sink reports its checkpoint");
    // More records, then a crash: the sink is dropped without closing.
    write(&mut sink, 2500, 2900);
    sink.flush().unwrap();
    drop(sink);
    let hidden = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert!(hidden > 0, "in-progress files stay hidden");
    // A recovery from 2000 writes 2000.. again; what was committed is not repeated.
    io.upstream = Timestamp(2000);
    let mut sink = make();
    sink.open(&mut TaskContext::new(&info, &mut io)).unwrap();
    write(&mut sink, 2000, 4000);
    sink.on_checkpoint_complete(&mut TaskContext::new(&info, &mut io), Timestamp(4000)).unwrap();
    sink.on_watermark_progress(&mut TaskContext::new(&info, &mut io), Timestamp::MAX).unwrap();
    sink.close();
    assert_eq!(committed(&dir), (0..4000).collect::<Vec<_>>());
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "no in-progress file is left: {names:?}");
    assert!(
        names.iter().filter(|n| n.starts_with("part-1-0-0000000001000-")).count() >= 2,
        "rolled by size: {names:?}"
    );
    // A re-run (not a recovery) replaces the output.
    let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp(0) };
    let mut sink = make();
    sink.open(&mut TaskContext::new(&info, &mut io)).unwrap();
    write(&mut sink, 0, 10);
    sink.on_watermark_progress(&mut TaskContext::new(&info, &mut io), Timestamp::MAX).unwrap();
    sink.close();
    assert_eq!(committed(&dir), (0..10).collect::<Vec<_>>());
}

#[test]
fn files_hadoop_wrote_read_whole_and_other_codecs_are_named() {
    let dir = tmp("hadoop");
    for (name, compression) in [
        ("none.seq", "NONE"),
        ("record.seq", "RECORD"),
        ("block.seq", "BLOCK"),
        ("gzip.seq", "RECORD:org.apache.hadoop.io.compress.GzipCodec"),
    ] {
        hdfs::hadoop_write(&format!("file://{}/{name}", dir.display()), 30_000, compression);
        let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp::MIN };
        let mut s = FileSource::sequence_file::<i64, String>(format!("{}/{name}", dir.display()));
        s.open(&mut TaskContext::new(&info(0, 0, 1, 1000), &mut io), Timestamp::MIN).unwrap();
        let got = drain(&mut s, usize::MAX);
        assert_eq!(got.len(), 30_000, "{compression}");
        assert_eq!(got[12_345].get::<(i64, String)>().unwrap(), &(12_345, "record 12345".to_string()), "{compression}");
        // Read as the wrong types: the error names the file and both classes.
        let mut wrong = FileSource::sequence_file::<String, String>(format!("{}/{name}", dir.display()));
        wrong.open(&mut TaskContext::new(&info(0, 0, 1, 1000), &mut io), Timestamp::MIN).unwrap();
        let err = wrong.read().unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("LongWritable") && err.contains("Text"), "{err}");
    }
    hdfs::hadoop_write(
        &format!("file://{}/bzip2.seq", dir.display()),
        10,
        "RECORD:org.apache.hadoop.io.compress.BZip2Codec",
    );
    let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp::MIN };
    let mut s = FileSource::sequence_file::<i64, String>(format!("{}/bzip2.seq", dir.display()));
    s.open(&mut TaskContext::new(&info(0, 0, 1, 1000), &mut io), Timestamp::MIN).unwrap();
    let err = s.read().unwrap_err().to_string();
    assert!(err.contains("BZip2Codec") && err.contains("bzip2.seq"), "{err}");
    // A file that is not a SequenceFile: named, with the offset.
    std::fs::write(dir.join("text.seq"), "just text\n").unwrap();
    let mut s = FileSource::sequence_file::<i64, String>(format!("{}/text.seq", dir.display()));
    s.open(&mut TaskContext::new(&info(0, 0, 1, 1000), &mut io), Timestamp::MIN).unwrap();
    let err = s.read().unwrap_err().to_string();
    assert!(err.contains("text.seq") && err.contains("not a SequenceFile") && err.contains("byte 0"), "{err}");
    // What we write, Hadoop reads.
    let mut sink =
        FileSink::sequence_file(dir.join("ours").to_str().unwrap().to_string(), record).compressed(Compression::Block);
    let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp(0) };
    sink.open(&mut TaskContext::new(&info(1, 0, 1, 1000), &mut io)).unwrap();
    write(&mut sink, 0, 5000);
    sink.on_watermark_progress(&mut TaskContext::new(&info(1, 0, 1, 1000), &mut io), Timestamp::MAX).unwrap();
    sink.close();
    let text = hdfs::hadoop_text(&format!("file://{}/ours", dir.display()));
    assert_eq!(text.lines().count(), 5000);
    assert!(text.contains("4321\trecord 4321\n"), "{}", &text[..200.min(text.len())]);
    let _ = <i64 as Writable>::CLASS;
}

/// A record with its Parquet schema.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    id: i64,
    sensor: String,
    value: f64,
}

impl gearpump_connectors::files::ParquetRecord for Reading {
    const SCHEMA: &'static str =
        "message reading { required int64 id; required binary sensor (STRING); required double value; }";
    fn to_fields(&self) -> Vec<Field> {
        vec![Field::Long(self.id), Field::Str(self.sensor.clone()), Field::Double(self.value)]
    }
    fn from_row(row: &Row) -> Result<Self, String> {
        Ok(Reading {
            id: row.get_long(0).map_err(|e| e.to_string())?,
            sensor: row.get_string(1).map_err(|e| e.to_string())?.clone(),
            value: row.get_double(2).map_err(|e| e.to_string())?,
        })
    }
}

/// The same columns under other names.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Other(i64);

impl gearpump_connectors::files::ParquetRecord for Other {
    const SCHEMA: &'static str = "message other { required int64 other; }";
    fn to_fields(&self) -> Vec<Field> {
        vec![Field::Long(self.0)]
    }
    fn from_row(row: &Row) -> Result<Self, String> {
        row.get_long(0).map(Other).map_err(|e| e.to_string())
    }
}

use gearpump_connectors::files::parquet_types::{Field, Row, RowAccessor};

#[test]
fn parquet_records_round_trip_through_the_exactly_once_sink_and_the_source() {
    let dir = tmp("parquet");
    let url = dir.to_str().unwrap().to_string();
    let info = info(1, 0, 1, 1000);
    let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp(0) };
    let mut sink = FileSink::parquet(url.clone(), |m: &Message| {
        let id = m.timestamp().0;
        Ok(Reading { id, sensor: format!("s{}", id % 7), value: id as f64 / 2.0 })
    });
    sink.open(&mut TaskContext::new(&info, &mut io)).unwrap();
    for t in 0..150_000 {
        sink.write(Message::new((), Timestamp(t))).unwrap();
    }
    sink.on_checkpoint_complete(&mut TaskContext::new(&info, &mut io), Timestamp(100_000)).unwrap();
    sink.on_watermark_progress(&mut TaskContext::new(&info, &mut io), Timestamp::MAX).unwrap();
    sink.close();
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.ends_with(".parquet")), "{names:?}");
    let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp::MIN };
    let mut source = FileSource::parquet::<Reading>(url.clone());
    source.open(&mut TaskContext::new(&self::info(0, 0, 1, 1000), &mut io), Timestamp::MIN).unwrap();
    let mut got: Vec<Reading> =
        drain(&mut source, usize::MAX).iter().map(|m| m.get::<Reading>().unwrap().clone()).collect();
    got.sort_by_key(|r| r.id);
    assert_eq!(got.len(), 150_000);
    assert_eq!(got[1234], Reading { id: 1234, sensor: "s2".into(), value: 617.0 });
    // Another schema: the error names the file's columns and the record's.
    let mut wrong = FileSource::parquet::<Other>(url);
    wrong.open(&mut TaskContext::new(&self::info(0, 0, 1, 1000), &mut io), Timestamp::MIN).unwrap();
    let err = wrong.read().unwrap_err().to_string();
    assert!(err.contains("sensor") && err.contains("other") && err.contains(".parquet"), "{err}");
}

#[test]
fn a_monitored_directory_yields_files_that_appear_later_and_never_ends() {
    let dir = tmp("monitor");
    std::fs::write(dir.join("1.txt"), "a\nb\n").unwrap();
    let info = info(0, 0, 1, 1000);
    let mut io = Io { store: Arc::new(Memory::default()), upstream: Timestamp::MIN };
    let mut source = FileSource::text(dir.to_str().unwrap()).monitor(Duration::from_millis(10));
    source.open(&mut TaskContext::new(&info, &mut io), Timestamp::MIN).unwrap();
    assert_eq!(drain(&mut source, 100).len(), 2);
    assert_eq!(source.watermark(), None, "a monitored source does not end");
    // A file written under a hidden name and renamed into place, as the file sink does.
    std::fs::write(dir.join(".2.txt.inprogress"), "c\nd\ne\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(drain(&mut source, 100).is_empty(), "hidden files are not read");
    std::fs::rename(dir.join(".2.txt.inprogress"), dir.join("2.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let later: Vec<String> = drain(&mut source, 100).iter().map(|m| m.get::<String>().unwrap().clone()).collect();
    assert_eq!(later, ["c", "d", "e"]);
    assert_eq!(drain(&mut source, 100).len(), 0);
}
