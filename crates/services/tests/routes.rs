//! Every route of the REST API against a real embedded cluster running a small pipeline, through
//! the router without a socket: answers, error cases, and the guide's sample field names.

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::{Request, StatusCode};
use gearpump_api::{Message, Processor, StartTime, StreamApplication, Task, TaskContext, TaskResult};
use gearpump_cluster::{ClusterConfig, EmbeddedCluster};
use gearpump_core::{AppId, Timestamp};
use gearpump_services::auth::{RestAuth, Role};
use gearpump_services::{EmbeddedBackend, RestLimits, router, router_secured};
use gearpump_streaming::MetricsConfig;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Emits increasing numbers, stamped with the wall clock, as fast as allowed.
struct Numbers(u64);
impl Task for Numbers {
    fn on_start(&mut self, ctx: &mut TaskContext<'_>, _: StartTime) -> TaskResult {
        ctx.send_self(Message::new(0u64, Timestamp::now()));
        Ok(())
    }
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, _: Message) -> TaskResult {
        for _ in 0..100 {
            self.0 += 1;
            ctx.output(Message::new(self.0, Timestamp::now()));
        }
        ctx.send_self(Message::new(0u64, Timestamp::now()));
        Ok(())
    }
}

struct Sink;
impl Task for Sink {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        Ok(())
    }
}

fn app(name: &str) -> StreamApplication {
    let source = Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0)));
    let sink = Processor::from_fn("Sink", 2, |_| Ok(Sink));
    StreamApplication::builder(name).path([&source, &sink]).build().unwrap()
}

struct Harness {
    cluster: Option<EmbeddedCluster>,
    router: axum::Router,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn start() -> Harness {
        Self::start_with(None)
    }

    /// With `auth`, if given (else authentication is off).
    fn start_with(auth: Option<RestAuth>) -> Harness {
        let metrics = MetricsConfig { enabled: true, ..MetricsConfig::default() };
        let cluster = EmbeddedCluster::start(ClusterConfig { metrics, ..ClusterConfig::default() });
        let backend = Arc::new(EmbeddedBackend::new(cluster.client(), Some(app("numbers"))));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let router = match auth {
            Some(auth) => router_secured(backend, RestLimits::default(), Arc::new(auth)),
            None => router(backend),
        };
        Harness { router, cluster: Some(cluster), rt }
    }

    /// The status, headers and JSON of a request.
    fn raw(&self, method: &str, uri: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        self.rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.unwrap();
            let (status, headers) = (resp.status(), resp.headers().clone());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }

    fn call(&self, method: &str, uri: &str, body: Body, content_type: Option<&str>) -> (StatusCode, Value) {
        let headers: &[(&str, &str)] = match content_type {
            Some(ct) => &[("content-type", ct)],
            None => &[],
        };
        self.call_with(method, uri, body, headers)
    }

    fn call_with(&self, method: &str, uri: &str, body: Body, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body).unwrap();
        self.rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (status, value)
        })
    }

    fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, Body::empty(), None)
    }

    fn ok(&self, uri: &str) -> Value {
        let (status, v) = self.get(uri);
        assert_eq!(status, StatusCode::OK, "GET {uri}: {v}");
        v
    }

    fn client(&self) -> gearpump_cluster::ClusterClient {
        self.cluster.as_ref().unwrap().client()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.take() {
            c.shutdown();
        }
    }
}

