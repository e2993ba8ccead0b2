//! gazette's integration tests: one binary, one module per area, real tools checking real
//! output.

mod support;

mod email;
mod publish;
