//! gazette's integration tests: one binary, one module per area, real tools checking real
//! output.

mod support;

mod bad_input;
mod determinism;
mod email;
mod feeds;
mod hardening;
mod inbound;
mod lifecycle;
mod links;
mod pages;
mod publish;
mod render;
mod robustness;
mod send;
mod serve;
mod serve_browser;
mod serve_cache;
mod serve_concurrency;
mod snapshots;
mod subscribers;