/// Every key of `sample`, recursively (into the first element of arrays), is a key of `ours`,
/// with a value of the same JSON type.
fn has_fields(sample: &Value, ours: &Value, at: &str) {
    match (sample, ours) {
        (Value::Object(s), Value::Object(o)) => {
            for (k, v) in s {
                let mine = o.get(k).unwrap_or_else(|| panic!("{at}.{k} is missing from {ours}"));
                has_fields(v, mine, &format!("{at}.{k}"));
            }
        }
        (Value::Array(s), Value::Array(o))
            if !s.is_empty() && !o.is_empty() && (s[0].is_object() || s[0].is_array()) =>
        {
            has_fields(&s[0], &o[0], &format!("{at}[0]"));
        }
        (Value::String(_), v) => assert!(v.is_string(), "{at} should be a string like the guide's, got {v}"),
        (Value::Number(_), v) => assert!(v.is_number(), "{at} should be a number like the guide's, got {v}"),
        _ => {}
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn meter_count(v: &Value, name: &str) -> u64 {
    v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["value"]["name"] == name)
        .and_then(|p| p["value"]["count"].as_str())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_route_answers_with_the_guides_shapes_and_names_bad_input() {
    let h = Harness::start();
    let id = h.client().submit(app("numbers")).unwrap();
    h.client().wait_active(id, Duration::from_secs(60)).unwrap();
    wait_until("the AppMaster reported its DAG", || {
        h.ok(&format!("/api/v1.0/appmaster/{id}?detail=true"))["dag"]["vertexList"]
            .as_array()
            .is_some_and(|v| v.len() == 2)
    });

    // The guide's sample responses: our answers have each of their fields, with the same shapes.
    let guide_app = json!({"status": "active", "appId": 2, "appName": "wordCount", "appMasterPath": "a",
        "workerPath": "w", "submissionTime": "1425925651057", "startTime": "1425925653433", "user": "foobar"});
    has_fields(&guide_app, &h.ok(&format!("/api/v1.0/appmaster/{id}")), "appmaster");
    has_fields(&json!({"appMasters": [guide_app]}), &h.ok("/api/v1.0/appmasters"), "appmasters");
    has_fields(&json!({"appMasters": [guide_app]}), &h.ok("/api/v1.0/master/applist"), "applist");
    has_fields(&json!({"tasks": []}), &h.ok(&format!("/api/v1.0/appmaster/{id}/stallingtasks")), "stallingtasks");
    let guide_master = json!({"masterDescription": {"leader": ["master@127.0.0.1", 3000],
        "cluster": [["127.0.0.1", 3000]], "aliveFor": "642941", "logFile": "/l", "jarStore": "jarstore/",
        "masterStatus": "synced", "homeDirectory": "/h"}});
    has_fields(&guide_master, &h.ok("/api/v1.0/master"), "master");
    let guide_worker = json!({"workerId": 1096497833, "state": "active", "actorPath": "p", "aliveFor": "77042",
        "logFile": "/l", "executors": [], "totalSlots": 100, "availableSlots": 100, "homeDirectory": "/h"});
    has_fields(&guide_worker, &h.ok("/api/v1.0/workers/1"), "workers/1");
    has_fields(&guide_worker, &h.ok("/api/v1.0/worker/1"), "worker/1");
    has_fields(&json!([guide_worker]), &h.ok("/api/v1.0/workers"), "workers");
    has_fields(&json!([guide_worker]), &h.ok("/api/v1.0/master/workerlist"), "workerlist");
    let guide_metrics = json!({"appId": 3, "path": "app3.processor2", "metrics": []});
    has_fields(&guide_metrics, &h.ok(&format!("/api/v1.0/metrics/app/{id}/app{id}.processor1")), "metrics");
    has_fields(&json!({"url": "ws://127.0.0.1:8091"}), &h.ok("/api/v1.0/websocket/url"), "websocket/url");
    assert_eq!(h.ok("/api/v1.0/version"), Value::String(env!("CARGO_PKG_VERSION").into()));
    assert!(h.ok("/api/v1.0/config/master").is_object());
    assert!(h.ok("/api/v1.0/config/worker/1").is_object());
    assert!(h.ok("/api/v1.0/worker/1/config").is_object());
    assert!(h.ok(&format!("/api/v1.0/config/app/{id}"))["application"].is_object());
    assert_eq!(h.ok("/api/v1.0/master/partitioners")["partitioners"][0], "hash");

    // The detail: DAG, processors, executors, levels.
    let d = h.ok(&format!("/api/v1.0/appmaster/{id}?detail=true"));
    assert_eq!(d["dag"]["edgeList"][0], json!([0, "hash", 1]));
    assert_eq!(d["processors"]["1"]["parallelism"], 2);
    assert_eq!(d["processors"]["0"]["kind"], "source");
    assert_eq!(d["processorLevels"]["1"], 1);
    let executors = d["executors"].as_array().unwrap();
    assert!(!executors.is_empty());
    let eid = executors[0]["executorId"].as_i64().unwrap();
    assert_eq!(h.ok(&format!("/api/v1.0/appmaster/{id}/executor/{eid}"))["executorId"], eid);
    assert!(h.ok(&format!("/api/v1.0/appmaster/{id}/executor/{eid}/config")).is_object());
    assert_eq!(
        h.ok(&format!("/api/v1.0/appmaster/{id}/errors")),
        json!({"recent": []}),
        "no failure yet: no last error, and none recent"
    );

    // Metrics: meters rise; latest, recent and history read; process gauges; Prometheus parses.
    let path = format!("/api/v1.0/master/metrics/app{id}.processor*");
    let name = format!("app{id}.processor1:receiveThroughput");
    wait_until("a receive count", || meter_count(&h.ok(&path), &name) > 0);
    let first = meter_count(&h.ok(&path), &name);
    wait_until("the receive count rises", || meter_count(&h.ok(&path), &name) > first);
    let latest = h.ok(&format!("{path}?readOption=readLatest"));
    let points = latest["metrics"].as_array().unwrap();
    for field in ["sendThroughput", "receiveThroughput", "processTime", "receiveLatency"] {
        let n = format!("app{id}.processor1.task0:{field}");
        assert!(points.iter().any(|p| p["value"]["name"] == n), "{n} in {latest}");
    }
    let hist = points.iter().find(|p| p["value"]["name"] == format!("app{id}.processor1:processTime")).unwrap();
    for k in ["mean", "stddev", "median", "p95", "p99", "p999"] {
        assert!(hist["value"][k].is_number(), "{k} in {hist}");
    }
    assert!(!h.ok(&format!("{path}?readOption=readRecent"))["metrics"].as_array().unwrap().is_empty());
    assert!(!h.ok(&format!("{path}?readOption=readHistory"))["metrics"].as_array().unwrap().is_empty());
    let executor_metrics = h.ok(&format!("/api/v1.0/metrics/app/{id}/app{id}.executor0"));
    assert!(!executor_metrics["metrics"].as_array().unwrap().is_empty());
    assert!(!h.ok("/api/v1.0/worker/1/metrics/worker1")["metrics"].as_array().unwrap().is_empty());
    let (status, text) = h.get("/metrics");
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text");
    assert!(scrape.samples.iter().any(|s| s.metric == "gearpump_receive_throughput_total"), "{text}");

    // The dashboard and its files.
    let (status, page) = h.get("/");
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("dashboard.js"));
    assert_eq!(h.get("/dashboard.js").0, StatusCode::OK);
    assert_eq!(h.get("/dashboard.css").0, StatusCode::OK);

    // Bad input: 400 or 404 with a JSON error naming what was wrong.
    for (method, uri, status, says) in [
        ("GET", "/api/v1.0/appmaster/99", StatusCode::NOT_FOUND, "application 99 does not exist"),
        ("GET", "/api/v1.0/appmaster/abc", StatusCode::BAD_REQUEST, "\"abc\""),
        ("GET", "/api/v1.0/appmaster/1?detail=maybe", StatusCode::BAD_REQUEST, "detail must be"),
        ("DELETE", "/api/v1.0/appmaster/99", StatusCode::NOT_FOUND, "99"),
        ("POST", "/api/v1.0/appmaster/99/restart", StatusCode::NOT_FOUND, "99"),
        ("POST", "/api/v1.0/appmaster/99/replay", StatusCode::NOT_FOUND, "99"),
        ("POST", "/api/v1.0/appmaster/x/replay", StatusCode::BAD_REQUEST, "application id"),
        ("GET", "/api/v1.0/appmaster/99/stallingtasks", StatusCode::NOT_FOUND, "99"),
        ("GET", "/api/v1.0/appmaster/99/errors", StatusCode::NOT_FOUND, "99"),
        ("GET", "/api/v1.0/appmaster/1/executor/77", StatusCode::NOT_FOUND, "no executor 77"),
        ("GET", "/api/v1.0/appmaster/1/executor/x/config", StatusCode::BAD_REQUEST, "executor id"),
        ("GET", "/api/v1.0/workers/42", StatusCode::NOT_FOUND, "worker 42"),
        ("GET", "/api/v1.0/worker/-1", StatusCode::BAD_REQUEST, "worker id"),
        ("GET", "/api/v1.0/config/worker/42", StatusCode::NOT_FOUND, "worker 42"),
        ("GET", "/api/v1.0/config/app/42", StatusCode::NOT_FOUND, "application 42"),
        ("GET", "/api/v1.0/metrics/app/1/app2.processor0", StatusCode::BAD_REQUEST, "under app1"),
        ("GET", "/api/v1.0/master/metrics/app1?readOption=soon", StatusCode::BAD_REQUEST, "readOption"),
        ("GET", "/api/v1.0/master/metrics/app1?when=now", StatusCode::BAD_REQUEST, "when"),
        ("GET", "/api/v1.0/nothing", StatusCode::NOT_FOUND, "no such route"),
        // This embedded cluster takes no binaries; it says so before reading any.
        ("POST", "/api/v1.0/master/submitapp", StatusCode::BAD_REQUEST, "embedded cluster"),
        ("POST", "/api/v1.0/master/uploadjar", StatusCode::BAD_REQUEST, "embedded cluster"),
    ] {
        let (got, body) = h.call(method, uri, Body::empty(), None);
        assert_eq!(got, status, "{method} {uri}: {body}");
        let error = body["error"].as_str().unwrap_or_else(|| panic!("{method} {uri}: no JSON error in {body}"));
        assert!(error.contains(says), "{method} {uri}: {error:?} should say {says:?}");
    }
    let dag = |body: &str| {
        h.call("POST", "/api/v1.0/master/submitdag", Body::from(body.to_string()), Some("application/json"))
    };
    for (body, says) in [
        ("{not json", "JSON"),
        (r#"{"appName": "x", "processors": {"0": {"taskClass": "Nope", "parallelism": 1}}}"#, "Nope"),
        (
            r#"{"appName": "x", "processors": {"0": {"taskClass": "Sink", "parallelism": 1}}, "edges": [["0", "zigzag", "0"]]}"#,
            "zigzag",
        ),
        (
            r#"{"appName": "x", "processors": {"0": {"taskClass": "Sink", "parallelism": 1}}, "edges": [["0", "hash", "7"]]}"#,
            "\"7\"",
        ),
        (r#"{"appName": "x", "processors": {"0": {"taskClass": "Sink", "parallelism": 4294967295}}}"#, "tasks"),
        (
            r#"{"appName": "x", "processors": {"0": {"taskClass": "Sink", "parallelism": 2147483648},
                "1": {"taskClass": "Sink", "parallelism": 2147483648}}, "edges": [["0", "hash", "1"]]}"#,
            "at most",
        ),
        (r#"{"appName": "x", "processors": {"0": {"taskClass": "Sink", "parallelism": 4294967296}}}"#, "parallelism"),
        (r#"{"appName": "x", "processors": {"0": {"taskClass": "Sink", "parallelism": -1}}}"#, "parallelism"),
    ] {
        let (status, v) = dag(body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }

    // submitdag with the binary's own task types; restart; kill, kill again.
    let (status, v) = dag(r#"{"appName": "fromdag", "processors": {"0": {"taskClass": "Numbers", "parallelism": 1},
        "1": {"taskClass": "Sink", "parallelism": 3, "description": "three sinks"}}, "edges": [["0", "shuffle", "1"]]}"#);
    assert_eq!(status, StatusCode::OK, "{v}");
    let dag_id = v["appId"].as_u64().unwrap() as u32;
    h.client().wait_active(AppId(dag_id), Duration::from_secs(60)).unwrap();
    wait_until("the DAG app's detail", || {
        h.ok(&format!("/api/v1.0/appmaster/{dag_id}?detail=true"))["processors"]["1"]["parallelism"] == 3
    });
    // A replay restarts the tasks from the start clock; the detail counts it.
    let (status, v) = h.call("POST", &format!("/api/v1.0/appmaster/{id}/replay"), Body::empty(), None);
    assert_eq!(status, StatusCode::OK, "{v}");
    wait_until("the replay shows in the detail", || {
        h.ok(&format!("/api/v1.0/appmaster/{id}?detail=true"))["restarts"] == 1
    });
    let (status, v) = h.call("POST", &format!("/api/v1.0/appmaster/{id}/restart"), Body::empty(), None);
    assert_eq!(status, StatusCode::OK, "{v}");
    let restarted = v["appId"].as_u64().unwrap() as u32;
    assert_ne!(restarted, id.0);
    h.client().wait(id, Duration::from_secs(60)).unwrap();
    assert_eq!(h.ok(&format!("/api/v1.0/appmaster/{id}"))["status"], "terminated");
    h.client().wait_active(AppId(restarted), Duration::from_secs(60)).unwrap();
    for app in [restarted, dag_id] {
        let (status, v) = h.call("DELETE", &format!("/api/v1.0/appmaster/{app}"), Body::empty(), None);
        assert_eq!(status, StatusCode::OK, "{v}");
        h.client().wait(AppId(app), Duration::from_secs(60)).unwrap();
    }
    let (status, v) = h.call("DELETE", &format!("/api/v1.0/appmaster/{restarted}"), Body::empty(), None);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not running"), "{v}");
}

#[test]
fn with_authentication_on_guests_read_users_manage_their_own_and_admins_all() {
    let me = gearpump_cluster::current_user();
    let auth = RestAuth::with_users(&[
        ("gus", "guest-password", Role::Guest),
        ("alice", "alice-password", Role::User),
        (&me, "my-password", Role::User),
        ("boss", "admin-password", Role::Admin),
    ]);
    let h = Harness::start_with(Some(auth));
    let mine = h.client().submit(app("mine")).unwrap();
    h.client().wait_active(mine, Duration::from_secs(60)).unwrap();
    let basic = |user: &str, password: &str| {
        let raw = format!("{user}:{password}");
        // Standard base64, as curl -u sends it.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in raw.as_bytes().chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                out.push(if i <= c.len() { A[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
            }
        }
        format!("Basic {out}")
    };
    // Nobody: 401 naming how to log in; the dashboard's page and whoami still answer.
    let (status, _, v) = h.raw("GET", "/api/v1.0/master", "", &[]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["error"].as_str().unwrap().contains("log in"), "{v}");
    let (status, _, v) = h.raw("DELETE", &format!("/api/v1.0/appmaster/{}", mine.0), "", &[]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(h.raw("GET", "/", "", &[]).0, StatusCode::OK);
    let (_, _, who) = h.raw("GET", "/api/v1.0/whoami", "", &[]);
    assert_eq!(who, json!({"authentication": true, "user": null, "role": null}));
    let (status, _, _) = h.raw("GET", "/metrics", "", &[]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "Prometheus scrapes need credentials too");

    // A wrong password, or a user that does not exist: the same 401.
    for body in [r#"{"user": "alice", "password": "nope"}"#, r#"{"user": "mallory", "password": "nope"}"#] {
        let (status, headers, v) = h.raw("POST", "/login", body, &[]);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(v["error"], "wrong user name or password");
        assert!(headers.get("set-cookie").is_none());
    }
    // A guest reads and may change nothing.
    let gus = basic("gus", "guest-password");
    assert_eq!(h.raw("GET", "/api/v1.0/master/applist", "", &[("authorization", &gus)]).0, StatusCode::OK);
    let dag = r#"{"appName": "alices", "processors": {"0": {"taskClass": "Numbers", "parallelism": 1}}}"#;
    let (status, _, v) = h.raw("POST", "/api/v1.0/master/submitdag", dag, &[("authorization", &gus)]);
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("guest"), "{v}");

    // Alice logs in (a session cookie), submits, and manages her own application only.
    let (status, headers, v) = h.raw("POST", "/login", r#"{"user": "alice", "password": "alice-password"}"#, &[]);
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"user": "alice", "role": "user"}));
    let cookie = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let alice = [("cookie", session.as_str())];
    let (_, _, who) = h.raw("GET", "/api/v1.0/whoami", "", &alice);
    assert_eq!(who, json!({"authentication": true, "user": "alice", "role": "user"}));
    let (status, _, v) = h.raw("POST", "/api/v1.0/master/submitdag", dag, &alice);
    assert_eq!(status, StatusCode::OK, "{v}");
    let hers = v["appId"].as_u64().unwrap();
    let (_, _, apps) = h.raw("GET", "/api/v1.0/master/applist", "", &alice);
    let user_of =
        |id: u64| apps["appMasters"].as_array().unwrap().iter().find(|a| a["appId"] == id).unwrap()["user"].clone();
    assert_eq!(user_of(hers), "alice", "the logged-in user is the submitter");
    let (status, _, v) = h.raw("DELETE", &format!("/api/v1.0/appmaster/{}", mine.0), "", &alice);
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains(&format!("submitted by {me}")), "{v}");
    assert_eq!(h.client().status(mine).unwrap().status, gearpump_cluster::AppStatus::Active, "not killed");
    let (status, _, v) = h.raw("DELETE", &format!("/api/v1.0/appmaster/{hers}"), "", &alice);
    assert_eq!(status, StatusCode::OK, "{v}");
    // Logged out, the cookie is worth nothing.
    assert_eq!(h.raw("POST", "/logout", "", &alice).0, StatusCode::OK);
    assert_eq!(h.raw("GET", "/api/v1.0/master", "", &alice).0, StatusCode::UNAUTHORIZED);

    // The submitter of the first application (a user) may replay it; an admin may kill it.
    let owner = basic(&me, "my-password");
    let (status, _, v) =
        h.raw("POST", &format!("/api/v1.0/appmaster/{}/replay", mine.0), "", &[("authorization", &owner)]);
    assert_eq!(status, StatusCode::OK, "{v}");
    let boss = basic("boss", "admin-password");
    let (status, _, v) = h.raw("DELETE", &format!("/api/v1.0/appmaster/{}", mine.0), "", &[("authorization", &boss)]);
    assert_eq!(status, StatusCode::OK, "{v}");
    // Wrong Basic credentials are refused like a wrong login.
    let (status, _, _) = h.raw("GET", "/api/v1.0/master", "", &[("authorization", &basic("boss", "wrong"))]);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_cross_site_request_changes_nothing() {
    let h = Harness::start();
    let id = h.client().submit(app("victim")).unwrap();
    h.client().wait_active(id, Duration::from_secs(60)).unwrap();
    let kill = format!("/api/v1.0/appmaster/{}", id.0);
    let dag = r#"{"appName": "planted", "processors": {"0": {"taskClass": "Numbers", "parallelism": 1}}}"#;
    for headers in [
        &[("host", "127.0.0.1:8090"), ("origin", "http://evil.example")][..],
        &[("host", "127.0.0.1:8090"), ("origin", "http://127.0.0.1:8090.evil.example")][..],
        &[("host", "127.0.0.1:8090"), ("origin", "null")][..],
        &[("host", "127.0.0.1:8090"), ("sec-fetch-site", "cross-site")][..],
    ] {
        let (status, v) = h.call_with("DELETE", &kill, Body::empty(), headers);
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {v}");
        assert!(v["error"].as_str().unwrap().contains("may not change anything"), "{v}");
        let mut with_json = headers.to_vec();
        with_json.push(("content-type", "application/json"));
        let (status, v) = h.call_with("POST", "/api/v1.0/master/submitdag", Body::from(dag), &with_json);
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {v}");
    }
    // DNS rebinding: a page whose own name now resolves to this server sends its own Host and
    // Origin, which agree; the Host is not one this server answers to.
    let rebound = [("host", "evil.example:8090"), ("origin", "http://evil.example:8090")];
    let (status, v) = h.call_with("DELETE", &kill, Body::empty(), &rebound);
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("gearpump.services.allowed-hosts"), "{v}");
    let (status, _) = h.call_with("GET", "/api/v1.0/master", Body::empty(), &[("host", "evil.example:8090")]);
    assert_eq!(status, StatusCode::FORBIDDEN, "reading is refused too");
    let (status, _) = h.call_with("GET", "/", Body::empty(), &[("host", "evil.example:8090")]);
    assert_eq!(status, StatusCode::FORBIDDEN, "and the dashboard");
    // Reading stays open to any page (the dashboard's data is not a secret once authenticated).
    let (status, _) = h.call_with("GET", "/api/v1.0/master", Body::empty(), &[("origin", "http://evil.example")]);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.client().status(id).unwrap().status, gearpump_cluster::AppStatus::Active, "nothing was killed");
    // The dashboard itself (same origin) and clients without Origin may.
    let (status, v) = h.call_with(
        "DELETE",
        &kill,
        Body::empty(),
        &[("host", "127.0.0.1:8090"), ("origin", "http://127.0.0.1:8090"), ("sec-fetch-site", "same-origin")],
    );
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// A multipart body with one file part of `size` bytes, produced lazily; `pulled` counts the
/// bytes the server actually read.
fn lazy_upload(size: usize, pulled: Arc<std::sync::atomic::AtomicUsize>) -> Body {
    use std::sync::atomic::Ordering;
    let head = "--XX\r\nContent-Disposition: form-data; name=\"jar\"; filename=\"big\"\r\n\r\n".as_bytes().to_vec();
    let tail = b"\r\n--XX--\r\n".to_vec();
    let chunk = 1 << 20;
    let parts = std::iter::once(head)
        .chain((0..size.div_ceil(chunk)).map(move |i| vec![b'x'; chunk.min(size - i * chunk)]))
        .chain(std::iter::once(tail))
        .map(move |bytes| {
            pulled.fetch_add(bytes.len(), Ordering::Relaxed);
            Ok::<_, std::io::Error>(axum::body::Bytes::from(bytes))
        });
    Body::from_stream(tokio_stream::iter(parts))
}

