//! `<prefix>unsubscribe?token=…`: GET shows one button and changes nothing (link scanners
//! follow GETs); POST (RFC 8058 one-click, or the page's form) records the unsubscribe.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};

use super::{App, Shared};
use crate::store::{Address, Store};

pub(crate) async fn handle(State(app): Shared, req: Request) -> Response {
    let token = super::token_param(&req);
    let Some(secret) = app.secret.as_ref() else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            html! { p { "This list cannot take unsubscribes right now. Please reply to the email instead." } },
        );
    };
    let Some(address) = secret.verify(&app.list_id, &token) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid link",
            html! { p { "This unsubscribe link is not valid. Copy the whole link from the email, or reply to it." } },
        );
    };
    match *req.method() {
        Method::GET | Method::HEAD => page(
            StatusCode::OK,
            "Unsubscribe",
            html! {
                p { "Stop sending this newsletter to " strong { (address) } "?" }
                form method="post" {
                    input type="hidden" name="List-Unsubscribe" value="One-Click";
                    button type="submit" { "Unsubscribe" }
                }
            },
        ),
        Method::POST => {
            // The body (RFC 8058 `List-Unsubscribe=One-Click`, or the form) is read up to the
            // limit (more is refused) and not needed: the signed token says who.
            if axum::body::to_bytes(req.into_body(), super::BODY_LIMIT)
                .await
                .is_err()
            {
                return page(StatusCode::PAYLOAD_TOO_LARGE, "Too large", html! {});
            }
            match unsubscribe(&app, &address).await {
                Ok(()) => page(
                    StatusCode::OK,
                    "Unsubscribed",
                    html! { p { "You are unsubscribed. No more issues will be sent to this address." } },
                ),
                Err(e) => {
                    eprintln!("gazette serve: unsubscribe failed: {e:#}");
                    page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Try again",
                        html! { p { "The unsubscribe could not be recorded. Please try again in a minute." } },
                    )
                }
            }
        }
        _ => {
            let mut r = page(StatusCode::METHOD_NOT_ALLOWED, "Not allowed", html! {});
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            r
        }
    }
}

/// Durable (answered once the store committed) and idempotent; an address not on the list
/// is recorded as unsubscribed, so no later import adds it. Requests that arrive together
/// share one transaction (group commit): one fsync for many.
async fn unsubscribe(app: &App, address: &str) -> anyhow::Result<()> {
    let parsed = Address::parse(address).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let writer = WRITER.get_or_init(|| start_writer(app.dir.clone()));
    writer
        .send((parsed, tx))
        .map_err(|_| anyhow::anyhow!("the unsubscribe writer stopped"))?;
    rx.await
        .map_err(|_| anyhow::anyhow!("the unsubscribe writer stopped"))?
        .map_err(|e| anyhow::anyhow!("{e}"))
}

type Job = (Address, tokio::sync::oneshot::Sender<Result<(), String>>);

/// The one writer of unsubscribes in this process.
static WRITER: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();

/// Unsubscribes at most this many addresses per transaction.
const BATCH: usize = 512;

fn start_writer(dir: std::path::PathBuf) -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::spawn(move || {
        let mut store: Option<Store> = None;
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let addresses: Vec<Address> = jobs.iter().map(|(a, _)| a.clone()).collect();
            let result = match store.take().map_or_else(|| Store::open(&dir), Ok) {
                Ok(mut s) => {
                    let r = s.unsubscribe_all(&addresses).map_err(|e| format!("{e:#}"));
                    // A failed store is opened again for the next batch.
                    if r.is_ok() {
                        store = Some(s);
                    }
                    r
                }
                Err(e) => Err(format!("{e:#}")),
            };
            for (_, reply) in jobs {
                let _ = reply.send(result.clone());
            }
        }
    });
    tx
}

/// The pages' look: readable on a phone (a 44 px button, long addresses wrap) and a desktop
/// (a narrow centred column), light or dark as the reader's system is. Inline: the CSP allows
/// inline styles and nothing from elsewhere.
const CSS: &str = "\
:root{color-scheme:light dark;--fg:#1a1a1a;--bg:#fff;--accent:#0b57d0;--muted:#5f6368}\
@media (prefers-color-scheme:dark){:root{--fg:#e8eaed;--bg:#1f1f1f;--accent:#8ab4f8;--muted:#9aa0a6}}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);\
font:1.0625rem/1.55 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",\"PingFang SC\",\"Microsoft YaHei\",sans-serif}\
main{max-width:34rem;margin:0 auto;padding:3rem 1.25rem}\
h1{font-size:1.75rem;line-height:1.2;margin:0 0 1rem}\
p{margin:0 0 1.5rem;overflow-wrap:anywhere}\
button{font:inherit;font-weight:600;min-height:44px;padding:.625rem 1.5rem;border:0;\
border-radius:.5rem;background:var(--accent);color:var(--bg);cursor:pointer}\
button:focus-visible{outline:3px solid var(--fg);outline-offset:2px}\
@media (max-width:30rem){main{padding:2rem 1rem}button{width:100%}}";

pub(crate) fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                style { (maud::PreEscaped(CSS)) }
            }
            body { main { h1 { (title) } (body) } }
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
