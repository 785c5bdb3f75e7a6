//! The partner portal: HTML pages served by `fill-control` beside the API, on the same
//! database and the same rules (docs/portal.md). A session is a user token (`auth`) held
//! in a cookie (`HttpOnly; SameSite=Strict; Path=/`, `Secure` when the public URL is
//! https); every form carries a token derived from the session (BLAKE3 of it, keyed), and
//! a post without it, or with another, is refused. Sign-ins are throttled per email
//! (`auth::login`). What a caller may not see is a 404, as in the API.

pub mod pages;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use maud::Markup;

use crate::app::App;
use crate::auth::{self, Caller, Login};
use crate::ledger::Refusal;
use crate::{notify, views, workflow};
use pages::{SurveyForm, Viewer};

/// The session cookie's name.
pub const COOKIE: &str = "fill_session";
/// The most a form may weigh.
const MAX_FORM: usize = 64 << 10;
/// Lines on a page of the fleet.
pub const PER_PAGE: i64 = 100;

type Answer = Response<Full<Bytes>>;

/// Whether a path is the portal's (anything not under `/api`, `/metrics` or `/healthz`).
pub fn is_portal(parts: &[&str]) -> bool {
    matches!(
        parts,
        [] | ["login"]
            | ["logout"]
            | ["survey"]
            | ["static", _]
            | ["appliances", _]
            | ["appliances", _, "drain" | "undrain" | "step"]
            | ["deployments", _]
            | ["deployments", _, "allocate"]
            | ["rollouts", _]
            | ["invite", _]
    )
}