#[test]
fn uploads_are_streamed_limited_and_refused_before_reading_where_they_cannot_run() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let multipart = Some("multipart/form-data; boundary=XX");
    // The embedded cluster runs no uploaded binaries: a 200 MB upload is refused unread.
    let h = Harness::start();
    let pulled = Arc::new(AtomicUsize::new(0));
    let (status, v) = h.call("POST", "/api/v1.0/master/uploadjar", lazy_upload(200 << 20, pulled.clone()), multipart);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("embedded cluster"), "{v}");
    assert!(
        pulled.load(Ordering::Relaxed) < 16 << 20,
        "read {} bytes of a refused upload",
        pulled.load(Ordering::Relaxed)
    );

    // A cluster's services (no master here): over the limit is 413 naming the key; under it,
    // the upload is read through and the missing master is the answer.
    let remote = gearpump_services::RemoteBackend::new(
        vec!["127.0.0.1:1".parse().unwrap()],
        gearpump_protocol::ClusterSecret::none(),
        String::new(),
    );
    let limits = gearpump_services::RestLimits { body: 4 << 10, upload: 64 << 10, ..Default::default() };
    let router = gearpump_services::router_with(Arc::new(remote), limits);
    let call = |uri: &str, body: Body, ct: &str| {
        let req = Request::builder().method("POST").uri(uri).header("content-type", ct).body(body).unwrap();
        h.rt.block_on(async {
            let resp = router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    let ct = "multipart/form-data; boundary=XX";
    let (status, text) = call("/api/v1.0/master/submitapp", Body::from("plain"), "text/plain");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("multipart"), "{text}");
    let args_only = "--XX\r\nContent-Disposition: form-data; name=\"args\"\r\n\r\n-x\r\n--XX--\r\n";
    let (status, text) = call("/api/v1.0/master/submitapp", Body::from(args_only), ct);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("part named jar"), "{text}");
    let (status, text) = call("/api/v1.0/master/uploadjar", lazy_upload(1 << 20, Arc::default()), ct);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains("gearpump.services.upload-limit-bytes"), "{text}");
    let (status, text) = call("/api/v1.0/master/uploadjar", lazy_upload(32 << 10, Arc::default()), ct);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("no master answers"), "{text}");
    // Any other body over its limit.
    let big_json = format!(r#"{{"appName": "{}", "processors": {{}}}}"#, "a".repeat(8 << 10));
    let (status, text) = call("/api/v1.0/master/submitdag", Body::from(big_json), "application/json");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    // Nothing is left in the temporary directory.
    let dir = std::env::temp_dir().join(format!("gear-services-{}", std::process::id()));
    let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "uploads left in {}", dir.display());
}

