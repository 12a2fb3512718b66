//! The router: every route of the REST API, the Prometheus endpoint, the live-update stream and
//! the dashboard's files.

use crate::auth::{Authorizer, Caller, Denied, RestAuth, Role, Target};
use crate::backend::{Backend, BackendError, DagRequest, Upload};
use crate::views;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use gearpump_core::AppId;
use gearpump_metrics::ReadOption;
use gearpump_protocol::{AppDetail, ClusterSnapshot};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;

/// The version the API reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A failed request: its status and a JSON `{"error": …}` body.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let status = match &e {
            BackendError::NotFound(_) => StatusCode::NOT_FOUND,
            BackendError::BadRequest(_) => StatusCode::BAD_REQUEST,
            BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            BackendError::Conflict(_) => StatusCode::CONFLICT,
        };
        ApiError(status, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg.into())
}

type Api = Result<axum::Json<Value>, ApiError>;
type Shared = State<Arc<dyn Backend>>;

fn parse_id<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| bad(format!("{what} must be a non-negative integer, not {raw:?}")))
}

fn find_app(s: &ClusterSnapshot, raw: &str) -> Result<AppDetail, ApiError> {
    let id: u32 = parse_id("the application id", raw)?;
    s.apps
        .iter()
        .find(|a| a.info.id == AppId(id))
        .cloned()
        .ok_or_else(|| not_found(format!("application {id} does not exist")))
}

fn read_option(q: &HashMap<String, String>) -> Result<ReadOption, ApiError> {
    for k in q.keys() {
        if k != "readOption" && k != "aggregator" {
            return Err(bad(format!("unknown query parameter {k:?}; expected readOption")));
        }
    }
    q.get("readOption").map_or(Ok(ReadOption::Latest), |o| o.parse().map_err(bad))
}

/// The REST API, the Prometheus endpoint (`/metrics`), the live-update stream and the
/// dashboard, answering from `backend`.
pub fn router(backend: Arc<dyn Backend>) -> Router {
    router_with(backend, RestLimits::default())
}

/// The request-size limits of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestLimits {
    /// The largest body of any request but an upload (`gearpump.services.body-limit-bytes`,
    /// 1 MiB).
    pub body: usize,
    /// The largest uploaded binary (`gearpump.services.upload-limit-bytes`, 1 GiB); it is
    /// streamed to a temporary file, never held in memory.
    pub upload: u64,
    /// Connections open at once (`gearpump.network.max-connections`, 1024); more are closed.
    pub connections: u32,
    /// A connection without a byte either way for this long is closed
    /// (`gearpump.services.idle-timeout-ms`, 60 s).
    pub idle: Duration,
}

impl Default for RestLimits {
    fn default() -> Self {
        RestLimits { body: 1 << 20, upload: 1 << 30, connections: 1024, idle: Duration::from_secs(60) }
    }
}

impl RestLimits {
    /// The limits `conf` sets.
    pub fn from_config(conf: &gearpump_config::GearConfig) -> Result<RestLimits, gearpump_config::ConfigError> {
        Ok(RestLimits {
            body: conf.get_num("gearpump.services.body-limit-bytes")?,
            upload: conf.get_num("gearpump.services.upload-limit-bytes")?,
            connections: conf.port_limits()?.0,
            idle: Duration::from_millis(conf.get_num::<u64>("gearpump.services.idle-timeout-ms")?.max(1)),
        })
    }
}

/// Every route on `backend`, within `limits`, with authentication off.
pub fn router_with(backend: Arc<dyn Backend>, limits: RestLimits) -> Router {
    router_secured(backend, limits, Arc::new(RestAuth::disabled()))
}

