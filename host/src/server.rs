//! The HTTP server: ingest (`POST /topics/{topic}/events`), `GET /metrics` (Prometheus) and
//! `GET /health`, and the admin endpoints: `POST /admin/stages/{stage}/plugin` (body: the
//! component) deploys a plugin version, `POST /admin/stages/{stage}/rollback` deploys again the
//! one it replaced, `POST /admin/reload` re-reads the pipeline file and applies it, `GET
//! /admin/status` shows each stage's counts, lag and versions, `GET /admin/tap/{topic}` streams
//! events as they are appended, `GET /admin/dlq/{topic}` and `POST /admin/dlq/{topic}/replay`
//! list and redrive dead letters (docs/admin-api.md has them all); and the dashboard at `/ui`
//! (`ui`), which reads only those.
//!
//! Ingest and admin have tokens of their own (`ingest-token-env`, `admin-token-env`; `token-env`
//! sets both), compared in constant time. The admin API can replace plugins, so it is never open
//! to other machines without a token: a `listen` address beyond loopback with no admin token is
//! refused at start unless `admin = false` turns the admin routes off. Every deploy and reload
//! is logged with the address it came from.
//!
//! Ingest takes a JSON event, a JSON array of events, NDJSON (`Content-Type:
//! application/x-ndjson`), or the Confluent REST Proxy v2 produce body
//! (`{"records":[{"key":..,"value":..}]}`); events have the form of docs/events.md. It answers
//! only once the events are durable. Bounded: over `max-body` → 413; more than `max-inflight`
//! bytes of requests waiting for the disk → 503; a reader of the topic more than `max-lag`
//! events behind → 429 (both with `Retry-After`); a malformed body → 400 naming the problem; a
//! record over the pipeline's `[limits]` → 413 naming the record and the limit, and nothing of
//! the request is appended.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::{HttpConfig, SinkKind, SourceKind};
use crate::event::RecordLimits;
use crate::event::ingest::parse_body;
use crate::flow::{StageStats, with_sources};
use crate::log::EventLog;
use crate::pipeline::Running;

mod ui;
use ui::{ui_file, ui_login, ui_page};

/// What the server serves.
pub struct HttpState {
    log: Arc<dyn EventLog>,
    /// The pipeline: the topics open to ingest are looked up in what it publishes (no lock),
    /// so an edit that adds an HTTP source is served at once.
    running: Arc<Running>,
    /// The bearer token ingest requests must send, if any.
    ingest_token: Option<String>,
    /// The bearer token admin requests must send, if any.
    admin_token: Option<String>,
    /// The dashboard's cookie for the admin token (its SHA-256, in hex): what a browser sends
    /// once it has signed in at `/ui`, in place of the header.
    admin_cookie: Option<String>,
    /// Whether the `/admin` routes are served.
    admin: bool,
    max_body: usize,
    max_lag: u64,
    /// The pipeline's `[limits]`, each record of a request is held to.
    limits: RecordLimits,
    inflight: Arc<Semaphore>,
    spread: AtomicU64,
    metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("topics", &self.running.ingest_topics())
            .finish_non_exhaustive()
    }
}

/// Why the HTTP server does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The pipeline has no `[http]` section.
    #[error("the pipeline has no [http] section; add one with listen = \"127.0.0.1:8080\"")]
    NoSection,
    /// A token's environment variable is not set, or empty.
    #[error(
        "[http] {key} = {var:?}, but ${var} is not set or empty; export it with the bearer token {who} must send"
    )]
    TokenUnset {
        /// The key naming the variable.
        key: &'static str,
        /// The variable.
        var: String,
        /// Who sends the token.
        who: &'static str,
    },
    /// The `listen` address does not resolve.
    #[error(
        "[http] listen = {listen:?} is not an address ({source}); write host:port, e.g. \"127.0.0.1:8080\""
    )]
    Listen {
        /// The address as written.
        listen: String,
        /// Why it does not resolve.
        source: std::io::Error,
    },
    /// The server would listen beyond loopback with an admin API that takes no token.
    #[error(
        "[http] listen = {listen:?} ({addr}) is reachable from other machines, and the admin API, which replaces plugins, has no token: set admin-token-env = \"<VAR>\" in [http] and export VAR with a secret, or set admin = false in [http] to serve no /admin routes, or listen on 127.0.0.1"
    )]
    OpenAdmin {
        /// The address as written.
        listen: String,
        /// The address it resolves to that is not loopback.
        addr: SocketAddr,
    },
}