fn with_headers(mut r: Answer) -> Answer {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn html(status: StatusCode, m: Markup) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(m.into_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    with_headers(r)
}

fn redirect(to: &str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    with_headers(r)
}

fn stat(body: &'static str, ctype: &'static str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

/// The form token of a session.
pub fn csrf_of(session: &str) -> String {
    blake3::keyed_hash(
        blake3::hash(b"fill portal form token").as_bytes(),
        session.as_bytes(),
    )
    .to_hex()[..32]
        .to_owned()
}

/// The session token from the request's cookies.
fn session(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The cookie that holds `token` (or clears it, with an empty one).
fn cookie(app: &App, token: &str) -> HeaderValue {
    let secure = if app.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let age = if token.is_empty() {
        0
    } else {
        auth::USER_TOKEN_SECS
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("fill_session=; Max-Age=0"))
}

/// The form's fields, from a urlencoded body within [`MAX_FORM`].
async fn form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Answer> {
    let bad = |why: &str| {
        html(
            StatusCode::BAD_REQUEST,
            pages::message(None, "Bad form", why, false),
        )
    };
    let urlencoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return Err(bad("send the form as application/x-www-form-urlencoded"));
    }
    let bytes = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|_| bad("the form is over 64 KiB"))?
        .to_bytes();
    serde_urlencoded::from_bytes(&bytes).map_err(|_| bad("the form cannot be read"))
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Answers a portal request.
pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    method: &Method,
    parts: &[&str],
    now: i64,
) -> Answer {
    match (method, parts) {
        (&Method::GET, ["static", "portal.css"]) => {
            return stat(pages::STYLE, "text/css; charset=utf-8");
        }
        (&Method::GET, ["static", "portal.js"]) => {
            return stat(pages::LOCAL_TIMES, "text/javascript; charset=utf-8");
        }
        (&Method::GET, ["login"]) => return html(StatusCode::OK, pages::login(None, "")),
        (&Method::GET, ["invite", code]) => return invitation(code, None),
        (&Method::POST, ["invite", code]) => return accept(app, req, code, now).await,
        (&Method::POST, ["login"]) => return sign_in(app, req, now).await,
        _ => {}
    }
    // Everything else needs a session.
    let token = session(&req);
    let caller = match auth::authenticate(&app.db, token.as_deref(), now).await {
        Ok(c @ (Caller::Ops { .. } | Caller::Partner { .. })) => c,
        Ok(_) | Err(auth::AuthErrorOr::Auth(_)) => return redirect("/login"),
        Err(auth::AuthErrorOr::Db(e)) => return failed(None, Refusal::Failed(e)),
    };
    let token = token.unwrap_or_default();
    let viewer = Viewer {
        email: match &caller {
            Caller::Ops { email } | Caller::Partner { email, .. } => email.clone(),
            _ => String::new(),
        },
        of: match &caller {
            Caller::Partner { partner, .. } => partner.clone(),
            _ => "ops".into(),
        },
        ops: matches!(caller, Caller::Ops { .. }),
        csrf: csrf_of(&token),
    };
    if method == Method::POST {
        let fields = match form(req).await {
            Ok(f) => f,
            Err(a) => return a,
        };
        // The form token, compared as hashes (constant time).
        if blake3::hash(field(&fields, "csrf").as_bytes()) != blake3::hash(viewer.csrf.as_bytes()) {
            return html(
                StatusCode::FORBIDDEN,
                pages::message(
                    Some(&viewer),
                    "Refused",
                    "This form is out of date or did not come from this site: open the page again and resend it.",
                    false,
                ),
            );
        }
        return post(app, &caller, &viewer, &token, parts, &fields, now).await;
    }
    if method != Method::GET {
        return html(
            StatusCode::METHOD_NOT_ALLOWED,
            pages::message(Some(&viewer), "Not here", "GET or POST only.", false),
        );
    }
    get(app, &caller, &viewer, &req, parts, now).await
}

/// The invitation's page: choose a password (a code that cannot be one is not found).
fn invitation(code: &str, error: Option<&str>) -> Answer {
    if code.len() != 32 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
        return html(
            StatusCode::NOT_FOUND,
            pages::message(
                None,
                "Not found",
                "This invitation is unknown, used or expired.",
                false,
            ),
        );
    }
    let mut r = html(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        pages::invitation(code, error),
    );
    // The code is in the path: keep it out of any other site's logs.
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Sets the invited account's password (twice the same) and signs in.
async fn accept(app: &App, req: Request<Incoming>, code: &str, now: i64) -> Answer {
    let fields = match form(req).await {
        Ok(f) => f,
        Err(a) => return a,
    };
    let password = field(&fields, "password");
    if password != field(&fields, "again") {
        return invitation(code, Some("The two passwords differ."));
    }
    match crate::invite::accept(&app.db, code, password, now).await {
        Ok(ok) => {
            let mut r = redirect("/");
            r.headers_mut()
                .insert(header::SET_COOKIE, cookie(app, &ok.token));
            r
        }
        Err(Refusal::Invalid(why)) => invitation(code, Some(&why)),
        Err(e) => failed(None, e),
    }
}

async fn sign_in(app: &App, req: Request<Incoming>, now: i64) -> Answer {
    let fields = match form(req).await {
        Ok(f) => f,
        Err(a) => return a,
    };
    let email = field(&fields, "email");
    match auth::login(&app.db, email, field(&fields, "password"), now).await {
        Ok(Login::Token(token)) => {
            let mut r = redirect("/");
            r.headers_mut()
                .insert(header::SET_COOKIE, cookie(app, &token));
            r
        }
        Ok(Login::Wrong) => html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("Wrong email or password."), email),
        ),
        Ok(Login::Throttled { retry_after }) => {
            let mut r = html(
                StatusCode::TOO_MANY_REQUESTS,
                pages::login(
                    Some(&format!(
                        "Too many failed sign-ins for this email: try again in {}.",
                        fill_core::duration::human_secs(retry_after)
                    )),
                    email,
                ),
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.max(1) as u64),
            );
            r
        }
        Err(e) => failed(None, Refusal::Failed(e)),
    }
}

fn failed(v: Option<&Viewer>, r: Refusal) -> Answer {
    let (status, title) = match &r {
        Refusal::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        Refusal::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        Refusal::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Not accepted"),
        Refusal::Conflict(_) => (StatusCode::CONFLICT, "Not now"),
        Refusal::Failed(e) => {
            tracing::error!("portal: {e:#}");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message(
                    v,
                    "Something failed",
                    "Something failed on our side (logged).",
                    false,
                ),
            );
        }
    };
    html(status, pages::message(v, title, &r.to_string(), false))
}

