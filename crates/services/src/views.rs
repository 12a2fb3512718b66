//! The JSON shapes of the REST API, built from a [`ClusterSnapshot`]. Field names and value
//! shapes follow the guide's sample responses (times and durations as strings of
//! milliseconds, as the samples show them).

use gearpump_core::TaskId;
use gearpump_metrics::{MetricPoint, MetricValue};
use gearpump_protocol::{AppDetail, ClusterSnapshot, ExecutorInfo, WorkerDetail};
use serde_json::{Map, Value, json};

fn now() -> i64 {
    gearpump_core::Timestamp::now().0
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// `GET master`.
pub fn master(s: &ClusterSnapshot) -> Value {
    let m = &s.master;
    let split = |a: &str| match a.rsplit_once(':') {
        Some((h, p)) => json!([h, p.parse::<u16>().unwrap_or(0)]),
        None => json!([a, 0]),
    };
    // The guide's shape: `["master@<host>", port]`; null while no master leads.
    let leader = match m.leader.as_deref().map(|l| l.rsplit_once(':').unwrap_or((l, "0"))) {
        Some((h, p)) => json!([format!("master@{h}"), p.parse::<u16>().unwrap_or(0)]),
        None => Value::Null,
    };
    json!({
        "masterDescription": {
            "leader": leader,
            "cluster": m.members.iter().map(|a| split(a)).collect::<Vec<_>>(),
            "aliveFor": (now() - m.started).max(0).to_string(),
            "logFile": m.log_dir,
            "jarStore": m.jar_store,
            "masterStatus": if m.synced { "synced" } else { "unsynced" },
            "address": m.address,
            "homeDirectory": m.home,
        }
    })
}

/// One worker (`GET workers/<id>`).
pub fn worker(s: &ClusterSnapshot, w: &WorkerDetail) -> Value {
    let id = w.info.id;
    let mut executors = Vec::new();
    for app in &s.apps {
        if app.info.status.is_terminal() {
            continue;
        }
        if app.info.worker == Some(id) {
            executors.push(json!({"appId": app.info.id.0, "executorId": -1, "slots": 1}));
        }
        for e in app.runtime.iter().flat_map(|r| &r.executors).filter(|e| e.worker == id) {
            executors.push(json!({"appId": app.info.id.0, "executorId": e.id, "slots": e.tasks.len()}));
        }
    }
    json!({
        "workerId": id.0,
        "state": if w.info.alive { "active" } else { "dead" },
        "actorPath": format!("worker{}@{}", id, w.info.host),
        "aliveFor": (now() - w.registered).max(0).to_string(),
        "logFile": w.log_dir,
        "executors": executors,
        "totalSlots": w.info.slots,
        "availableSlots": w.info.slots.saturating_sub(w.info.used),
        "homeDirectory": s.master.home,
        "pid": w.pid,
    })
}

/// `GET workers`.
pub fn workers(s: &ClusterSnapshot) -> Value {
    Value::Array(s.workers.iter().map(|w| worker(s, w)).collect())
}

/// One application's summary (`GET appmaster/<id>`, an entry of `GET appmasters`).
pub fn app_summary(s: &ClusterSnapshot, a: &AppDetail) -> Value {
    let i = &a.info;
    let host = s
        .workers
        .iter()
        .find(|w| Some(w.info.id) == i.worker)
        .map(|w| w.info.host.clone())
        .unwrap_or_else(|| host_of(&s.master.address).to_string());
    let worker = i.worker.map(|w| format!("worker{w}@{host}")).unwrap_or_default();
    let pid = a.runtime.as_ref().map(|r| r.appmaster_pid).unwrap_or(0);
    json!({
        "status": i.status,
        "appId": i.id.0,
        "appName": i.name,
        "appMasterPath": format!("app{}-appmaster@{host}:{pid}", i.id),
        "workerPath": worker,
        "submissionTime": i.submission_time.to_string(),
        "startTime": i.start_time.map(|t| t.to_string()).unwrap_or_default(),
        "finishTime": i.finish_time.map(|t| t.to_string()).unwrap_or_default(),
        "user": i.user,
    })
}

/// `GET appmasters` (and `master/applist`).
pub fn apps(s: &ClusterSnapshot) -> Value {
    json!({ "appMasters": s.apps.iter().map(|a| app_summary(s, a)).collect::<Vec<_>>() })
}

fn executor_json(app: &AppDetail, e: &ExecutorInfo) -> Value {
    json!({
        "executorId": e.id,
        "appId": app.info.id.0,
        "workerId": e.worker.0,
        "status": e.status,
        "executor": format!("app{}-executor{}@{}:{}", app.info.id, e.id, e.host, e.pid),
        "pid": e.pid,
        "host": e.host,
        "taskCount": e.tasks.len(),
        "tasks": e.tasks.iter().map(|t| task_json(*t)).collect::<Vec<_>>(),
    })
}

fn task_json(t: TaskId) -> Value {
    json!({"processorId": t.processor.0, "index": t.index})
}

/// Processor levels: a source is level 0, others one more than their deepest upstream.
fn levels(a: &AppDetail) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(r) = &a.runtime else { return out };
    let mut level = vec![0u32; r.processors.len()];
    // Processor ids are a topological order.
    for p in &r.processors {
        let l = r.edges.iter().filter(|e| e.to == p.id).map(|e| level[e.from as usize] + 1).max().unwrap_or(0);
        level[p.id as usize] = l;
        out.insert(p.id.to_string(), json!(l));
    }
    out
}

