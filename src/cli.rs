//! The command line as the user types it: clap types only, no behaviour.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// gazette: Markdown issues to RSS, Atom, JSON Feed, web pages and email.
#[derive(Debug, Parser)]
#[command(name = "gazette", version, about, long_about = None)]
pub struct Cli {
    /// The newsletter directory (where gazette.toml is).
    #[arg(
        short = 'C',
        long = "directory",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print a machine-readable summary on standard output.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new newsletter that publishes out of the box.
    Init {
        /// Where to create it (default: the -C directory).
        dir: Option<PathBuf>,
        /// The newsletter's language (BCP 47): gazette's own words in the email and pages
        /// follow it; `en` and `zh-CN` have their own, others get English.
        #[arg(long, default_value = "en")]
        language: String,
    },
    /// Write a new draft issue with a minted id and today's date.
    New {
        /// The title.
        title: String,
        /// The file name (without .md); derived from the title when it has Latin letters,
        /// else today's date.
        #[arg(long)]
        slug: Option<String>,
    },
    /// Validate gazette.toml, every issue and the templates; report every problem at once.
    Check,
    /// Write feeds/ (RSS, Atom, JSON Feed, web pages) for every published issue.
    Publish {
        /// Rewrite only these issues' pages (the feeds and archive always cover every issue).
        slugs: Vec<String>,
    },
    /// Write one issue's email as it would be sent to the sample recipient: email.html,
    /// email.txt and message.eml.
    Preview {
        /// The slug (its file name without .md).
        slug: String,
        /// Where to write the files (default: outbox/SLUG).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Manage the subscriber list (.gazette/gazette.db).
    #[command(subcommand)]
    Subscribers(Subscribers),
    /// Deliver one issue to every active subscriber, exactly once each; resumes a stopped run.
    Send(SendArgs),
    /// The delivery ledger of one issue: sent, failed, bounced, pending, unknown.
    Status {
        /// The slug (its file name without .md); without it, every issue's counts.
        slug: Option<String>,
    },
    /// Record an unsubscribe, from the token in an unsubscribe link or an address.
    Unsubscribe {
        /// The token from an unsubscribe link, or an email address.
        token_or_address: String,
    },
    /// Serve feeds/ over HTTP (behind a reverse proxy); Ctrl-C or SIGTERM stops it.
    Serve {
        /// The address to listen on (overrides `[serve] listen`, default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Read bounces, complaints, auto-replies and unsubscribe mail (standard input, a file,
    /// an mbox or a Maildir) and update the list.
    Inbound {
        /// Classify and print; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Files, mboxes or Maildirs (standard input when none).
        paths: Vec<PathBuf>,
        /// Read an IMAP mailbox instead: `imaps://user@host[:993]/MAILBOX`. The password comes
        /// from GAZETTE_IMAP_PASSWORD, never the URL; GAZETTE_IMAP_CA names a PEM file of
        /// extra trusted certificates. Processed messages get the `$GazetteProcessed` keyword.
        #[arg(long, value_name = "URL", conflicts_with = "paths")]
        imap: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Subscribers {
    /// Import a CSV with an `email` column (and optionally `name`).
    Import {
        file: PathBuf,
        /// Re-activate addresses that unsubscribed or bounced (only with their consent!).
        #[arg(long)]
        reactivate: bool,
    },
    /// Add one address.
    Add {
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Re-activate the address if it unsubscribed or bounced.
        #[arg(long)]
        reactivate: bool,
    },
    /// Mark an address unsubscribed (it is kept, so no import re-adds it).
    Remove { email: String },
    /// Print every subscriber: address, status, name.
    List,
    /// Write the list as CSV (standard output unless --out).
    Export {
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the number of active subscribers.
    Count,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The slug (its file name without .md).
    pub slug: String,
    /// Write every message as an .eml file under outbox/SLUG/dry-run/; send and record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send a test copy to these addresses only, outside the ledger.
    #[arg(long, value_name = "ADDR", num_args = 1..)]
    pub to: Vec<String>,
    /// SMTP connections at once (overrides smtp.concurrency).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: Option<u16>,
    /// Send again to recipients whose outcome is unknown (same Message-ID).
    #[arg(long)]
    pub retry_unknown: bool,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Send even though this issue was already sent under another id (same slug, or same
    /// title and body: everyone receives it again), or `check` finds errors in it (a
    /// missing image).
    #[arg(long)]
    pub force: bool,
}
