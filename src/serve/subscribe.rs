//! `<prefix>subscribe` and `<prefix>confirm?token=…`: double opt-in. A sign-up records a new
//! address `pending` and queues a confirmation mail (at most one per address a day); every
//! sign-up gets the same "check your inbox" answer, so no one learns who is on the list. GET
//! of a confirm link shows one button and changes nothing (mail scanners follow links); its
//! POST makes the reader active. A per-client limit answers 429; a honeypot field drops bots.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};

use super::{App, Shared};
use crate::render::site::{HONEYPOT, signup_form};
use crate::store::{Address, SignedUp, Store};
use crate::token::ConfirmError;

/// The largest sign-up body read: an address, a name and the honeypot.
pub(crate) const SIGNUP_LIMIT: usize = 4 * 1024;

/// Clients remembered by the rate limiter at most; past it, the ones whose allowance is
/// full again are forgotten (memory stays bounded whatever the traffic).
const MAX_CLIENTS: usize = 100_000;

/// A token bucket per client address: `per_hour` sign-ups, refilled evenly over the hour.
#[derive(Debug)]
pub(crate) struct Limiter {
    per_hour: f64,
    clients: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Limiter {
    pub(crate) fn new(per_hour: u32) -> Limiter {
        Limiter {
            per_hour: f64::from(per_hour.max(1)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one sign-up from `client`'s allowance; false when it is used up.
    fn allow(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let refill = |(tokens, at): (f64, Instant)| {
            (tokens + now.duration_since(at).as_secs_f64() * self.per_hour / 3600.0)
                .min(self.per_hour)
        };
        if clients.len() >= MAX_CLIENTS {
            let full = self.per_hour;
            clients.retain(|_, v| refill(*v) < full);
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
        }
        let entry = clients.entry(client).or_insert((self.per_hour, now));
        let tokens = refill(*entry);
        if tokens >= 1.0 {
            *entry = (tokens - 1.0, now);
            true
        } else {
            *entry = (tokens, now);
            false
        }
    }
}

/// The client's address: the peer's, or the last address in the configured trusted header
/// (the one the reverse proxy in front appended). IPv6 clients count by their /64.
fn client(app: &App, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let from_header = app.config.serve.client_ip_header.as_ref().and_then(|name| {
        headers
            .get_all(name.as_str())
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| {
                let v = v.trim();
                v.parse::<IpAddr>()
                    .ok()
                    .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
            })
    });
    match from_header.unwrap_or(peer) {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
        v4 => v4,
    }
}

/// What a sign-up form or JSON body holds.
#[derive(Debug, Default, serde::Deserialize)]
struct Fields {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    website: Option<String>,
}

fn parse_fields(json: bool, body: &[u8]) -> Option<Fields> {
    if json {
        return serde_json::from_slice(body).ok();
    }
    let mut f = Fields::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "email" => f.email = v.into_owned(),
            "name" => f.name = Some(v.into_owned()),
            HONEYPOT => f.website = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(f)
}

pub(crate) async fn subscribe(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let words = crate::render::i18n::sign_up(&app.config.language);
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    match *req.method() {
        Method::GET | Method::HEAD => {
            return page(
                &app,
                StatusCode::OK,
                words.subscribe,
                signup_form(&format!("{}subscribe", app.prefix), words),
            );
        }
        Method::POST => {}
        _ => return not_allowed(&app),
    }
    if !app.limiter.allow(client(&app, peer.ip(), req.headers())) {
        let mut r = answer(
            &app,
            json,
            StatusCode::TOO_MANY_REQUESTS,
            words.too_many_title,
            words.too_many,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
        return r;
    }
    let body = match axum::body::to_bytes(req.into_body(), SIGNUP_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return answer(
                &app,
                json,
                StatusCode::PAYLOAD_TOO_LARGE,
                words.bad_address_title,
                words.bad_address,
            );
        }
    };
    let Some(fields) = parse_fields(json, &body) else {
        return answer(
            &app,
            json,
            StatusCode::BAD_REQUEST,
            words.bad_address_title,
            words.bad_address,
        );
    };
    let done = || {
        answer(
            &app,
            json,
            StatusCode::OK,
            words.check_inbox_title,
            words.check_inbox,
        )
    };
    if fields.website.as_deref().is_some_and(|w| !w.is_empty()) {
        // A bot filled the hidden field: the same answer, nothing stored, nothing sent.
        return done();
    }
    let Ok(address) = Address::parse(&fields.email) else {
        return answer(
            &app,
            json,
            StatusCode::BAD_REQUEST,
            words.bad_address_title,
            words.bad_address,
        );
    };
    if app.secret.is_none() {
        return answer(
            &app,
            json,
            StatusCode::SERVICE_UNAVAILABLE,
            words.unavailable_title,
            words.unavailable,
        );
    }
    let worker: Arc<App> = app.clone();
    let name = fields.name;
    let result =
        tokio::task::spawn_blocking(move || sign_up(&worker, &address, name.as_deref())).await;
    match result {
        Ok(Ok(outcome)) => {
            if matches!(outcome, SignedUp::Queued(_)) {
                app.wake.now();
            }
            done()
        }
        Ok(Err(e)) => {
            crate::eline!("gazette serve: a sign-up failed: {e:#}");
            answer(
                &app,
                json,
                StatusCode::SERVICE_UNAVAILABLE,
                words.unavailable_title,
                words.unavailable,
            )
        }
        Err(_) => answer(
            &app,
            json,
            StatusCode::INTERNAL_SERVER_ERROR,
            words.unavailable_title,
            words.unavailable,
        ),
    }
}

fn sign_up(app: &App, address: &Address, name: Option<&str>) -> anyhow::Result<SignedUp> {
    let secret = app
        .secret
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
    let now = crate::clock::now()?;
    let since = (now.to_utc() - chrono::Duration::hours(24))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Made for every sign-up, even one that will not be sent (a complaint, the second of the
    // day): the answer takes as long whatever the address's state, and the write
    // transaction stays short.
    let token = secret.confirm_token(&app.config.email.list_id, &address.email, now);
    let link = format!("{}confirm?token={token}", app.config.base_url);
    let message = super::confirm_mail::render(
        &app.email_css,
        &app.config,
        app.dkim.as_ref(),
        &address.email,
        &link,
        std::time::SystemTime::from(now),
    )?;
    Store::open(&app.dir)?.sign_up(address, name, &since, message)
}

pub(crate) async fn confirm(State(app): Shared, req: Request) -> Response {
    let words = crate::render::i18n::sign_up(&app.config.language);
    let token = super::token_param(&req);
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
        return not_allowed(&app);
    }
    let Some(secret) = app.secret.as_ref() else {
        return answer(
            &app,
            false,
            StatusCode::SERVICE_UNAVAILABLE,
            words.unavailable_title,
            words.unavailable,
        );
    };
    let now = match crate::clock::now() {
        Ok(n) => n,
        Err(_) => chrono::Utc::now().fixed_offset(),
    };
    let address = match secret.verify_confirm(&app.config.email.list_id, &token, now) {
        Ok(a) => a,
        Err(ConfirmError::Invalid) => {
            return answer(
                &app,
                false,
                StatusCode::BAD_REQUEST,
                words.invalid_link_title,
                words.invalid_link,
            );
        }
        Err(ConfirmError::Expired) => {
            return page(
                &app,
                StatusCode::GONE,
                words.invalid_link_title,
                html! { p { (words.expired_link) } (signup_form(&format!("{}subscribe", app.prefix), words)) },
            );
        }
    };
    if *req.method() != Method::POST {
        let question = words.confirm_question.replace("{title}", &app.config.title);
        return page(
            &app,
            StatusCode::OK,
            words.confirm_title,
            html! {
                p { (question) }
                form method="post" {
                    button type="submit" { (words.confirm_button) }
                }
            },
        );
    }
    if axum::body::to_bytes(req.into_body(), SIGNUP_LIMIT)
        .await
        .is_err()
    {
        return answer(
            &app,
            false,
            StatusCode::PAYLOAD_TOO_LARGE,
            words.invalid_link_title,
            words.invalid_link,
        );
    }
    let worker: Arc<App> = app.clone();
    let done = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let parsed = Address::parse(&address).map_err(|e| anyhow::anyhow!("{e}"))?;
        Store::open(&worker.dir)?.confirm(&parsed)?;
        Ok(())
    })
    .await;
    match done {
        Ok(Ok(())) => answer(
            &app,
            false,
            StatusCode::OK,
            words.confirmed_title,
            words.confirmed,
        ),
        Ok(Err(e)) => {
            crate::eline!("gazette serve: a confirmation failed: {e:#}");
            answer(
                &app,
                false,
                StatusCode::SERVICE_UNAVAILABLE,
                words.unavailable_title,
                words.unavailable,
            )
        }
        Err(_) => answer(
            &app,
            false,
            StatusCode::INTERNAL_SERVER_ERROR,
            words.unavailable_title,
            words.unavailable,
        ),
    }
}

fn not_allowed(app: &App) -> Response {
    let mut r = page(app, StatusCode::METHOD_NOT_ALLOWED, "405", html! {});
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
    r
}

/// An answer: a page with a title and one paragraph, or `{"status", "message"}` in JSON.
fn answer(app: &App, json: bool, status: StatusCode, title: &str, text: &str) -> Response {
    if json {
        let body = serde_json::json!({
            "status": if status.is_success() { "ok" } else { "error" },
            "title": title,
            "message": text,
        });
        return Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .body(Body::from(body.to_string()))
            .unwrap_or_default();
    }
    page(app, status, title, html! { p { (text) } })
}

/// A page in the newsletter's language and look (the published stylesheet).
fn page(app: &App, status: StatusCode, title: &str, body: Markup) -> Response {
    let config = &app.config;
    let markup = html! {
        (DOCTYPE)
        html lang=(config.language) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · " (config.title) }
                link rel="stylesheet" href={ (app.prefix) (crate::render::site::STYLESHEET) };
            }
            body {
                header.site { a href=(app.prefix) { (config.title) } }
                main { h1 { (title) } (body) }
            }
        }
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CONTENT_SECURITY_POLICY, super::CSP)
        .body(Body::from(markup.into_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_allows_its_allowance_per_client_then_refuses() {
        let l = Limiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            (0..5).map(|_| l.allow(a)).collect::<Vec<_>>(),
            [true, true, true, false, false]
        );
        assert!(l.allow(b), "another client has its own allowance");
        // A client that waited 20 minutes has one more (3 an hour).
        if let Some(entry) = l.clients.lock().unwrap().get_mut(&a) {
            entry.1 = entry
                .1
                .checked_sub(std::time::Duration::from_secs(20 * 60 + 1))
                .expect("the clock runs for more than 20 minutes");
        }
        assert!(l.allow(a));
        assert!(!l.allow(a));
    }
}