/// `GET appmaster/<id>?detail=true`: the summary plus clock, DAG, processors, executors,
/// processor levels and stalling tasks.
pub fn app_detail(s: &ClusterSnapshot, a: &AppDetail) -> Value {
    let mut v = app_summary(s, a);
    let obj = v.as_object_mut().expect("an object");
    let uptime = a.info.start_time.map(|t| a.info.finish_time.map_or_else(now, |f| f.0) - t.0).unwrap_or(0);
    obj.insert("uptime".into(), json!(uptime.to_string()));
    let Some(r) = &a.runtime else {
        obj.insert("clock".into(), json!("0"));
        obj.insert("dag".into(), json!({"vertexList": [], "edgeList": []}));
        obj.insert("processors".into(), json!({}));
        obj.insert("executors".into(), json!([]));
        obj.insert("processorLevels".into(), json!({}));
        obj.insert("stallingTasks".into(), json!([]));
        return v;
    };
    obj.insert("clock".into(), json!(r.clock.0.to_string()));
    obj.insert("startClock".into(), json!(r.start_clock.0.to_string()));
    obj.insert("restarts".into(), json!(r.restarts));
    obj.insert("dagVersion".into(), json!(r.version));
    obj.insert("taskTypes".into(), json!(r.task_types));
    obj.insert(
        "dag".into(),
        json!({
            "vertexList": r.processors.iter().filter(|p| !p.retired).map(|p| p.id).collect::<Vec<_>>(),
            "edgeList": r.edges.iter().map(|e| json!([e.from, e.partitioner, e.to])).collect::<Vec<_>>(),
            "edges": (r.edges.iter())
                .map(|e| json!({"from": e.from, "to": e.to, "partitioner": e.partitioner,
                    "backPressure": f64::from(e.back_pressure_permille) / 1000.0}))
                .collect::<Vec<_>>(),
        }),
    );
    let mut processors = Map::new();
    for p in &r.processors {
        let per_executor: Vec<Value> = r
            .executors
            .iter()
            .filter_map(|e| {
                let n = e.tasks.iter().filter(|t| t.processor.0 == p.id).count();
                (n > 0).then(|| json!({"executorId": e.id, "taskCount": n}))
            })
            .collect();
        let kind = match (r.edges.iter().any(|e| e.to == p.id), r.edges.iter().any(|e| e.from == p.id)) {
            (false, _) => "source",
            (true, true) => "inner",
            (true, false) => "sink",
        };
        processors.insert(
            p.id.to_string(),
            json!({
                "id": p.id,
                "taskClass": p.task_type,
                "parallelism": p.parallelism,
                "description": p.description,
                "life": {"birth": p.birth.to_string(), "death": p.death.to_string()},
                "executors": per_executor,
                "taskCount": if p.retired { 0 } else { p.parallelism },
                "clock": r.processor_clocks.iter().find(|(id, _)| *id == p.id).map(|(_, c)| c.0.to_string()),
                "kind": kind,
                "retired": p.retired,
            }),
        );
    }
    obj.insert("processors".into(), Value::Object(processors));
    obj.insert("executors".into(), Value::Array(r.executors.iter().map(|e| executor_json(a, e)).collect()));
    obj.insert("processorLevels".into(), Value::Object(levels(a)));
    obj.insert("stallingTasks".into(), Value::Array(r.stalling.iter().map(|t| task_json(*t)).collect()));
    v
}