/// The token in `$var`, if `var` is given; an unset or empty variable is an error.
fn token_from(
    key: &'static str,
    var: Option<&String>,
    who: &'static str,
) -> Result<Option<String>, HttpError> {
    let Some(var) = var else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(t) if !t.is_empty() => Ok(Some(t)),
        _ => Err(HttpError::TokenUnset {
            key,
            var: var.clone(),
            who,
        }),
    }
}

/// The first address `listen` resolves to that is not loopback, if any.
fn beyond_loopback(listen: &str) -> Result<Option<SocketAddr>, HttpError> {
    let addrs = listen
        .to_socket_addrs()
        .map_err(|source| HttpError::Listen {
            listen: listen.to_owned(),
            source,
        })?;
    Ok(addrs.into_iter().find(|a| !a.ip().is_loopback()))
}

/// The tokens of an `[http]` section.
struct Tokens {
    ingest: Option<String>,
    admin: Option<String>,
}

/// Reads the tokens of `http` and refuses an admin API without a token on an address beyond
/// loopback; `warn`: log that an ingest without a token is reachable beyond loopback.
fn tokens(http: &HttpConfig, warn: bool) -> Result<Tokens, HttpError> {
    let (admin_key, admin_var) = match &http.admin_token_env {
        Some(v) => ("admin-token-env", Some(v)),
        None => ("token-env", http.token_env.as_ref()),
    };
    let (ingest_key, ingest_var) = match &http.ingest_token_env {
        Some(v) => ("ingest-token-env", Some(v)),
        None => ("token-env", http.token_env.as_ref()),
    };
    let admin = token_from(admin_key, admin_var, "admin clients")?;
    let ingest = token_from(ingest_key, ingest_var, "ingest clients")?;
    if let Some(addr) = beyond_loopback(&http.listen)? {
        if http.admin && admin.is_none() {
            return Err(HttpError::OpenAdmin {
                listen: http.listen.clone(),
                addr,
            });
        }
        if warn && ingest.is_none() {
            tracing::warn!(listen = %http.listen, reachable_at = %addr, "ingest takes no token and is reachable from other machines: anyone who reaches it can append events; set ingest-token-env in [http]");
        }
    }
    Ok(Tokens { ingest, admin })
}

/// Checks an `[http]` section before anything starts: its token variables are set, and an
/// admin API reachable beyond loopback has a token.
pub fn check(http: &HttpConfig) -> Result<(), HttpError> {
    tokens(http, false).map(|_| ())
}

