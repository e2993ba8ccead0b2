//! `<prefix>unsubscribe?token=…`: GET shows one button and changes nothing (link scanners
//! follow GETs); POST (RFC 8058 one-click, or the page's form) records the unsubscribe.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};

use super::{App, Shared};
use crate::store::{Address, Status, Store};

pub(crate) async fn handle(State(app): Shared, req: Request) -> Response {
    let token = req
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
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
            let app: Arc<App> = app.clone();
            let done = tokio::task::spawn_blocking(move || unsubscribe(&app, &address)).await;
            match done {
                Ok(Ok(())) => page(
                    StatusCode::OK,
                    "Unsubscribed",
                    html! { p { "You are unsubscribed. No more issues will be sent to this address." } },
                ),
                Ok(Err(e)) => {
                    eprintln!("gazette serve: unsubscribe failed: {e:#}");
                    page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Try again",
                        html! { p { "The unsubscribe could not be recorded. Please try again in a minute." } },
                    )
                }
                Err(_) => page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Try again",
                    html! { p { "Please try again." } },
                ),
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

/// Durable (the store commits) and idempotent; an address not on the list is recorded as
/// unsubscribed, so no later import adds it.
fn unsubscribe(app: &App, address: &str) -> anyhow::Result<()> {
    let parsed = Address::parse(address).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = Store::open(&app.dir)?;
    if db.set_status(&parsed, Status::Unsubscribed)?.is_none() {
        db.add(&parsed, None, false)?;
        db.set_status(&parsed, Status::Unsubscribed)?;
    }
    Ok(())
}

pub(crate) fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
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
