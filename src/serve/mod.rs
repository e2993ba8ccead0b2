//! `gazette serve`: serves `feeds/` over HTTP under base_url's path prefix, meant to sit behind
//! a reverse proxy. Files are cached with their gzip, checked against the disk (one stat) on
//! every request, so a publish shows without a restart.

mod confirm_mail;
mod files;
mod outbox;
pub mod subscribe;
mod unsubscribe;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::config::Config;

/// The Content-Security-Policy of every HTML answer: nothing from elsewhere, no scripts.
pub(crate) const CSP: &str = "default-src 'none'; img-src 'self' https: data:; \
    style-src 'self' 'unsafe-inline'; font-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The largest request body read (forms are a few hundred bytes).
pub const BODY_LIMIT: usize = 16 * 1024;

/// What every request handler shares.
pub(crate) struct App {
    /// The canonical path of `feeds/`.
    pub(crate) feeds: PathBuf,
    /// base_url's path, always starting and ending with `/`.
    pub(crate) prefix: String,
    /// The newsletter directory (its database and secret).
    pub(crate) dir: PathBuf,
    /// The unsubscribe-token key; None when it cannot be read (unsubscribe answers 503).
    pub(crate) secret: Option<crate::token::Secret>,
    pub(crate) list_id: String,
    /// The settings (sign-up pages and mails).
    pub(crate) config: Config,
    pub(crate) limiter: subscribe::Limiter,
    /// Wakes the outgoing queue's sender.
    pub(crate) wake: outbox::Wake,
    pub(crate) dkim: Option<crate::render::email::Dkim>,
    /// `templates/email.css` (or the built-in one), read once at start for the
    /// confirmation mails.
    pub(crate) email_css: String,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(dir: &Path, listen: Option<&str>, quiet: bool) -> anyhow::Result<()> {
    let config = match Config::from_dir(dir) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                crate::eline!("{p}\n");
            }
            bail!("{} must be fixed first", crate::config::FILE_NAME);
        }
    };
    let listen = listen.unwrap_or(&config.serve_listen);
    let addr: SocketAddr = listen.parse().with_context(|| {
        format!(
            "`{listen}` is not a listen address: write IP:PORT, e.g. 127.0.0.1:8080 \
             (--listen or [serve] listen in gazette.toml)"
        )
    })?;
    let feeds_dir = crate::layout::feeds(dir);
    let feeds = feeds_dir.canonicalize().with_context(|| {
        format!(
            "cannot open {}: run `gazette publish` first",
            feeds_dir.display()
        )
    })?;
    let prefix = config.base_url.path().to_string();
    let secret = match crate::token::Secret::load(dir) {
        Ok(s) => Some(s),
        Err(e) => {
            crate::eline!("gazette serve: unsubscribe links will fail: {e:#}");
            None
        }
    };
    let dkim = match &config.dkim {
        Some(d) => match crate::newsletter::dkim_key(d) {
            Ok(k) => Some(k),
            Err(e) => {
                crate::eline!("gazette serve: confirmation mails go out unsigned: {e:#}");
                None
            }
        },
        None => None,
    };
    // Made and migrated here, once, before the queue's sender and the requests open it
    // side by side.
    drop(crate::store::Store::open(dir)?);
    let email_css = crate::newsletter::templates(dir)?.css;
    let wake = outbox::start(dir.to_path_buf(), &config, quiet);
    let app = Arc::new(App {
        feeds,
        prefix,
        dir: dir.to_path_buf(),
        secret,
        list_id: config.email.list_id.clone(),
        limiter: subscribe::Limiter::new(config.serve.signups_per_hour),
        config,
        wake,
        dkim,
        email_css,
    });
    // One single-threaded runtime per core, all accepting on the one socket (as nginx's
    // workers do): no work stealing or cross-thread wake-ups on a request's path.
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr}: is another server using it?"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 16));
    let prefix = app.prefix.clone();
    let router = router(app, quiet);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let mut threads = Vec::new();
    for _ in 1..workers {
        let listener = listener.try_clone()?;
        let router = router.clone();
        let mut stopped = stopped.clone();
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                axum::serve(
                    tokio::net::TcpListener::from_std(listener)?,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .context("the server stopped")
            })
        }));
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
        "gazette serve: listening on http://{local}{prefix}"
    );
    let _ = std::io::stdout().flush();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let signalled = stop.clone();
    let result = runtime.block_on(async move {
        axum::serve(
            tokio::net::TcpListener::from_std(listener)?,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown().await;
            let _ = signalled.send(true);
        })
        .await
        .context("the server stopped")
    });
    let _ = stop.send(true);
    for t in threads {
        match t.join() {
            Ok(r) => r?,
            Err(_) => bail!("a server thread panicked"),
        }
    }
    result?;
    if !quiet {
        crate::eline!("gazette serve: stopped");
    }
    Ok(())
}

fn router(app: Arc<App>, quiet: bool) -> Router {
    let prefix = app.prefix.clone();
    // Both spellings: the default unsubscribe_url is `<base>unsubscribe/?token=`.
    let unsubscribe = axum::routing::any(unsubscribe::handle);
    let router = Router::new()
        .route(&format!("{prefix}unsubscribe"), unsubscribe.clone())
        .route(&format!("{prefix}unsubscribe/"), unsubscribe)
        .route(
            &format!("{prefix}subscribe"),
            axum::routing::any(subscribe::subscribe),
        )
        .route(
            &format!("{prefix}confirm"),
            axum::routing::any(subscribe::confirm),
        )
        .fallback(files::handle)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(html_headers));
    // Quiet: no logging layer at all (it costs a clone and a box per request).
    if quiet {
        router
    } else {
        router.layer(middleware::from_fn(move |req, next| log(req, next, quiet)))
    }
    .with_state(app)
}

/// The `token` parameter of a request's query string (empty when absent): confirm and
/// unsubscribe links carry their token there.
pub(crate) fn token_param(req: &Request) -> String {
    req.uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

/// One line per request on standard error: method, path (never the query, which may hold a
/// token), status, body bytes.
async fn log(req: Request, next: Next, quiet: bool) -> Response {
    if quiet {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    if !quiet {
        let len = response
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        crate::eline!(
            "{method} {} {} {len}",
            path.escape_debug(),
            response.status().as_u16()
        );
    }
    response
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Keeps `State` imported for submodules.
pub(crate) type Shared = State<Arc<App>>;

/// Every HTML answer carries the CSP, `Referrer-Policy: no-referrer` (tokens are in URLs) and
/// `nosniff`, whichever handler made it.
async fn html_headers(req: Request, next: Next) -> Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(req).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = response.headers_mut();
    if html {
        h.entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CSP));
        h.entry(header::REFERRER_POLICY)
            .or_insert(HeaderValue::from_static("no-referrer"));
    }
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}