impl HttpState {
    /// The server's state for a running pipeline (which must have an `[http]` section).
    /// Refuses an admin API without a token on an address beyond loopback.
    pub fn new(
        running: Arc<Running>,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Arc<HttpState>, HttpError> {
        let config = running.config();
        let http = config.http.clone().ok_or(HttpError::NoSection)?;
        let tokens = tokens(&http, true)?;
        Ok(Arc::new(HttpState {
            log: running.log().clone(),
            running: running.clone(),
            ingest_token: tokens.ingest,
            admin_cookie: tokens
                .admin
                .as_deref()
                .map(|t| crate::runtime::hash_of(t.as_bytes())),
            admin_token: tokens.admin,
            admin: http.admin,
            max_body: http.max_body,
            max_lag: http.max_lag,
            limits: config.limits,
            inflight: Arc::new(Semaphore::new(http.max_inflight)),
            spread: AtomicU64::new(0),
            metrics,
        }))
    }

    /// How far the slowest of `readers` is behind in `topic`.
    fn lag(&self, topic: &str, readers: &[Arc<StageStats>]) -> u64 {
        let Ok(info) = self.log.describe(topic) else {
            return 0;
        };
        readers
            .iter()
            .map(|s| {
                // Partitions another process serves (a shared log) are its to hold back.
                info.partitions
                    .iter()
                    .zip(&s.positions)
                    .zip(&s.served)
                    .filter(|(_, served)| served.load(Ordering::Relaxed))
                    .map(|((p, pos), _)| p.end_offset.saturating_sub(pos.load(Ordering::Relaxed)))
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    }
}

/// The router.
/// The router. Its admin handlers read the client's address: serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, as [`serve`] does.
pub fn router(state: Arc<HttpState>) -> Router {
    let router = Router::new()
        .route("/topics/{topic}/events", post(ingest))
        .route("/metrics", get(metrics))
        .route("/health", get(health));
    let router = if state.admin {
        router
            .route("/admin/stages/{stage}/plugin", post(admin_deploy))
            .route("/admin/stages/{stage}/rollback", post(admin_roll_back))
            .route("/ui", get(ui_page))
            .route("/ui/{file}", get(ui_file))
            .route("/ui/login", post(ui_login))
            .route("/admin/reload", post(admin_reload))
            .route("/admin/tap/{topic}", get(admin_tap))
            .route("/admin/dlq/{topic}", get(admin_dlq_list))
            .route("/admin/dlq/{topic}/replay", post(admin_dlq_redrive))
            .route("/admin/status", get(admin_status))
    } else {
        router
            .route("/admin/{*rest}", axum::routing::any(admin_off))
            .route("/ui", axum::routing::any(admin_off))
            .route("/ui/{*rest}", axum::routing::any(admin_off))
    };
    router.with_state(state)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (status, axum::Json(json!({ "error": message.into() }))).into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Whether the request carries `token` (any request does when there is none).
fn authorized(token: Option<&String>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// Whether an admin request carries the admin token: in the `Authorization` header, or in the
/// dashboard's cookie.
fn admin_authorized(state: &HttpState, headers: &HeaderMap) -> bool {
    if authorized(state.admin_token.as_ref(), headers) {
        return true;
    }
    let Some(want) = &state.admin_cookie else {
        return false;
    };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == ui::COOKIE)
        .any(|(_, given)| bool::from(given.as_bytes().ct_eq(want.as_bytes())))
}

async fn ingest(
    State(state): State<Arc<HttpState>>,
    Path(topic): Path<String>,
    request: Request,
) -> Response {
    let result = ingest_inner(&state, &topic, request).await;
    let status = match &result {
        Ok(r) | Err(r) => r.status(),
    };
    metrics::counter!("flowgate_ingest_requests_total", "status" => status.as_u16().to_string())
        .increment(1);
    match result {
        Ok(r) | Err(r) => r,
    }
}

async fn ingest_inner(
    state: &HttpState,
    topic: &str,
    request: Request,
) -> Result<Response, Response> {
    if !authorized(state.ingest_token.as_ref(), request.headers()) {
        return Err(unauthorized());
    }
    let Some(route) = state.running.ingest_route(topic) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "no HTTP source appends to topic `{topic}`; topics open to ingest: {}",
                state.running.ingest_topics().join(", ")
            ),
        ));
    };
    let (target, stats) = (&route.target, &route.stats);
    if state.running.stopping() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is stopping",
        ));
    }
    let ndjson_body = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonlines"));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is over the {} byte limit ([http] max-body); send fewer events per request",
                state.max_body
            ),
        )
    };
    if declared.is_some_and(|n| n > state.max_body) {
        return Err(too_large());
    }
    let permits = declared.unwrap_or(state.max_body).clamp(1, state.max_body) as u32;
    let Ok(_permit) = state.inflight.clone().try_acquire_many_owned(permits) else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ingest is full: too many bytes of requests are waiting for the disk; retry later",
        ));
    };
    let body: Body = request.into_body();
    let bytes = axum::body::to_bytes(body, state.max_body)
        .await
        .map_err(|_| too_large())?;
    let events = parse_body(ndjson_body, &bytes).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    if events.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "the body holds no events"));
    }
    // The whole request or nothing: a record over a limit refuses it before anything is appended.
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find_map(|(i, e)| state.limits.check_event(e).err().map(|e| (i, e)))
    {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "record {i} of the request (counting from 0): {e}; nothing of the request was appended. Send smaller records, or raise {} in the pipeline file's [limits]",
                e.key()
            ),
        ));
    }
    let lag = state.lag(topic, &route.readers);
    if lag > state.max_lag {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the stages reading `{topic}` are {lag} events behind (max-lag {}); retry later",
                state.max_lag
            ),
        ));
    }
    let spread = state
        .spread
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    let pending = crate::connect::submit_events(&state.log, target, &events, spread)
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut offsets = BTreeMap::new();
    for (p, pending) in pending {
        let ack = pending.await.map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("not stored: {e}"),
            )
        })?;
        offsets.insert(p, ack.base_offset);
    }
    // Each event's partition and offset, in request order: written as text, not as a JSON tree
    // (a request of 1,000 events answers 1,000 of them).
    let mut next = offsets.clone();
    let mut answer = String::with_capacity(32 + events.len() * 32);
    let _ = write!(answer, "{{\"count\":{},\"offsets\":[", events.len());
    for (i, e) in events.iter().enumerate() {
        let p = crate::flow::producer::partition_for(
            e.key.as_deref(),
            target.partitions,
            spread + i as u64,
        );
        let o = next.get_mut(&p).expect("partition appended");
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(answer, "{sep}{{\"partition\":{p},\"offset\":{o}}}");
        *o += 1;
    }
    answer.push_str("]}");
    stats
        .events
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    metrics::counter!("flowgate_ingest_events_total", "topic" => topic.to_owned())
        .increment(events.len() as u64);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer,
    )
        .into_response())
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    metrics::gauge!("flowgate_log_syncs").set(crate::flow::total_syncs(&*state.log) as f64);
    match &state.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "metrics are off"),
    }
}

