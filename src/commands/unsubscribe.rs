//! `gazette unsubscribe TOKEN-OR-ADDRESS`: what the unsubscribe link does, from the terminal
//! (for a reader who wrote in). Accepts the token, the whole link, or the address.

use std::path::Path;

use crate::newsletter::load_config;
use crate::output::Output;
use crate::store;
use crate::token;

/// The token of an unsubscribe link pasted whole (`https://…/unsubscribe?token=…`), or the
/// argument as it is.
fn token_from_link(arg: &str) -> &str {
    let arg = arg.trim();
    match arg.split_once("token=") {
        Some((before, after)) if before.contains('?') || before.contains('&') => {
            after.split(['&', '#']).next().unwrap_or(after)
        }
        _ => arg,
    }
}

pub fn run(dir: &Path, token_or_address: &str, out: &Output) -> anyhow::Result<()> {
    let token_or_address = token_from_link(token_or_address);
    let address = if token_or_address.contains('@') {
        token_or_address.to_string()
    } else {
        let config = load_config(dir, out)?;
        token::Secret::load(dir)?
            .verify(&config.email.list_id, token_or_address)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the token is not valid for this list (a mangled link, or signed with another key)"
                )
            })?
    };
    let db = store::Store::open(dir)?;
    let parsed = store::Address::parse(&address).map_err(|e| anyhow::anyhow!("{e}"))?;
    match db.set_status(&parsed, store::Status::Unsubscribed)? {
        None => {
            // Not on the list (yet): keep the wish, so no later import adds them.
            db.add(&parsed, None, false)?;
            db.set_status(&parsed, store::Status::Unsubscribed)?;
            out.note(format_args!(
                "{address} was not on the list; recorded so no import adds it"
            ));
        }
        Some(old) => out.note(format_args!("{address} unsubscribed (was {old})")),
    }
    Ok(())
}