/// Every route on `backend`, within `limits`, for the callers `auth` admits (see
/// [`crate::auth`]).
pub fn router_secured(backend: Arc<dyn Backend>, limits: RestLimits, auth: Arc<RestAuth>) -> Router {
    // An upload's multipart body: the binary plus a few small text parts.
    let upload_body = usize::try_from(limits.upload).unwrap_or(usize::MAX).saturating_add(limits.body);
    let api = Router::new()
        .route("/version", get(|| async { VERSION }))
        .route("/master", get(master))
        .route("/master/applist", get(apps))
        .route("/appmasters", get(apps))
        .route("/master/workerlist", get(workers))
        .route("/workers", get(workers))
        .route("/workers/{id}", get(worker))
        .route("/worker/{id}", get(worker))
        .route("/worker/{id}/config", get(worker_config))
        .route("/config/worker/{id}", get(worker_config))
        .route("/worker/{id}/metrics/{*path}", get(worker_metrics))
        .route("/config/master", get(master_config))
        .route("/master/config", get(master_config))
        .route("/config/app/{id}", get(app_config))
        .route("/master/metrics/{*path}", get(master_metrics))
        .route("/metrics/app/{id}/{*path}", get(app_metrics))
        .route("/master/partitioners", get(partitioners))
        .route("/master/submitapp", post(submit_app).layer(DefaultBodyLimit::max(upload_body)))
        .route("/master/uploadjar", post(upload_jar).layer(DefaultBodyLimit::max(upload_body)))
        .route("/master/submitdag", post(submit_dag))
        .route("/appmaster/{id}", get(app).delete(kill))
        .route("/appmaster/{id}/stallingtasks", get(stalling))
        .route("/appmaster/{id}/errors", get(errors))
        .route("/appmaster/{id}/checkpoints", get(checkpoints))
        .route("/appmaster/{id}/logs/{process}", get(logs))
        .route("/appmaster/{id}/restart", post(restart))
        .route("/appmaster/{id}/replay", post(replay))
        .route("/appmaster/{id}/dynamicdag", post(dynamic_dag))
        .route("/appmaster/{id}/executor/{eid}", get(executor))
        .route("/appmaster/{id}/executor/{eid}/config", get(executor_config))
        .route("/appmaster/{id}/config", get(app_config))
        .route("/websocket/url", get(live_url))
        .route("/events", get(events))
        .route("/whoami", get(whoami))
        .fallback(|uri: axum::http::Uri| async move { not_found(format!("no such route: {}", uri.path())) });
    let api = api.layer(axum::middleware::from_fn(without_secrets));
    Router::new()
        .nest("/api/v1.0", api)
        .route("/metrics", get(prometheus))
        .route("/", get(|| async { Html(crate::assets::INDEX) }))
        .route("/dashboard.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], crate::assets::JS) }))
        .route("/dashboard.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], crate::assets::CSS) }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .fallback(|uri: axum::http::Uri| async move { not_found(format!("no such page: {}", uri.path())) })
        .layer(axum::middleware::from_fn_with_state((backend.clone(), auth.clone()), authorize))
        .layer(axum::Extension(auth))
        .layer(axum::middleware::from_fn(same_origin_only))
        .layer(DefaultBodyLimit::max(limits.body))
        .layer(axum::Extension(limits))
        .with_state(backend)
}

/// Refuses a state change (any method but GET, HEAD and OPTIONS) that a browser sends on
/// behalf of another site: one whose `Origin` is not this server's own (`Host`), or that the
/// browser marks `Sec-Fetch-Site: cross-site` or `same-site`. Without this, a page the operator
/// happens to visit could POST a binary to `submitapp`. Clients that are not browsers (`curl`,
/// scripts) send neither header and pass; they are held by authentication instead.
async fn same_origin_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("(not text)"));
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && (site == "cross-site" || site == "same-site")
    {
        return forbidden(format!("a {site} request may not change anything here"));
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or("");
        // `scheme://host[:port]`: the part after the scheme must be this server's Host.
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest.trim_end_matches('/'));
        if host.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return forbidden(format!("a request from origin {origin:?} may not change anything on {host:?}"));
        }
    }
    next.run(req).await
}

/// Paths anyone may ask for: the dashboard's own files (it shows a login form) and logging in.
const PUBLIC: [&str; 6] = ["/", "/dashboard.js", "/dashboard.css", "/login", "/logout", "/api/v1.0/whoami"];