async fn health(State(state): State<Arc<HttpState>>) -> Response {
    if state.running.stopping() {
        error(StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

fn unauthorized() -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (send Authorization: Bearer <token>)",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn admin_off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "the admin API is off ([http] admin = false)",
    )
}

/// The answer to an admin request without the admin token (logged with its address), if it
/// is one.
fn admin_refusal(
    state: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
    what: &str,
) -> Option<Response> {
    if admin_authorized(state, headers) {
        None
    } else {
        tracing::warn!(from = %peer, request = what, "admin request refused: missing or wrong admin token");
        Some(unauthorized())
    }
}

async fn admin_deploy(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    request: Request,
) -> Response {
    if let Some(r) = admin_refusal(&state, request.headers(), peer, "deploy") {
        return r;
    }
    let requested_at = std::time::Instant::now();
    let Some(slot) = state.running.slot(&stage) else {
        let stages: Vec<String> = state
            .running
            .slots()
            .iter()
            .map(|s| s.stage.clone())
            .collect();
        return error(
            StatusCode::NOT_FOUND,
            format!("no stage `{stage}`; stages: {}", stages.join(", ")),
        );
    };
    let bytes = match axum::body::to_bytes(request.into_body(), 1 << 30).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let running = state.running.clone();
    let size = bytes.len();
    let result = tokio::task::spawn_blocking(move || {
        running.deploy(&slot, format!("deploy from {peer}"), &bytes, requested_at)
    })
    .await;
    match result {
        Ok(Ok(d)) => {
            tracing::info!(stage = %stage, from = %peer, version = d.version, hash = %d.hash, changed = d.changed, bytes = size, "plugin deployed through the admin API");
            (StatusCode::OK, axum::Json(d)).into_response()
        }
        Ok(Err(reason)) => {
            tracing::warn!(stage = %stage, from = %peer, bytes = size, "plugin deploy through the admin API refused: {reason}");
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("refused; the live version keeps serving: {reason}"),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /admin/stages/<stage>/rollback`: deploys again the version the live one replaced.
async fn admin_roll_back(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin_refusal(&state, &headers, peer, "roll-back") {
        return r;
    }
    let requested_at = std::time::Instant::now();
    let Some(slot) = state.running.slot(&stage) else {
        return error(StatusCode::NOT_FOUND, format!("no stage `{stage}`"));
    };
    let running = state.running.clone();
    let result = tokio::task::spawn_blocking(move || {
        running.roll_back(&slot, format!("roll-back from {peer}"), requested_at)
    })
    .await;
    match result {
        Ok(Some(Ok(d))) => {
            tracing::info!(stage = %stage, from = %peer, version = d.version, hash = %d.hash, "plugin rolled back through the admin API");
            (StatusCode::OK, axum::Json(d)).into_response()
        }
        Ok(Some(Err(reason))) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refused; the live version keeps serving: {reason}"),
        ),
        Ok(None) => error(
            StatusCode::CONFLICT,
            format!(
                "stage `{stage}` has run one version only since the start: there is none to roll back to"
            ),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn admin_reload(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin_refusal(&state, &headers, peer, "reload") {
        return r;
    }
    let running = state.running.clone();
    match tokio::task::spawn_blocking(move || crate::pipeline::reload(&running)).await {
        Ok(Ok(changes)) => {
            tracing::info!(from = %peer, changes = ?changes, "pipeline reloaded through the admin API");
            (StatusCode::OK, axum::Json(json!({ "changes": changes }))).into_response()
        }
        Ok(Err(e)) => {
            let reason = with_sources(&e);
            tracing::warn!(from = %peer, "pipeline reload through the admin API refused: {reason}");
            error(StatusCode::UNPROCESSABLE_ENTITY, reason)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The dead-letter filter of a query string: `stage`, `since` (ms since the epoch), `kind`;
/// and `limit`. An unknown parameter or a bad value is an error naming it.
fn dlq_query(uri: &axum::http::Uri) -> Result<(crate::pipeline::dlq::Filter, usize), String> {
    let mut filter = crate::pipeline::dlq::Filter::default();
    let mut limit = 1_000;
    for (k, v) in query_pairs(uri) {
        match k.as_str() {
            "stage" => filter.stage = Some(v),
            "kind" => filter.kind = Some(v),
            "at" => {
                let mut set = std::collections::BTreeSet::new();
                for item in v.split(',').filter(|i| !i.is_empty()) {
                    let parsed = item
                        .split_once(':')
                        .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
                    set.insert(
                        parsed.ok_or_else(|| {
                            format!("at={v}: `{item}` is not <partition>:<offset>")
                        })?,
                    );
                }
                filter.at = Some(set);
            }
            "since" => {
                filter.since = Some(
                    v.parse()
                        .map_err(|_| format!("since={v} is not a time in ms since the epoch"))?,
                )
            }
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| format!("limit={v} is not a number"))?
            }
            _ => {
                return Err(format!(
                    "unknown parameter `{k}` (known: stage, since, kind, at, limit)"
                ));
            }
        }
    }
    Ok((filter, limit))
}

/// The `name=value` pairs of a query string, values decoded.
fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect()
}

/// `%XX` and `+` of a query value decoded (bad escapes are kept as they are).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (_, Some(c)) => {
                out.push(c);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /admin/tap/<topic>?sample=N&limit=M`: the events appended to the topic from now on, as
/// NDJSON while they come ([`crate::pipeline::tap`]).
async fn admin_tap(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    if let Some(r) = admin_refusal(&state, &headers, peer, "tap") {
        return r;
    }
    let mut options = crate::pipeline::tap::TapOptions {
        sample: 1,
        limit: None,
    };
    for (k, v) in query_pairs(&uri) {
        let n = v.parse::<u64>();
        match (k.as_str(), n) {
            ("sample", Ok(n)) if n >= 1 => options.sample = n,
            ("limit", Ok(n)) => options.limit = Some(n),
            ("sample" | "limit", _) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{k}={v} is not a number (sample: 1 or more)"),
                );
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter `{k}` (known: sample, limit)"),
                );
            }
        }
    }
    let rx = match state.running.tap(&topic, options) {
        Ok(rx) => rx,
        Err(e @ crate::log::LogError::NoSuchTopic { .. }) => {
            return error(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // A browser's EventSource asks for server-sent events: each line is one `data:` message.
    let events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    tracing::info!(from = %peer, topic = %topic, sample = options.sample, events, "tap started");
    let lines = futures_util::stream::unfold(rx, move |mut rx| async move {
        rx.recv().await.map(|line| {
            let line = if events {
                format!("data: {}\n\n", line.trim_end())
            } else {
                line
            };
            (Ok::<_, std::convert::Infallible>(line), rx)
        })
    });
    let kind = if events {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}

/// Runs `f` (a dead-letter call) on the filter of the query, answering with its JSON.
async fn dlq_call(
    state: Arc<HttpState>,
    headers: HeaderMap,
    peer: SocketAddr,
    uri: axum::http::Uri,
    what: &str,
    f: impl FnOnce(&Running, crate::pipeline::dlq::Filter, usize) -> Result<Value, crate::log::LogError>
    + Send
    + 'static,
) -> Response {
    if let Some(r) = admin_refusal(&state, &headers, peer, what) {
        return r;
    }
    let (filter, limit) = match dlq_query(&uri) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let running = state.running.clone();
    match tokio::task::spawn_blocking(move || f(&running, filter, limit)).await {
        Ok(Ok(done)) => (StatusCode::OK, axum::Json(done)).into_response(),
        Ok(Err(e @ crate::log::LogError::NoSuchTopic { .. })) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /admin/dlq/<topic>`: the dead letters the query's filter takes.
async fn admin_dlq_list(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    dlq_call(
        state,
        headers,
        peer,
        uri,
        "dlq list",
        move |r, filter, limit| {
            Ok(json!({ "dead_letters": r.dead_letters(&topic, &filter, limit)? }))
        },
    )
    .await
}

/// `POST /admin/dlq/<topic>/replay`: sends the dead letters the filter takes back to the
/// stages that failed them.
async fn admin_dlq_redrive(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    dlq_call(state, headers, peer, uri, "dlq redrive", move |r, filter, _| {
        let done = r.redrive(&topic, &filter)?;
        tracing::info!(from = %peer, result = %done, "dead letters redriven through the admin API");
        Ok(done)
    })
    .await
}

/// Percentile of durations, in ms.
fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> Option<f64> {
    (!sorted.is_empty())
        .then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0)
}

async fn admin_status(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin_refusal(&state, &headers, peer, "status") {
        return r;
    }
    let config = state.running.config();
    let stages: Vec<Value> = state
        .running
        .slots()
        .iter()
        .map(|slot| {
            let live = slot.current();
            let mut pauses = slot.swap_pauses();
            pauses.sort_unstable();
            let settings = config.stages.iter().find(|s| s.name == slot.stage);
            let input = settings.map(|s| s.input.clone()).unwrap_or_default();
            // Where its events go: the output topics, and those of failures and late events.
            let outputs: Vec<&str> = settings.map(|s| s.output.topics()).unwrap_or_default();
            let dead_letter_topic = settings
                .filter(|s| matches!(s.on_error, crate::config::OnError::DeadLetter | crate::config::OnError::Retry))
                .map(|s| s.dead_letter_topic.as_str());
            let late_topic = settings.and_then(|s| s.late_output.as_deref());
            let ends: Vec<u64> = state
                .log
                .describe(&input)
                .map(|i| i.partitions.iter().map(|p| p.end_offset).collect())
                .unwrap_or_default();
            let (partitions, counts) = match state.running.stage_stats(&slot.stage) {
                Some(st) => {
                    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                    // Only the partitions this process serves (all, unless the log is shared by
                    // several processes).
                    let parts: Vec<Value> = st
                        .positions
                        .iter()
                        .enumerate()
                        .filter(|(p, _)| st.served[*p].load(Ordering::Relaxed))
                        .map(|(p, pos)| {
                            let pos = get(pos);
                            let end = ends.get(p).copied().unwrap_or(pos);
                            json!({"partition": p, "position": pos, "end": end, "lag": end.saturating_sub(pos)})
                        })
                        .collect();
                    let by_kind = st.errors_by_kind.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let counts = json!({
                        "in": get(&st.events_in), "out": get(&st.events_out), "errors": get(&st.errors),
                        "errors_by_kind": by_kind,
                        "dead_letters": get(&st.dead_letters), "skipped": get(&st.skipped), "pauses": get(&st.pauses),
                        "retries": get(&st.retries), "windows_fired": get(&st.windows_fired), "late": get(&st.late),
                    });
                    (parts, counts)
                }
                None => (Vec::new(), Value::Null),
            };
            json!({
                "stage": slot.stage,
                "input": input,
                "outputs": outputs,
                "dead_letter_topic": dead_letter_topic,
                "late_output": late_topic,
                "partitions": partitions,
                "events": counts,
                "live": {"version": live.id, "hash": live.plugin.info().hash, "source": live.source},
                "swaps": pauses.len(),
                "swap_pause_ms": {"p50": percentile_ms(&pauses, 0.5), "p99": percentile_ms(&pauses, 0.99), "max": pauses.last().map(|d| d.as_secs_f64() * 1000.0)},
                "versions": slot.history(),
            })
        })
        .collect();
    let sources: Vec<Value> = config
        .sources
        .values()
        .map(|s| {
            let kind = match &s.kind {
                SourceKind::File { .. } => "file",
                SourceKind::Stdin => "stdin",
                SourceKind::Generator { .. } => "generator",
                SourceKind::Http => "http",
                SourceKind::Kafka(_) => "kafka",
                SourceKind::PostgresCdc(_) => "postgres-cdc",
            };
            let mut v = json!({"source": s.name, "type": kind, "topic": s.topic});
            if let Some(st) = state.running.source_stats(&s.name) {
                v["events"] = json!(st.events.load(Ordering::Relaxed));
                v["rejected"] = json!(st.rejected.load(Ordering::Relaxed));
                let lag = st.lag.lock().expect("not poisoned");
                if matches!(s.kind, SourceKind::Kafka(_)) {
                    v["lag"] = json!(*lag);
                }
                v["down"] = json!(*st.down.lock().expect("not poisoned"));
            }
            v
        })
        .collect();
    let sinks: Vec<Value> = config
        .sinks
        .values()
        .map(|s| {
            let kind = match &s.kind {
                SinkKind::File { .. } => "file",
                SinkKind::Stdout => "stdout",
                SinkKind::Kafka(_) => "kafka",
                SinkKind::Postgres(_) => "postgres",
                SinkKind::Mongo(_) => "mongodb",
            };
            let mut v = json!({"sink": s.name, "type": kind, "input": s.input});
            if let Some(st) = state.running.sink_stats(&s.name) {
                v["events"] = json!(st.events.load(Ordering::Relaxed));
                v["dead_letters"] = json!(st.dead_letters.load(Ordering::Relaxed));
                v["down"] = json!(*st.down.lock().expect("not poisoned"));
            }
            v
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(
            json!({"pipeline": config.name, "file": config.path, "sources": sources, "stages": stages, "sinks": sinks, "processes": state.running.processes()}),
        ),
    )
        .into_response()
}