#[test]
fn a_secret_in_a_store_url_shows_nowhere() {
    let h = Harness::start();
    // A store this build cannot open, with credentials in its user info and its query.
    let root = "hdfs://alice:LEAKPW1@namenode:8020/ckpt?region=x&secret_access_key=LEAKSK2&access_key_id=LEAKAK3";
    let counter = Processor::from_fn("Counter", 1, |_| Ok(Sink)).stateful();
    let source = Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0)));
    let conf = gearpump_core::UserConfig::empty()
        .with("state.checkpoint.store.rootpath", root)
        .with("kafka.producer.sasl.password", "LEAKPW4");
    let app = StreamApplication::builder("leaky").path([&source, &counter]).config(conf).build().unwrap();
    let id = h.client().submit(app).unwrap();
    let summary = h.client().wait(id, Duration::from_secs(120)).unwrap();
    let error = summary.error.unwrap_or_default();
    assert!(error.contains("hdfs://alice:***@namenode:8020"), "the error still names the store: {error}");
    let mut shown = vec![("the summary".to_string(), error)];
    for route in [
        format!("/api/v1.0/appmaster/{}/errors", id.0),
        format!("/api/v1.0/appmaster/{}?detail=true", id.0),
        format!("/api/v1.0/appmaster/{}/config", id.0),
        format!("/api/v1.0/config/app/{}", id.0),
        "/api/v1.0/master/applist".to_string(),
    ] {
        let (_, v) = h.get(&route);
        shown.push((route, v.to_string()));
    }
    for (what, text) in shown {
        for secret in ["LEAKPW1", "LEAKSK2", "LEAKAK3", "LEAKPW4"] {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    }
}

