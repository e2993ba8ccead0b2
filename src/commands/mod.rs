//! One file per command, each read start to finish: load what it needs at the top, call the
//! capability that does the work, print through [`crate::output::Output`] at the bottom.

pub mod check;
pub mod inbound;
pub mod init;
pub mod new;
pub mod preview;
pub mod publish;
pub mod send;
pub mod serve;
pub mod status;
pub mod subscribers;
pub mod unsubscribe;