async fn get(
    app: &App,
    caller: &Caller,
    v: &Viewer,
    req: &Request<Incoming>,
    parts: &[&str],
    now: i64,
) -> Answer {
    match parts {
        [] => {
            let page_no = req
                .uri()
                .query()
                .and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("page="))
                        .and_then(|n| n.parse::<i64>().ok())
                })
                .unwrap_or(1)
                .clamp(1, 1_000_000);
            let offset = (page_no - 1) * PER_PAGE;
            let listed = async {
                let f = views::fleet(
                    &app.db,
                    &app.fleet_order,
                    caller,
                    (now, app.silence),
                    offset,
                    PER_PAGE,
                )
                .await?;
                let s = views::deployments(&app.db, caller, 50).await?;
                Ok::<_, Refusal>((f, s))
            };
            match listed.await {
                Ok((f, s)) => html(
                    StatusCode::OK,
                    pages::fleet(v, &f, page_no, PER_PAGE, pages::sites(&s, v.ops)),
                ),
                Err(e) => failed(Some(v), e),
            }
        }
        ["survey"] if !v.ops => html(
            StatusCode::OK,
            pages::survey(v, None, &SurveyForm::default()),
        ),
        ["survey"] => failed(
            Some(v),
            Refusal::Forbidden("a site survey comes from a partner".into()),
        ),
        ["appliances", serial] => {
            match views::appliance(&app.db, caller, (now, app.silence, &app.pricing), serial).await
            {
                Ok(a) => {
                    let fixes: Vec<(String, String, &str)> = a
                        .checks
                        .iter()
                        .filter(|c| !c.passed)
                        .map(|c| (c.name.clone(), c.detail.clone(), notify::fix(&c.name)))
                        .collect();
                    html(StatusCode::OK, pages::appliance(v, &a, &fixes))
                }
                Err(e) => failed(Some(v), e),
            }
        }
        ["deployments", id] => match views::deployment(&app.db, caller, id).await {
            Ok(d) => html(StatusCode::OK, pages::deployment(v, &d, None)),
            Err(e) => failed(Some(v), e),
        },
        ["rollouts", id] => match crate::upgrade::rollout(&app.db, caller, id).await {
            Ok(r) => html(StatusCode::OK, pages::rollout(v, &r)),
            Err(e) => failed(Some(v), e),
        },
        ["appliances", serial, "drain"] => {
            match crate::ledger::visible(&app.db.pool, caller, serial).await {
                Ok(a) => html(StatusCode::OK, pages::confirm_drain(v, &a.serial, &a.site)),
                Err(e) => failed(Some(v), e),
            }
        }
        _ => failed(Some(v), Refusal::NotFound("no such page".into())),
    }
}