/// Holds the application clock at 1 (its own watermark) while passing nothing on.
struct Holder;
impl Task for Holder {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        Ok(())
    }
    fn watermark(&self) -> Option<Timestamp> {
        Some(Timestamp(1))
    }
}

#[test]
fn a_task_that_holds_the_clock_is_reported_stalling() {
    let h = Harness::start();
    let source = Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0)));
    let holder = Processor::from_fn("Holder", 2, |_| Ok(Holder));
    let app = StreamApplication::builder("stalled").path([&source, &holder]).build().unwrap();
    let id = h.client().submit(app).unwrap();
    h.client().wait_active(id, Duration::from_secs(60)).unwrap();
    // The clock stands still for gearpump_clock::STALL_AFTER_MS (10 s) before it is reported.
    let route = format!("/api/v1.0/appmaster/{}/stallingtasks", id.0);
    wait_until("both Holder tasks reported stalling", || {
        let tasks = h.ok(&route)["tasks"].as_array().cloned().unwrap_or_default();
        tasks.contains(&json!({"processorId": 1, "index": 0})) && tasks.contains(&json!({"processorId": 1, "index": 1}))
    });
    let tasks = h.ok(&route)["tasks"].as_array().cloned().unwrap_or_default();
    assert!(tasks.iter().all(|t| t["processorId"] == 1), "only the tasks holding the clock: {tasks:?}");
}