/// `GET appmaster/<id>/stallingtasks`.
pub fn stalling(a: &AppDetail) -> Value {
    let tasks = a.runtime.iter().flat_map(|r| &r.stalling).map(|t| task_json(*t)).collect::<Vec<_>>();
    json!({ "tasks": tasks })
}

/// `GET appmaster/<id>/errors`: the last failure, or an empty object.
pub fn errors(a: &AppDetail) -> Value {
    let recent: Vec<Value> = (a.runtime.iter().flat_map(|r| r.errors.iter()).rev())
        .map(|e| json!({"time": e.time.to_string(), "task": e.task.map(task_json), "error": e.error}))
        .collect();
    let mut v = match &a.info.error {
        Some(e) => json!({"time": a.info.finish_time.map_or(0, |t| t.0).to_string(), "error": e}),
        None => json!({}),
    };
    v.as_object_mut().expect("an object").insert("recent".into(), Value::Array(recent));
    v
}

/// `GET appmaster/<id>/checkpoints`: the latest complete checkpoints, newest first.
pub fn checkpoints(a: &AppDetail) -> Value {
    let list: Vec<Value> = (a.runtime.iter().flat_map(|r| r.checkpoints.iter()).rev())
        .map(|c| {
            let tasks: Vec<Value> = (c.tasks.iter())
                .map(|(t, bytes, took)| json!({"task": task_json(*t), "bytes": bytes, "tookUs": took}))
                .collect();
            json!({
                "time": c.time.0.to_string(),
                "started": c.started.to_string(),
                "completed": c.completed.to_string(),
                "durationMs": c.completed - c.started,
                "bytes": c.tasks.iter().map(|(_, b, _)| b).sum::<u64>(),
                "tasks": tasks,
            })
        })
        .collect();
    json!({"appId": a.info.id.0, "checkpoints": list})
}

/// `GET appmaster/<id>/executor/<eid>`, or `None` if it has no such executor.
pub fn executor(a: &AppDetail, id: i32) -> Option<Value> {
    let r = a.runtime.as_ref()?;
    r.executors.iter().find(|e| e.id == id).map(|e| executor_json(a, e))
}

/// A metric point as the REST API shows it: `{time, value: {$type, name, fields…}}`.
pub fn point(p: &MetricPoint) -> Value {
    let mut value = Map::new();
    value.insert("$type".into(), json!(p.metric.value.type_name()));
    value.insert("name".into(), json!(p.metric.name));
    match &p.metric.value {
        MetricValue::Meter { count, mean_rate, m1 } => {
            value.insert("count".into(), json!(count.to_string()));
            value.insert("meanRate".into(), json!(mean_rate));
            value.insert("m1".into(), json!(m1));
            value.insert("rateUnit".into(), json!("SECONDS"));
        }
        MetricValue::Histogram(h) => {
            for (k, v) in [
                ("mean", h.mean),
                ("stddev", h.stddev),
                ("median", h.median),
                ("p95", h.p95),
                ("p99", h.p99),
                ("p999", h.p999),
            ] {
                value.insert(k.into(), json!(v));
            }
            value.insert("count".into(), json!(h.count.to_string()));
        }
        MetricValue::Gauge(v) => {
            value.insert("value".into(), json!(v));
        }
        MetricValue::Counter(v) => {
            value.insert("value".into(), json!(v.to_string()));
        }
    }
    json!({"time": p.time.to_string(), "value": value})
}

/// A HOCON text as a JSON tree (the `config` routes); a text that does not parse is shown as
/// `{"error": …}`.
pub fn config_tree(entries: impl IntoIterator<Item = (String, String)>) -> Value {
    let mut root = Map::new();
    for (key, value) in entries {
        let mut node = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            let next = node.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            node = next.as_object_mut().expect("an object");
        }
        // By the whole key: a password hash under `ui-security.users` has a harmless last part.
        if gearpump_core::is_secret_key(&key) {
            node.insert(parts[parts.len() - 1].to_string(), Value::String(gearpump_core::redact::MASK.into()));
            continue;
        }
        let leaf = serde_json::from_str::<Value>(&value).unwrap_or(Value::String(value));
        node.insert(parts[parts.len() - 1].to_string(), leaf);
    }
    Value::Object(root)
}