/// Lets a request through only if its caller may make it ([`crate::auth`]): 401 without a
/// valid session or credentials, 403 for a role that may not (naming the caller and why). The
/// caller goes on to the handlers (submissions record it as the submitter).
async fn authorize(
    State((backend, auth)): State<(Arc<dyn Backend>, Arc<RestAuth>)>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    if let Some(host) = req.headers().get(header::HOST) {
        let host = host.to_str().unwrap_or("(not text)");
        if !auth.host_allowed(host) {
            tracing::warn!(host, %path, "Refused a request for a host this server is not (DNS rebinding?).");
            return forbidden(format!(
                "this server does not answer to the host {host:?}; use its address, or add the name to \
                 gearpump.services.allowed-hosts"
            ));
        }
    }
    let caller = match auth.caller(req.headers()).await {
        Ok(c) => c,
        Err(_) if PUBLIC.contains(&path.as_str()) => return next.run(req).await,
        Err(d) => return denied(d),
    };
    let api = path.strip_prefix("/api/v1.0").unwrap_or(&path);
    let method = req.method().clone();
    let reads = matches!(method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS);
    // A user managing an application: whose is it? (One that does not exist is the handler's
    // 404.)
    let mut owner = None;
    if let Some(id) = Authorizer::app_of(api).filter(|_| !reads && caller.role == Role::User) {
        match backend.snapshot().await {
            Ok(s) => owner = s.apps.iter().find(|a| a.info.id == AppId(id)).map(|a| (id, a.info.user.clone())),
            Err(e) => return ApiError::from(e).into_response(),
        }
        if owner.is_none() {
            req.extensions_mut().insert(caller);
            return next.run(req).await;
        }
    }
    let target = owner.as_ref().map_or(Target::None, |(id, user)| Target::App { id: *id, owner: user });
    if !PUBLIC.contains(&path.as_str())
        && let Err(d) = Authorizer::decide(&caller, &method, api, &target)
    {
        tracing::info!(user = caller.user.as_deref().unwrap_or("-"), %method, %path, "Refused a REST request.");
        return denied(d);
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn denied(d: Denied) -> Response {
    match d {
        Denied::Unauthenticated(m) => ApiError(StatusCode::UNAUTHORIZED, m).into_response(),
        Denied::Forbidden(m) => forbidden(m),
        Denied::Busy => ApiError(StatusCode::SERVICE_UNAVAILABLE, "too many password checks at once; try again".into())
            .into_response(),
    }
}

/// `POST /login` `{"user": …, "password": …}`: a session cookie and who logged in.
async fn login(
    axum::Extension(auth): axum::Extension<Arc<RestAuth>>,
    body: Result<axum::Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !auth.enabled() {
        return bad("authentication is off (gearpump.ui-security.authentication-enabled)").into_response();
    }
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError(e.status(), "the login is over gearpump.services.body-limit-bytes".into()).into_response();
        }
        Err(_) => return bad("login takes JSON: {\"user\": …, \"password\": …}").into_response(),
    };
    let (Some(user), Some(password)) = (body["user"].as_str(), body["password"].as_str()) else {
        return bad("login needs the fields user and password").into_response();
    };
    let outcome = match auth.login(user, password).await {
        Ok(o) => o,
        Err(d) => return denied(d),
    };
    let Some((token, caller)) = outcome else {
        tracing::info!(user, "A failed login.");
        return ApiError(StatusCode::UNAUTHORIZED, "wrong user name or password".into()).into_response();
    };
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        crate::auth::COOKIE,
        auth.session_ttl().as_secs(),
        if auth.https().is_some() { "; Secure" } else { "" }
    );
    let mut resp = axum::Json(json!({"user": caller.user, "role": caller.role})).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /logout`: ends the session.
async fn logout(axum::Extension(auth): axum::Extension<Arc<RestAuth>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = crate::auth::session_token(&headers) {
        auth.logout(token);
    }
    let cookie = format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", crate::auth::COOKIE);
    let mut resp = axum::Json(json!({"success": true})).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /api/v1.0/whoami`: whether authentication is on, and who the caller is.
