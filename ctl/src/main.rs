//! ringdropctl: the thin client of ringdropd. Parse, call, print.

mod client;
mod commands;
mod error;
mod output;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{error::CliError, output::Out};

/// Share and fetch files peer to peer through the ringdrop daemon.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Control socket of ringdropd (default: $RINGDROP_SOCKET, the user socket, then /run/ringdrop/ringdropd.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print one JSON document (streaming commands: one object per line).
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars or hints; errors only.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the daemon's identity, addresses and counters.
    Status,
    /// Print this node's endpoint id.
    Id,
    /// Share a file or a directory and print its ticket.
    Share(commands::share::ShareArgs),
    /// List or manage shares.
    #[command(subcommand)]
    Shares(commands::share::SharesCmd),
    /// Stop sharing (by collection hash or a unique prefix of it).
    Unshare {
        /// Collection hash or unique prefix.
        hash: String,
    },
    /// Fetch a ticket; the daemon does the work and keeps it going if you leave.
    Fetch(commands::fetch::FetchArgs),
    /// Work with tickets.
    #[command(subcommand)]
    Ticket(commands::ticket::TicketCmd),
    /// List and follow transfers.
    #[command(subcommand)]
    Transfers(commands::transfers::TransfersCmd),
    /// Rings: named groups of peers a share can be restricted to.
    #[command(subcommand)]
    Ring(commands::rings::RingCmd),
    /// The address book: names for endpoint ids.
    #[command(subcommand)]
    Peer(commands::rings::PeerCmd),
    /// Ask another node what it shares with you.
    #[command(subcommand)]
    Remote(commands::rings::RemoteCmd),
    /// What this node is serving right now, to whom, how fast.
    Uploads,
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let out = Out::new(cli.json, cli.quiet);
    let socket = cli.socket;
    match cli.command {
        Command::Status => commands::status::status(socket, &out).await,
        Command::Id => commands::status::id(socket, &out).await,
        Command::Share(args) => commands::share::share(socket, &out, args).await,
        Command::Shares(cmd) => commands::share::shares(socket, &out, cmd).await,
        Command::Unshare { hash } => commands::share::unshare(socket, &out, hash).await,
        Command::Fetch(args) => commands::fetch::fetch(socket, &out, args).await,
        Command::Ticket(cmd) => commands::ticket::run(socket, &out, cmd).await,
        Command::Transfers(cmd) => commands::transfers::run(socket, &out, cmd).await,
        Command::Ring(cmd) => commands::rings::ring(socket, &out, cmd).await,
        Command::Peer(cmd) => commands::rings::peer(socket, &out, cmd).await,
        Command::Remote(cmd) => commands::rings::remote(socket, &out, cmd).await,
        Command::Uploads => commands::rings::uploads(socket, &out).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringdropctl: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.print(json);
            ExitCode::from(e.code)
        }
    }
}
