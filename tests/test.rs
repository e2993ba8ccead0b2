//! gazette's integration tests: one binary, one module per area, real tools checking real
//! output.

mod support;

mod bad_input;
mod determinism;
mod email;
mod feeds;
mod hardening;
mod inbound;
mod inbound_formats;
mod inbound_imap;
mod inbound_postfix;
mod inbound_verp;
mod lifecycle;
mod links;
mod pages;
mod publish;
mod received;
mod render;
mod robustness;
mod send;
mod serve;
mod serve_browser;
mod serve_cache;
mod serve_concurrency;
mod snapshots;
mod subscribe;
mod subscribers;
mod tokens;