async fn whoami(axum::Extension(auth): axum::Extension<Arc<RestAuth>>, caller: Option<axum::Extension<Caller>>) -> Api {
    let caller = caller.map(|axum::Extension(c)| c);
    Ok(axum::Json(json!({
        "authentication": auth.enabled(),
        "user": caller.as_ref().and_then(|c| c.user.clone()),
        "role": caller.map(|c| c.role),
    })))
}

/// Masks secrets in every JSON answer: the values of secret-named keys (a password in a
/// config tree) and credentials inside strings (an S3 secret in a checkpoint URL that an error
/// message quotes). One place, so that no route can leak what another masks.
async fn without_secrets(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the answer could not be read".into()).into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    mask(&mut value);
    let body = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Masks secrets in `value` (see [`without_secrets`]).
fn mask(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(masked) = gearpump_core::redact(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if gearpump_core::is_secret_key(k) && !v.is_object() {
                    *v = Value::String(gearpump_core::redact::MASK.into());
                } else {
                    mask(v);
                }
            }
        }
        _ => {}
    }
}

fn forbidden(message: String) -> Response {
    ApiError(StatusCode::FORBIDDEN, message).into_response()
}

async fn master(State(b): Shared) -> Api {
    Ok(axum::Json(views::master(&b.snapshot().await?)))
}

async fn apps(State(b): Shared) -> Api {
    Ok(axum::Json(views::apps(&b.snapshot().await?)))
}

async fn workers(State(b): Shared) -> Api {
    Ok(axum::Json(views::workers(&b.snapshot().await?)))
}

async fn find_worker(b: &Arc<dyn Backend>, raw: &str) -> Result<(ClusterSnapshot, usize), ApiError> {
    let id: u32 = parse_id("the worker id", raw)?;
    let s = b.snapshot().await?;
    let i = s
        .workers
        .iter()
        .position(|w| w.info.id.0 == id)
        .ok_or_else(|| not_found(format!("worker {id} does not exist")))?;
    Ok((s, i))
}

async fn worker(State(b): Shared, Path(id): Path<String>) -> Api {
    let (s, i) = find_worker(&b, &id).await?;
    Ok(axum::Json(views::worker(&s, &s.workers[i])))
}

