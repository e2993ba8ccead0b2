//! `<prefix>unsubscribe?token=…`: GET shows one button and changes nothing (link scanners
//! follow GETs); POST (RFC 8058 one-click, or the page's form) records the unsubscribe.
//! Every page is in `newsletter.language` and none shows the whole address (the link is
//! forwarded with the mail and lands in proxy logs): the button page shows it masked.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};

use super::{App, Shared};
use crate::store::{Address, Store};

pub(crate) async fn handle(State(app): Shared, req: Request) -> Response {
    let lang = app.config.language.as_str();
    let words = crate::render::i18n::unsubscribe(lang);
    let say = |status, title: &str, text: &str| page(lang, status, title, html! { p { (text) } });
    let token = super::token_param(&req);
    let Some(secret) = app.secret.as_ref() else {
        return say(
            StatusCode::SERVICE_UNAVAILABLE,
            words.unavailable_title,
            words.unavailable,
        );
    };
    let Some(address) = secret.verify(&app.list_id, &token) else {
        return say(
            StatusCode::BAD_REQUEST,
            words.invalid_link_title,
            words.invalid_link,
        );
    };
    match *req.method() {
        Method::GET | Method::HEAD => {
            // Masked: the link travels in forwarded mail and proxy logs.
            let (before, after) = words
                .confirm_question
                .split_once("{address}")
                .unwrap_or((words.confirm_question, ""));
            page(
                lang,
                StatusCode::OK,
                words.confirm_title,
                html! {
                    p { (before) strong { (mask(&address)) } (after) }
                    form method="post" {
                        input type="hidden" name="List-Unsubscribe" value="One-Click";
                        button type="submit" { (words.confirm_button) }
                    }
                },
            )
        }
        Method::POST => {
            // The body (RFC 8058 `List-Unsubscribe=One-Click`, or the form) is read up to the
            // limit (more is refused) and not needed: the signed token says who.
            if axum::body::to_bytes(req.into_body(), super::BODY_LIMIT)
                .await
                .is_err()
            {
                return say(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    words.too_large_title,
                    words.too_large,
                );
            }
            match unsubscribe(&app, &address).await {
                Ok(()) => say(StatusCode::OK, words.unsubscribed_title, words.unsubscribed),
                Err(e) => {
                    crate::eline!("gazette serve: unsubscribe failed: {e:#}");
                    say(
                        StatusCode::SERVICE_UNAVAILABLE,
                        words.try_again_title,
                        words.try_again,
                    )
                }
            }
        }
        _ => {
            let mut r = say(
                StatusCode::METHOD_NOT_ALLOWED,
                words.not_allowed_title,
                words.not_allowed,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            r
        }
    }
}

/// `address` as the page shows it: the first character of the local part and of the
/// domain's first label, each followed by `***`, then the domain from its last dot
/// (`jane.doe@example.com` -> `j***@e***.com`). By characters, so any script is safe.
fn mask(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    let mut masked = format!("{}***", first(local));
    if address.contains('@') {
        let label = domain.split('.').next().unwrap_or_default();
        let tld = domain.rfind('.').map_or("", |i| &domain[i..]);
        masked.push_str(&format!("@{}***{tld}", first(label)));
    }
    masked
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

/// A page in `lang` (the newsletter's language).
fn page(lang: &str, status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang) {
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

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn mask_keeps_first_characters_and_the_last_domain_label() {
        for (address, masked) in [
            ("jane.doe@example.com", "j***@e***.com"),
            ("a@b.co.uk", "a***@b***.uk"),
            ("x@localhost", "x***@l***"),
            ("jane+news@example.com", "j***@e***.com"),
            ("读者@例子.中国", "读***@例***.中国"),
            ("ünïcode@bücher.de", "ü***@b***.de"),
            ("reader@xn--fsqu00a.xn--fiqs8s", "r***@x***.xn--fiqs8s"),
            ("\"a@b\"@example.org", "\"***@e***.org"),
        ] {
            assert_eq!(mask(address), masked, "{address}");
        }
    }

    #[test]
    fn mask_never_panics_and_never_shows_more_than_it_should() {
        for address in [
            "",
            "@",
            "@.",
            "a@",
            "@b.c",
            "no-at-sign",
            "a@.",
            "a@b.",
            "😀@😀.😀",
        ] {
            let masked = mask(address);
            assert!(masked.contains("***"), "{address}: {masked}");
        }
        assert_eq!(mask("no-at-sign"), "n***");
        assert_eq!(mask("@example.com"), "***@e***.com");
        assert_eq!(mask("😀@😀.😀"), "😀***@😀***.😀");
        assert_eq!(mask("a@.org"), "a***@***.org");
    }
}
