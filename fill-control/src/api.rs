//! The control plane's HTTP API (docs/control-api.md): JSON over HTTP/1.1, bearer tokens,
//! every write authorised here against the caller (`auth::Caller`), what a caller may not
//! see answered as if it did not exist (404). Bodies are at most 1 MiB and must be JSON of
//! the documented shape; anything else is a 4xx naming what is wrong.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::auth::{self, AuthError, AuthErrorOr, Caller};
use crate::ledger::Refusal;
use crate::{invite, upgrade, views, waiting, workflow};

/// The most a request body may weigh.
pub const MAX_BODY: usize = 1 << 20;
/// How long a request head may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::app::{App, wall_clock};

type Answer = Response<Full<Bytes>>;

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &serde_json::json!({ "error": message }))
}

fn refusal(r: Refusal) -> Answer {
    match r {
        Refusal::NotFound(m) => error(StatusCode::NOT_FOUND, &m),
        Refusal::Forbidden(m) => error(StatusCode::FORBIDDEN, &m),
        Refusal::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, &m),
        Refusal::Conflict(m) => error(StatusCode::CONFLICT, &m),
        Refusal::Failed(e) => {
            tracing::error!("request failed: {e:#}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)")
        }
    }
}

/// Reads a JSON body of type `T` within [`MAX_BODY`]; the answer to send when it is not one.
async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Answer> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        });
    if !is_json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as Content-Type: application/json",
        ));
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {MAX_BODY} bytes, or was cut"),
            ));
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad JSON body: {e}")))
}

/// Reads a body of any type within `limit` bytes.
async fn raw_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Answer> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over {limit} bytes"),
        ));
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over {limit} bytes, or was cut"),
        )),
    }
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
}