fn hocon_json(source: &str, text: &str) -> Value {
    if text.is_empty() {
        return json!({});
    }
    match gearpump_config::GearConfig::defaults().with_str(source, text) {
        Ok(c) => views::config_tree(c.entries().map(|(k, v)| (k.to_string(), v))),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

async fn worker_config(State(b): Shared, Path(id): Path<String>) -> Api {
    let (s, i) = find_worker(&b, &id).await?;
    Ok(axum::Json(hocon_json("the worker's configuration", &s.workers[i].config)))
}

async fn worker_metrics(
    State(b): Shared,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Api {
    let (s, i) = find_worker(&b, &id).await?;
    let scope = format!("worker{}", s.workers[i].info.id);
    if !gearpump_metrics::path_matches(&scope, &path) && !path.starts_with(&scope) {
        return Err(bad(format!("worker {} metrics are under {scope}, not {path:?}", s.workers[i].info.id)));
    }
    let points = b.metrics(path.clone(), read_option(&q)?).await?;
    Ok(axum::Json(json!({"workerId": s.workers[i].info.id.0, "path": path, "metrics": points_json(&points)})))
}

async fn master_config(State(b): Shared) -> Api {
    let s = b.snapshot().await?;
    Ok(axum::Json(hocon_json("the master's configuration", &s.master.config)))
}

async fn app_config(State(b): Shared, Path(id): Path<String>) -> Api {
    let s = b.snapshot().await?;
    let a = find_app(&s, &id)?;
    let mut tree = hocon_json("the master's configuration", &s.master.config);
    let user = a.runtime.iter().flat_map(|r| r.config.iter().cloned());
    if let Some(obj) = tree.as_object_mut() {
        obj.insert("application".into(), views::config_tree(user));
    }
    Ok(axum::Json(tree))
}

fn points_json(points: &[gearpump_metrics::MetricPoint]) -> Vec<Value> {
    points.iter().map(views::point).collect()
}

async fn master_metrics(State(b): Shared, Path(path): Path<String>, Query(q): Query<HashMap<String, String>>) -> Api {
    let points = b.metrics(path.clone(), read_option(&q)?).await?;
    Ok(axum::Json(json!({"path": path, "metrics": points_json(&points)})))
}

async fn app_metrics(
    State(b): Shared,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Api {
    let option = read_option(&q)?;
    let s = b.snapshot().await?;
    let a = find_app(&s, &id)?;
    let scope = format!("app{}", a.info.id);
    if !(path == scope || path.starts_with(&format!("{scope}.")) || path.starts_with(&format!("{scope}:"))) {
        return Err(bad(format!("application {} metrics are under {scope}, not {path:?}", a.info.id)));
    }
    let points = b.metrics(path.clone(), option).await?;
    Ok(axum::Json(json!({"appId": a.info.id.0, "path": path, "metrics": points_json(&points)})))
}

async fn partitioners() -> Api {
    Ok(axum::Json(json!({ "partitioners": gearpump_api::PartitionerSpec::BUILT_IN })))
}

async fn app(State(b): Shared, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Api {
    let detail = match q.get("detail").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(bad(format!("detail must be true or false, not {other:?}"))),
    };
    let s = b.snapshot().await?;
    let a = find_app(&s, &id)?;
    Ok(axum::Json(if detail { views::app_detail(&s, &a) } else { views::app_summary(&s, &a) }))
}

async fn kill(State(b): Shared, Path(id): Path<String>) -> Api {
    let id: u32 = parse_id("the application id", &id)?;
    b.kill(AppId(id)).await?;
    Ok(axum::Json(json!({"success": true, "appId": id})))
}

async fn restart(State(b): Shared, Path(id): Path<String>) -> Api {
    let id: u32 = parse_id("the application id", &id)?;
    let new = b.restart(AppId(id)).await?;
    Ok(axum::Json(json!({"success": true, "appId": new.0, "restartedFrom": id})))
}

async fn replay(State(b): Shared, Path(id): Path<String>) -> Api {
    let id: u32 = parse_id("the application id", &id)?;
    b.replay(AppId(id)).await?;
    Ok(axum::Json(json!({"success": true, "appId": id})))
}

/// `POST appmaster/<id>/dynamicdag` with a [`gearpump_core::DagChange`] as JSON: answered once
/// the application's AppMaster checked it and the masters recorded it.
async fn dynamic_dag(
    State(b): Shared,
    Path(id): Path<String>,
    body: Result<axum::Json<gearpump_core::DagChange>, axum::extract::rejection::JsonRejection>,
) -> Api {
    let id: u32 = parse_id("the application id", &id)?;
    let axum::Json(change) = body.map_err(|e| {
        bad(format!(
            "dynamicdag takes a JSON DAG change ({{\"replace\": …}}, {{\"rescale\": …}}, {{\"attach\": …}} or {{\"remove\": …}}): {}",
            e.body_text()
        ))
    })?;
    let version = b.change_dag(AppId(id), change).await?;
    Ok(axum::Json(json!({"success": true, "appId": id, "version": version})))
}

async fn stalling(State(b): Shared, Path(id): Path<String>) -> Api {
    let s = b.snapshot().await?;
    Ok(axum::Json(views::stalling(&find_app(&s, &id)?)))
}

async fn errors(State(b): Shared, Path(id): Path<String>) -> Api {
    let s = b.snapshot().await?;
    Ok(axum::Json(views::errors(&find_app(&s, &id)?)))
}

/// How much of a log `appmaster/<id>/logs/<process>` answers with unless asked (64 KiB), and
/// at most (1 MiB).
const LOG_BYTES: (u32, u32) = (64 << 10, 1 << 20);

/// `GET appmaster/<id>/logs/<appmaster|executor id>[?bytes=N]`: the end of that process's log,
/// read on the worker that ran it.
async fn logs(
    State(b): Shared,
    Path((id, process)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Api {
    let id: u32 = parse_id("the application id", &id)?;
    let executor: i32 = match process.as_str() {
        "appmaster" => -1,
        other => other.parse().ok().filter(|e: &i32| *e >= 0).ok_or_else(|| {
            bad(format!("a log is the AppMaster's (appmaster) or an executor's (its id), not {other:?}"))
        })?,
    };
    let bytes = match q.get("bytes") {
        None => LOG_BYTES.0,
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=LOG_BYTES.1).contains(n))
            .ok_or_else(|| bad(format!("bytes must be a number from 1 to {}, not {n:?}", LOG_BYTES.1)))?,
    };
    let (path, text) = b.log(AppId(id), executor, bytes).await?;
    Ok(axum::Json(json!({"appId": id, "process": process, "path": path, "text": text})))
}

async fn checkpoints(State(b): Shared, Path(id): Path<String>) -> Api {
    let s = b.snapshot().await?;
    Ok(axum::Json(views::checkpoints(&find_app(&s, &id)?)))
}

async fn executor(State(b): Shared, Path((id, eid)): Path<(String, String)>) -> Api {
    let s = b.snapshot().await?;
    let a = find_app(&s, &id)?;
    let eid: i32 = eid.parse().map_err(|_| bad(format!("the executor id must be an integer, not {eid:?}")))?;
    views::executor(&a, eid)
        .map(axum::Json)
        .ok_or_else(|| not_found(format!("application {} has no executor {eid}", a.info.id)))
}

async fn executor_config(State(b): Shared, Path((id, eid)): Path<(String, String)>) -> Api {
    let s = b.snapshot().await?;
    let a = find_app(&s, &id)?;
    let eid: i32 = eid.parse().map_err(|_| bad(format!("the executor id must be an integer, not {eid:?}")))?;
    if views::executor(&a, eid).is_none() {
        return Err(not_found(format!("application {} has no executor {eid}", a.info.id)));
    }
    let mut tree = hocon_json("the master's configuration", &s.master.config);
    if let Some(obj) = tree.as_object_mut() {
        obj.insert("application".into(), views::config_tree(a.runtime.iter().flat_map(|r| r.config.iter().cloned())));
    }
    Ok(axum::Json(tree))
}

/// Reads a multipart form: the binary (`jar` or `file`), streamed to a temporary file of at
/// most `limit` bytes, and the text fields.
async fn read_form(mut form: Multipart, limit: u64) -> Result<(Option<Upload>, HashMap<String, String>), ApiError> {
    use tokio::io::AsyncWriteExt;
    let mut file = None;
    let mut fields = HashMap::new();
    while let Some(mut field) = form.next_field().await.map_err(|e| form_failed("the form", &e, limit))? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "jar" | "file" => {
                let filename = field.file_name().unwrap_or("application").to_string();
                let saving = |e: std::io::Error| {
                    ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("saving the upload failed: {e}"))
                };
                let (mut upload, mut out) = Upload::create(&filename).await.map_err(saving)?;
                while let Some(chunk) = field.chunk().await.map_err(|e| form_failed(&name, &e, limit))? {
                    if upload.len() + chunk.len() as u64 > limit {
                        return Err(too_large(limit));
                    }
                    out.write_all(&chunk).await.map_err(saving)?;
                    upload.grew(chunk.len() as u64);
                }
                out.flush().await.map_err(saving)?;
                file = Some(upload);
            }
            "args" | "executors" | "configfile" | "conf" => {
                let text = field.text().await.map_err(|e| bad(format!("reading part {name:?}: {e}")))?;
                fields.insert(name, text);
            }
            other => return Err(bad(format!("unknown form part {other:?}; expected jar, args and executors"))),
        }
    }
    Ok((file, fields))
}

/// A binary over the limit: 413, naming the key that sets it.
fn too_large(limit: u64) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload exceeds {limit} bytes (gearpump.services.upload-limit-bytes)"),
    )
}