async fn post(
    app: &App,
    caller: &Caller,
    v: &Viewer,
    token: &str,
    parts: &[&str],
    fields: &[(String, String)],
    now: i64,
) -> Answer {
    match parts {
        ["logout"] => {
            if let Err(e) = auth::revoke(&app.db, token, now).await {
                return failed(Some(v), Refusal::Failed(e));
            }
            let mut r = redirect("/login");
            r.headers_mut().insert(header::SET_COOKIE, cookie(app, ""));
            r
        }
        ["survey"] => {
            let typed = survey_form(fields);
            let s = match survey_of(&typed) {
                Ok(s) => s,
                Err(why) => {
                    return html(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        pages::survey(v, Some(&why), &typed),
                    );
                }
            };
            match workflow::submit_survey(&app.db, caller, &s, (&app.public_url, now)).await {
                Ok(id) => html(
                    StatusCode::CREATED,
                    pages::message(
                        Some(v),
                        "Survey received",
                        &format!(
                            "Site {} is deployment {id}. Its contacts were emailed, and those without an account invited. Operations will allocate appliances to it.",
                            s.site
                        ),
                        true,
                    ),
                ),
                Err(Refusal::Failed(e)) => failed(Some(v), Refusal::Failed(e)),
                Err(e) => html(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    pages::survey(v, Some(&e.to_string()), &typed),
                ),
            }
        }
        ["appliances", serial, "drain"] => {
            let ask = workflow::TransitionAsk {
                to: "draining".into(),
                reason: field(fields, "reason").trim().to_owned(),
                carrier: None,
                tracking: None,
            };
            match workflow::transition(&app.db, caller, serial, &ask, now).await {
                Ok(_) => redirect(&format!("/appliances/{serial}")),
                Err(e) => failed(Some(v), e),
            }
        }
        ["appliances", serial, "step"] => {
            let text = |k: &str| Some(field(fields, k).trim().to_owned()).filter(|s| !s.is_empty());
            let ask = workflow::TransitionAsk {
                to: field(fields, "to").to_owned(),
                reason: field(fields, "reason").trim().to_owned(),
                carrier: text("carrier"),
                tracking: text("tracking"),
            };
            match workflow::transition(&app.db, caller, serial, &ask, now).await {
                Ok(_) => redirect(&format!("/appliances/{serial}")),
                Err(e) => failed(Some(v), e),
            }
        }
        ["deployments", id, "allocate"] => {
            let a = workflow::Allocation {
                serial: field(fields, "serial").trim().to_owned(),
                hardware: field(fields, "hardware").to_owned(),
                capacity: field(fields, "capacity").trim().to_owned(),
                catalog: field(fields, "catalog").trim().to_owned(),
            };
            match workflow::allocate(&app.db, caller, id, &a, now).await {
                Ok(token) => html(StatusCode::CREATED, pages::allocated(v, &a.serial, &token)),
                Err(e @ (Refusal::Invalid(_) | Refusal::Conflict(_))) => {
                    match views::deployment(&app.db, caller, id).await {
                        Ok(d) => html(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            pages::deployment(v, &d, Some(&e.to_string())),
                        ),
                        Err(e) => failed(Some(v), e),
                    }
                }
                Err(e) => failed(Some(v), e),
            }
        }
        ["appliances", serial, "undrain"] => {
            let back = match crate::ledger::visible(&app.db.pool, caller, serial).await {
                Ok(a) => a.before_drain,
                Err(e) => return failed(Some(v), e),
            };
            let Some(back) = back else {
                return failed(
                    Some(v),
                    Refusal::Conflict(format!("{serial} is not drained")),
                );
            };
            let ask = workflow::TransitionAsk {
                to: back.name().into(),
                reason: "put back in service from the portal".into(),
                carrier: None,
                tracking: None,
            };
            match workflow::transition(&app.db, caller, serial, &ask, now).await {
                Ok(_) => redirect(&format!("/appliances/{serial}")),
                Err(e) => failed(Some(v), e),
            }
        }
        _ => failed(Some(v), Refusal::NotFound("no such form".into())),
    }
}

/// The survey form's fields, as typed.
fn survey_form(f: &[(String, String)]) -> SurveyForm {
    SurveyForm {
        site: field(f, "site").trim().to_owned(),
        tz: field(f, "tz").trim().to_owned(),
        offpeak: field(f, "offpeak").trim().to_owned(),
        address: field(f, "address").to_owned(),
        contacts: (0..4)
            .map(|k| {
                (
                    field(f, &format!("cname{k}")).trim().to_owned(),
                    field(f, &format!("cemail{k}")).trim().to_owned(),
                    field(f, &format!("crole{k}")).trim().to_owned(),
                )
            })
            .collect(),
        asn: field(f, "asn").trim().to_owned(),
        ipv4: field(f, "ipv4").to_owned(),
        ipv6: field(f, "ipv6").to_owned(),
        neighbors: field(f, "neighbors").to_owned(),
    }
}

/// The survey the form describes (checked in full by `Survey::check` on submission).
fn survey_of(f: &SurveyForm) -> Result<workflow::Survey, String> {
    let lines = |s: &str| -> Vec<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let asn: u32 = f
        .asn
        .trim_start_matches("AS")
        .parse()
        .map_err(|_| format!("AS number {:?} is not a number", f.asn))?;
    Ok(workflow::Survey {
        site: f.site.clone(),
        shipping_address: lines(&f.address),
        contacts: f
            .contacts
            .iter()
            .filter(|c| !c.0.is_empty() || !c.1.is_empty())
            .map(|(name, email, role)| workflow::Contact {
                name: name.clone(),
                email: email.clone(),
                role: role.clone(),
            })
            .collect(),
        network: workflow::Network {
            asn,
            ipv4: lines(&f.ipv4),
            ipv6: lines(&f.ipv6),
            bgp_neighbors: lines(&f.neighbors),
        },
        tz: f.tz.clone(),
        offpeak: Some(f.offpeak.clone()).filter(|w| !w.is_empty()),
    })
}