async fn caller(app: &App, req: &Request<Incoming>) -> Result<Caller, Answer> {
    let token = bearer(req);
    auth::authenticate(&app.db, token.as_deref(), (app.clock)())
        .await
        .map_err(|e| match e {
            AuthErrorOr::Auth(a @ (AuthError::Missing | AuthError::Refused)) => {
                let mut r = error(StatusCode::UNAUTHORIZED, &a.to_string());
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            AuthErrorOr::Db(e) => refusal(Refusal::Failed(e)),
        })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    code: String,
    password: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

/// Answers one request, counted in the metrics.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Answer {
    let started = std::time::Instant::now();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let route = crate::metrics::route(&method, &parts);
    let answer = route_request(&app, req, &method, &parts).await;
    let m = &app.metrics;
    m.requests
        .get_or_create(&crate::metrics::RequestLabels {
            route,
            status: answer.status().as_u16(),
        })
        .inc();
    m.latency
        .get_or_create(&crate::metrics::RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    answer
}

/// `GET /metrics`, for the holder of the metrics token.
async fn metrics(app: &App, req: &Request<Incoming>, now: i64) -> Answer {
    let Some(want) = &app.metrics_token else {
        return error(
            StatusCode::NOT_FOUND,
            "metrics are off: set metrics_token in the config",
        );
    };
    let given = bearer(req).unwrap_or_default();
    // BLAKE3 hashes compare in constant time.
    if blake3::hash(given.as_bytes()) != blake3::hash(want.as_bytes()) {
        let mut r = error(StatusCode::UNAUTHORIZED, "the metrics token is wrong");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    match app.metrics.render(&app.db, now, app.silence).await {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(e) => refusal(e),
    }
}

async fn route_request(
    app: &Arc<App>,
    req: Request<Incoming>,
    method: &Method,
    parts: &[&str],
) -> Answer {
    let app = app.clone();
    let now = (app.clock)();
    match (method.clone(), parts) {
        (Method::GET, ["healthz"]) => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        (Method::GET, ["metrics"]) => metrics(&app, &req, now).await,
        (Method::POST, ["api", "login"]) => {
            let l: Login = match body(req).await {
                Ok(l) => l,
                Err(a) => return a,
            };
            match auth::login(&app.db, &l.email, &l.password, now).await {
                Ok(auth::Login::Token(token)) => json(
                    StatusCode::OK,
                    &serde_json::json!({"token": token, "expires": now + auth::USER_TOKEN_SECS}),
                ),
                Ok(auth::Login::Wrong) => {
                    error(StatusCode::UNAUTHORIZED, "wrong email or password")
                }
                Ok(auth::Login::Throttled { retry_after }) => {
                    let mut r = error(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!(
                            "too many failed sign-ins for this email: try again in {}",
                            fill_core::duration::human_secs(retry_after)
                        ),
                    );
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(retry_after.max(1) as u64),
                    );
                    r
                }
                Err(e) => refusal(Refusal::Failed(e)),
            }
        }
        (Method::POST, ["api", "logout"]) => {
            let Some(token) = bearer(&req) else {
                return error(StatusCode::UNAUTHORIZED, "no bearer token");
            };
            match auth::revoke(&app.db, &token, now).await {
                Ok(true) => json(StatusCode::OK, &serde_json::json!({"revoked": true})),
                Ok(false) => error(StatusCode::UNAUTHORIZED, "the token is unknown or revoked"),
                Err(e) => refusal(Refusal::Failed(e)),
            }
        }
        (Method::POST, ["api", "invitations", "accept"]) => {
            let a: Accept = match body(req).await {
                Ok(a) => a,
                Err(a) => return a,
            };
            invite::accept(&app.db, &a.code, &a.password, now)
                .await
                .map_or_else(refusal, |ok| json(StatusCode::OK, &ok))
        }
        (_, ["api", ..]) => api(&app, req, method, &parts[1..], now).await,
        _ if crate::portal::is_portal(parts) => {
            crate::portal::handle(&app, req, method, parts, now).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such path (see docs/control-api.md)",
        ),
    }
}

/// The authenticated part of the API.
async fn api(
    app: &App,
    req: Request<Incoming>,
    method: &Method,
    parts: &[&str],
    now: i64,
) -> Answer {
    let who = match caller(app, &req).await {
        Ok(c) => c,
        Err(a) => return a,
    };
    let db = &app.db;
    let result: Result<Answer, Refusal> = match (method.clone(), parts) {
        (Method::GET, ["appliances"]) => {
            let q = req.uri().query().unwrap_or("");
            let after = query_param(q, "after").unwrap_or_default();
            let limit = query_param(q, "limit")
                .and_then(|l| l.parse::<i64>().ok())
                .unwrap_or(100)
                .clamp(1, 1000);
            views::appliances(db, &who, (now, app.silence), &after, limit)
                .await
                .map(|v| json(StatusCode::OK, &v))
        }
        (Method::GET, ["appliances", serial]) => {
            views::appliance(db, &who, (now, app.silence, &app.pricing), serial)
                .await
                .map(|v| json(StatusCode::OK, &v))
        }
        (Method::POST, ["surveys"]) => match body::<workflow::Survey>(req).await {
            Ok(s) => workflow::submit_survey(db, &who, &s, (&app.public_url, now))
                .await
                .map(|id| json(StatusCode::CREATED, &serde_json::json!({"deployment": id}))),
            Err(a) => return a,
        },
        (Method::POST, ["deployments", id, "appliances"]) => {
            let id = id.to_string();
            match body::<workflow::Allocation>(req).await {
                Ok(a) => workflow::allocate(db, &who, &id, &a, now)
                    .await
                    .map(|token| {
                        json(
                            StatusCode::CREATED,
                            &serde_json::json!({"serial": a.serial, "token": token}),
                        )
                    }),
                Err(a) => return a,
            }
        }
        (Method::POST, ["appliances", serial, "transitions"]) => {
            let serial = serial.to_string();
            match body::<workflow::TransitionAsk>(req).await {
                Ok(t) => workflow::transition(db, &who, &serial, &t, now)
                    .await
                    .map(|s| json(StatusCode::OK, &serde_json::json!({"state": s.name()}))),
                Err(a) => return a,
            }
        }
        (Method::PUT, ["catalogs", id]) => {
            let id = id.to_string();
            match raw_body(req, waiting::MAX_UPLOAD).await {
                Ok(b) => waiting::put_catalog(db, &who, &id, b, now)
                    .await
                    .map(|c| json(StatusCode::OK, &c)),
                Err(a) => return a,
            }
        }
        (Method::PUT, ["regions", name]) => {
            let name = name.to_string();
            match body::<waiting::RegionTarget>(req).await {
                Ok(t) => waiting::set_region(db, &who, &name, &t, now)
                    .await
                    .map(|()| {
                        json(
                            StatusCode::OK,
                            &serde_json::json!({"region": name, "catalog": t.catalog}),
                        )
                    }),
                Err(a) => return a,
            }
        }
        (Method::POST, ["appliances", serial, "prefill"]) => {
            let serial = serial.to_string();
            match body::<waiting::PrefillReport>(req).await {
                Ok(r) => waiting::prefill(db, &who, &serial, &r, now)
                    .await
                    .map(|s| json(StatusCode::OK, &serde_json::json!({"state": s.name()}))),
                Err(a) => return a,
            }
        }
        (Method::POST, ["rollouts"]) => match body::<upgrade::RolloutAsk>(req).await {
            Ok(r) => upgrade::schedule(db, &who, &r, now)
                .await
                .map(|id| json(StatusCode::CREATED, &serde_json::json!({"rollout": id}))),
            Err(a) => return a,
        },
        (Method::GET, ["rollouts", id]) => upgrade::rollout(db, &who, id)
            .await
            .map(|v| json(StatusCode::OK, &v)),
        (Method::POST, ["appliances", serial, "report"]) => {
            let serial = serial.to_string();
            match body::<workflow::Report>(req).await {
                Ok(r) => workflow::report(db, &who, &serial, &r, now)
                    .await
                    .map(|a| json(StatusCode::OK, &a)),
                Err(a) => return a,
            }
        }
        _ => Ok(error(
            StatusCode::NOT_FOUND,
            "no such path or method (see docs/control-api.md)",
        )),
    };
    result.unwrap_or_else(refusal)
}

/// A `name=value` of a query string (values are serials and numbers: no decoding needed,
/// and anything that would need it matches nothing).
fn query_param(q: &str, name: &str) -> Option<String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Binds `addr`.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) -> Result<()> {
    loop {
        let (stream, _peer): (_, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 << 10)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}