/// Reading a form failed: over the body limit (413), or a malformed body (400).
fn form_failed(part: &str, error: &axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        bad(format!("malformed multipart body (reading {part}): {}", error.body_text()))
    }
}

/// The form of a route that takes a binary: refused before any of it is read where binaries
/// cannot run, else read (the binary streamed to a temporary file).
async fn binary_form(
    b: &Arc<dyn Backend>,
    route: &str,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    limits: RestLimits,
) -> Result<(Option<Upload>, HashMap<String, String>), ApiError> {
    if !b.takes_binaries() {
        return Err(bad(crate::backend::EMBEDDED_ONLY));
    }
    let form = form.map_err(|e| bad(format!("{route} takes a multipart/form-data body: {e}")))?;
    read_form(form, limits.upload).await
}

async fn submit_app(
    State(b): Shared,
    caller: Option<axum::Extension<Caller>>,
    axum::Extension(limits): axum::Extension<RestLimits>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Api {
    let (file, fields) = binary_form(&b, "submitapp", form, limits).await?;
    if fields.contains_key("configfile") || fields.contains_key("conf") {
        return Err(bad("a config file part is not supported: set application config in the binary, \
             or cluster config in gear.conf"));
    }
    let file = file.ok_or_else(|| bad("submitapp needs the application binary in a part named jar"))?;
    if file.is_empty() {
        return Err(bad("the application binary is empty"));
    }
    let args: Vec<String> =
        fields.get("args").map(|a| a.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    let executors = match fields.get("executors").map(|e| e.trim()) {
        None | Some("") => 0,
        Some(e) => e.parse().map_err(|_| bad(format!("executors must be a non-negative integer, not {e:?}")))?,
    };
    let user = caller.and_then(|axum::Extension(c)| c.user);
    let id = b.submit_binary(file, args, executors, user).await?;
    Ok(axum::Json(json!({"success": true, "appId": id.0})))
}

async fn upload_jar(
    State(b): Shared,
    axum::Extension(limits): axum::Extension<RestLimits>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Api {
    let (file, _) = binary_form(&b, "uploadjar", form, limits).await?;
    let file = file.ok_or_else(|| bad("uploadjar needs the binary in a part named jar"))?;
    let name = file.name().to_string();
    let id = b.upload(file).await?;
    Ok(axum::Json(json!({"name": name, "filePath": id})))
}

async fn submit_dag(
    State(b): Shared,
    caller: Option<axum::Extension<Caller>>,
    body: Result<axum::Json<DagRequest>, axum::extract::rejection::JsonRejection>,
) -> Api {
    let axum::Json(dag) = body.map_err(|e| {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { e.status() } else { StatusCode::BAD_REQUEST };
        let limit = if status == StatusCode::PAYLOAD_TOO_LARGE { " (gearpump.services.body-limit-bytes)" } else { "" };
        ApiError(status, format!("submitdag takes a JSON DAG: {}{limit}", e.body_text()))
    })?;
    let user = caller.and_then(|axum::Extension(c)| c.user);
    let id = b.submit_dag(dag, user).await?;
    Ok(axum::Json(json!({"success": true, "appId": id.0})))
}

async fn live_url(headers: axum::http::HeaderMap) -> Api {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:8090");
    Ok(axum::Json(json!({ "url": format!("http://{host}/api/v1.0/events") })))
}

/// Server-sent events: a `tick` every second with the applications' statuses, so pages
/// refresh what they show without reloading.
async fn events(State(b): Shared) -> impl IntoResponse {
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(1)));
    let stream = ticks.then(move |_| {
        let b = b.clone();
        async move {
            let data = match b.snapshot().await {
                Ok(s) => json!({
                    "time": gearpump_core::Timestamp::now().0,
                    "apps": s.apps.iter().map(|a| json!({"appId": a.info.id.0, "status": a.info.status})).collect::<Vec<_>>(),
                }),
                Err(e) => json!({"error": e.to_string()}),
            };
            Ok::<_, std::convert::Infallible>(Event::default().event("tick").data(data.to_string()))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn prometheus(State(b): Shared) -> Result<Response, ApiError> {
    let points = b.metrics(String::new(), ReadOption::Latest).await?;
    let text = gearpump_metrics::exporters::prometheus(&points);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
