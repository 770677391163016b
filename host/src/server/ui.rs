//! The operator's dashboard at `/ui`: one page (`host/ui/`, bundled at build time from its
//! sources with preact, dagre and uPlot; `host/ui/dist/` is what `npm run build` makes of them)
//! that reads only the admin API: `/admin/status` for the graph, rates, lag, errors and versions,
//! `/admin/tap/{topic}` (as server-sent events) for the tap, `/admin/dlq/{topic}` for the
//! dead letters, and the deploy, roll-back and redrive calls. It works with no network.
//!
//! The page and its files are the admin API's: with an admin token, a request without it is
//! answered 401 (the page then is a sign-in form). Signing in (`POST /ui/login`, the token in a
//! form) sets an `HttpOnly`, `SameSite=Strict` cookie holding the token's SHA-256, which the
//! admin routes take in place of the `Authorization` header; a page of another site cannot send
//! it, nor read it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{HttpState, admin_authorized, error, percent_decode};

/// The dashboard's cookie.
pub(super) const COOKIE: &str = "flowgate-admin";

const INDEX: &str = include_str!("../../ui/index.html");
const LOGIN: &str = include_str!("../../ui/login.html");
const APP_JS: &str = include_str!("../../ui/dist/app.js");
const APP_CSS: &str = include_str!("../../ui/dist/app.css");

/// The page may load its own files and call its own server, nothing else.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// A page or file of the dashboard (the embedded ones are served without a copy).
fn page(status: StatusCode, kind: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.into(),
    )
        .into_response()
}

/// The sign-in form, answered 401, with `message` (empty, or why the last try failed).
fn sign_in(message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut r = page(
        StatusCode::UNAUTHORIZED,
        "text/html; charset=utf-8",
        LOGIN.replace("{{message}}", &escaped),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `GET /ui`: the dashboard, or the sign-in form (401) without the admin token.
pub(super) async fn ui_page(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if !admin_authorized(&state, &headers) {
        return sign_in("");
    }
    page(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

/// `GET /ui/<file>`: the bundle's script and style sheet.
pub(super) async fn ui_file(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    if !admin_authorized(&state, &headers) {
        return super::unauthorized();
    }
    match file.as_str() {
        "app.js" => page(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        "app.css" => page(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no file `{file}` in the dashboard (it has app.js and app.css)"),
        ),
    }
}

/// `POST /ui/login` (a form with `token`): sets the dashboard's cookie and goes to `/ui`, or
/// shows the form again (401) naming the failure.
pub(super) async fn ui_login(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: String,
) -> Response {
    let token = body
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
        .unwrap_or_default();
    let right = match &state.admin_token {
        Some(want) => bool::from(token.as_bytes().ct_eq(want.as_bytes())),
        None => true,
    };
    if !right {
        tracing::warn!(from = %peer, "dashboard sign-in refused: wrong admin token");
        return sign_in(
            "That is not the admin token. It is the value of the variable [http] admin-token-env (or token-env) names.",
        );
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui")]).into_response();
    if let Some(cookie) = &state.admin_cookie {
        let value = format!("{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/");
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&value).expect("hex is a cookie value"),
        );
    }
    tracing::info!(from = %peer, "dashboard signed in");
    r
}