/// The services' port, like every other, holds at most `connections` at once (more are closed
/// at once) and closes a connection idle for `idle`; requests go on being served.
#[test]
fn the_services_port_limits_connections_and_closes_idle_ones() {
    use std::io::{Read, Write};
    let cluster = EmbeddedCluster::start(ClusterConfig::default());
    let backend = Arc::new(EmbeddedBackend::new(cluster.client(), None));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = RestLimits { connections: 3, idle: Duration::from_millis(300), ..RestLimits::default() };
    rt.spawn(gearpump_services::serve(
        listener,
        backend,
        limits,
        Arc::new(RestAuth::disabled()),
        std::future::pending(),
    ));
    let get = |s: &mut std::net::TcpStream| -> std::io::Result<String> {
        s.write_all(b"GET /api/v1.0/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let connect = || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // Three connections are served and kept (HTTP keep-alive).
    let mut kept: Vec<std::net::TcpStream> = (0..3).map(|_| connect()).collect();
    for s in &mut kept {
        assert!(get(s).unwrap().starts_with("HTTP/1.1 200"));
    }
    // A fourth is closed without an answer.
    let mut fourth = connect();
    let refused = get(&mut fourth);
    assert!(refused.as_ref().map_or(true, String::is_empty), "{refused:?}");
    // Left idle, the three are closed by the server, which frees their places.
    for s in &mut kept {
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "an idle connection is closed");
    }
    let mut again = connect();
    assert!(get(&mut again).unwrap().starts_with("HTTP/1.1 200"));
    drop(rt);
    cluster.shutdown();
}

/// Messages the replacement sink received, over every test of this file.
static COUNTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A sink that counts what it receives in [`COUNTED`].
struct Counted;
impl Task for Counted {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        COUNTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn dynamic_dag_replaces_rescales_attaches_and_removes_and_refuses_what_cannot_run() {
    let h = Harness::start();
    let (source, pass, sink) = (
        Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0))),
        Processor::from_fn("Pass", 2, |_| Ok(Pass)),
        Processor::from_fn("Sink", 1, |_| Ok(Sink)),
    );
    let counted: gearpump_api::TaskFactory = Arc::new(|_| Ok(Box::new(Counted) as Box<dyn Task>));
    let app = StreamApplication::builder("changing")
        .path([&source, &pass, &sink])
        .register("Counted", counted)
        .build()
        .unwrap();
    let id = h.client().submit(app).unwrap();
    h.client().wait_active(id, Duration::from_secs(60)).unwrap();
    let change = |body: &str| h.raw("POST", &format!("/api/v1.0/appmaster/{id}/dynamicdag"), body, &[]);
    let detail = || h.ok(&format!("/api/v1.0/appmaster/{id}?detail=true"));
    wait_until("the detail shows the task types", || {
        detail()["taskTypes"] == json!(["Counted", "Numbers", "Pass", "Sink"])
    });

    // Replace the sink: the new processor (id 3) takes its edge and receives messages.
    let (status, _, v) =
        change(r#"{"replace": {"processorId": 2, "newProcessor": {"taskClass": "Counted", "parallelism": 2}}}"#);
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 1, "{v}");
    wait_until("the new sink receives messages", || COUNTED.load(std::sync::atomic::Ordering::Relaxed) > 0);
    wait_until("the detail shows version 1", || detail()["dagVersion"] == 1);
    let d = detail();
    assert_eq!(d["dag"]["vertexList"], json!([0, 1, 3]), "{d}");
    assert_eq!(d["dag"]["edgeList"], json!([[0, "hash", 1], [1, "hash", 3]]), "{d}");
    assert!(d["dag"]["edges"][1]["backPressure"].is_number(), "each edge's back-pressure share: {d}");
    assert_eq!(d["processors"]["2"]["retired"], true, "{d}");
    assert_eq!(d["processors"]["2"]["life"]["death"], d["processors"]["3"]["life"]["birth"], "{d}");
    assert_eq!(d["processors"]["3"]["taskClass"], "Counted", "{d}");

    // What cannot run is refused with the reason, and the DAG runs on as it was.
    for (body, code, says) in [
        (
            r#"{"replace": {"processorId": 3, "newProcessor": {"taskClass": "Nope", "parallelism": 1}}}"#,
            StatusCode::BAD_REQUEST,
            "unknown task type \"Nope\"",
        ),
        (r#"{"rescale": {"processorId": 2, "parallelism": 2}}"#, StatusCode::BAD_REQUEST, "no live processor 2"),
        (r#"{"rescale": {"processorId": 1, "parallelism": 0}}"#, StatusCode::BAD_REQUEST, "parallelism 0"),
        (r#"{"remove": {"processorIds": [1]}}"#, StatusCode::BAD_REQUEST, "without input"),
        (r#"{"rescale": {"processorId": 1, "parallelism": 100000}}"#, StatusCode::BAD_REQUEST, "more slots"),
        (r#"{"teleport": {}}"#, StatusCode::BAD_REQUEST, "dynamicdag takes a JSON DAG change"),
        ("not json", StatusCode::BAD_REQUEST, "dynamicdag takes a JSON DAG change"),
    ] {
        let (status, _, v) = change(body);
        assert_eq!(status, code, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let (status, _, v) =
        h.raw("POST", "/api/v1.0/appmaster/99/dynamicdag", r#"{"remove": {"processorIds": [1]}}"#, &[]);
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(detail()["dagVersion"], 1);

    // Rescale the middle processor up and back down while it runs.
    let (status, _, v) = change(r#"{"rescale": {"processorId": 1, "parallelism": 4}}"#);
    assert_eq!((status, v["version"].clone()), (StatusCode::OK, json!(2)), "{v}");
    wait_until("four tasks of processor 4", || detail()["processors"]["4"]["taskCount"] == 4);
    let (status, _, v) = change(r#"{"rescale": {"processorId": 4, "parallelism": 2}}"#);
    assert_eq!((status, v["version"].clone()), (StatusCode::OK, json!(3)), "{v}");

    // Attach a sub-graph below the source, then remove it again.
    let (status, _, v) = change(
        r#"{"attach": {"processors": {"audit": {"taskClass": "Sink", "parallelism": 1}}, "edges": [["0", "shuffle", "audit"]]}}"#,
    );
    assert_eq!((status, v["version"].clone()), (StatusCode::OK, json!(4)), "{v}");
    wait_until("the attached processor", || detail()["dag"]["vertexList"] == json!([0, 3, 5, 6]));
    let (status, _, v) = change(r#"{"remove": {"processorIds": [6]}}"#);
    assert_eq!((status, v["version"].clone()), (StatusCode::OK, json!(5)), "{v}");
    wait_until("the removed processor is gone", || detail()["dag"]["vertexList"] == json!([0, 3, 5]));
    // The clock still moves, and messages still arrive.
    let (seen, clock) = (COUNTED.load(std::sync::atomic::Ordering::Relaxed), detail()["clock"].clone());
    wait_until("the clock moves", || detail()["clock"] != clock);
    wait_until("more messages arrive", || COUNTED.load(std::sync::atomic::Ordering::Relaxed) > seen);
    assert_eq!(h.ok(&format!("/api/v1.0/appmaster/{id}"))["status"], "active");
}

/// Passes every message on.
struct Pass;
impl Task for Pass {
    fn on_next(&mut self, ctx: &mut TaskContext<'_>, msg: Message) -> TaskResult {
        ctx.output(msg);
        Ok(())
    }
}

/// Fails the first time it sees a message (in this process).
struct FailsOnce;
static FAILED_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
impl Task for FailsOnce {
    fn on_next(&mut self, _: &mut TaskContext<'_>, _: Message) -> TaskResult {
        if !FAILED_ONCE.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return Err("the first message is refused, password=hunter2".into());
        }
        Ok(())
    }
}

#[test]
fn the_detail_shows_each_processors_clock_and_the_errors_list_the_latest_failures_by_task() {
    let h = Harness::start();
    let source = Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0)));
    let fails = Processor::from_fn("FailsOnce", 1, |_| Ok(FailsOnce));
    let id = h.client().submit(StreamApplication::builder("failing").path([&source, &fails]).build().unwrap()).unwrap();
    h.client().wait_active(id, Duration::from_secs(60)).unwrap();
    wait_until("the failure is listed", || {
        h.ok(&format!("/api/v1.0/appmaster/{id}/errors"))["recent"].as_array().is_some_and(|r| !r.is_empty())
    });
    let errors = h.ok(&format!("/api/v1.0/appmaster/{id}/errors"));
    let e = &errors["recent"][0];
    assert_eq!(e["task"], json!({"processorId": 1, "index": 0}), "{errors}");
    let text = e["error"].as_str().unwrap();
    assert!(text.contains("the first message is refused") && !text.contains("hunter2"), "{errors}");
    assert!(e["time"].as_str().unwrap().parse::<i64>().unwrap() > 0, "{errors}");
    // After the recovery, each processor's clock moves with the wall clock.
    wait_until("the processors' clocks", || {
        let d = h.ok(&format!("/api/v1.0/appmaster/{id}?detail=true"));
        ["0", "1"].iter().all(|p| {
            d["processors"][p]["clock"]
                .as_str()
                .and_then(|c| c.parse::<i64>().ok())
                .is_some_and(|c| c > 1_000_000_000_000)
        })
    });
}

/// Counts messages, exactly once.
struct Count;
impl gearpump_api::PersistentTask for Count {
    type State = u64;
    fn process(
        &mut self,
        _: &mut TaskContext<'_>,
        msg: Message,
        state: &mut gearpump_api::PersistentState<u64>,
    ) -> TaskResult {
        state.update(msg.timestamp(), 1);
        Ok(())
    }
}

#[test]
fn complete_checkpoints_are_listed_newest_first_with_what_each_task_saved() {
    let h = Harness::start();
    let root = std::env::temp_dir().join(format!("gearpump-routes-checkpoints-{}", std::process::id()));
    let source = Processor::from_fn("Numbers", 1, |_| Ok(Numbers(0)));
    let count = Processor::persistent("Count", 2, |_| Ok(Count));
    let config = gearpump_api::UserConfig::empty()
        .with("state.checkpoint.interval.ms", 200)
        .with("state.checkpoint.store.rootpath", root.to_string_lossy());
    let app = StreamApplication::builder("checkpointed").path([&source, &count]).config(config).build().unwrap();
    let id = h.client().submit(app).unwrap();
    h.client().wait_active(id, Duration::from_secs(60)).unwrap();
    let uri = format!("/api/v1.0/appmaster/{id}/checkpoints");
    wait_until("two complete checkpoints", || h.ok(&uri)["checkpoints"].as_array().is_some_and(|c| c.len() >= 2));
    let v = h.ok(&uri);
    let list = v["checkpoints"].as_array().unwrap();
    let time = |c: &Value| c["time"].as_str().unwrap().parse::<i64>().unwrap();
    assert!(time(&list[0]) > time(&list[1]), "newest first: {v}");
    let c = &list[0];
    let tasks = c["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "both count tasks saved: {v}");
    assert_eq!(tasks[0]["task"], json!({"processorId": 1, "index": 0}), "{v}");
    // A u64 count in postcard: 1 to 10 bytes.
    assert!(tasks.iter().all(|t| (1..=10).contains(&t["bytes"].as_u64().unwrap())), "{v}");
    assert_eq!(c["bytes"].as_u64().unwrap(), tasks.iter().map(|t| t["bytes"].as_u64().unwrap()).sum::<u64>());
    assert!(c["durationMs"].as_i64().unwrap() >= 0, "{v}");
    let (status, _) = h.get("/api/v1.0/appmaster/99/checkpoints");
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Logs: an embedded cluster keeps none per process, and says so; bad requests are named.
    for (uri, says) in [
        (format!("/api/v1.0/appmaster/{id}/logs/appmaster"), "keeps no log per process"),
        (format!("/api/v1.0/appmaster/{id}/logs/nope"), "a log is the AppMaster's"),
        (format!("/api/v1.0/appmaster/{id}/logs/appmaster?bytes=0"), "bytes must be a number"),
    ] {
        let (status, v) = h.get(&uri);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{uri}: {v}");
    }
    let _ = std::fs::remove_dir_all(root);
}
