//! ringdropctl: the thin client of ringdropd. Parse, call, print.

mod client;
mod commands;
mod error;
mod output;
mod web;

use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand};

use crate::{error::CliError, output::Out};

/// Share and fetch files peer to peer through the ringdrop daemon.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  ringdropctl share ~/talk.mp4\n  ringdropctl fetch rdrop... --out ~/Downloads\n  ringdropctl transfers ls\n  ringdropctl --json status\n\nExit codes: 0 ok, 1 operation failed, 2 usage or bad input, 3 daemon not reachable."
)]
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
    #[command(
        after_help = "Examples:\n  ringdropctl status\n  ringdropctl --json status | jq .bytes_served"
    )]
    Status,
    /// Print this node's endpoint id.
    #[command(
        after_help = "Example:\n  ringdropctl id   # give this to whoever adds you to a ring"
    )]
    Id,
    /// Share a file or a directory and print its ticket.
    #[command(
        after_help = "Examples:\n  ringdropctl share ~/Videos/talk.mp4\n  ringdropctl share ./project --ring team --name project-2026\n  ringdropctl share big.iso --ticket-format blob   # for sendme receive"
    )]
    Share(commands::share::ShareArgs),
    /// List or manage shares.
    #[command(subcommand, after_help = "Example:\n  ringdropctl shares ls")]
    Shares(commands::share::SharesCmd),
    /// Admins (root, the daemon's own user): give a row to a local user,
    /// e.g. one from before rows had owners (those are the daemon's user's).
    #[command(
        after_help = "Examples:\n  sudo ringdropctl give share 3b890b4e... alice\n  sudo ringdropctl give ring team alice\n  sudo ringdropctl give transfer 12 1001"
    )]
    Give {
        /// share, ring, peer, trust, sent or transfer.
        kind: String,
        /// The row: a share's full hash, a ring or address-book name, a
        /// sender's endpoint id, an offer or transfer id.
        key: String,
        /// User name or uid.
        user: String,
    },
    /// Stop sharing (by collection hash or a unique prefix of it).
    #[command(after_help = "Example:\n  ringdropctl unshare 3b890b4e")]
    Unshare {
        /// Collection hash or unique prefix.
        hash: String,
    },
    /// Fetch a ticket; the daemon does the work and keeps it going if you leave.
    #[command(
        after_help = "Examples:\n  ringdropctl fetch rdrop...                      # into the current directory\n  ringdropctl fetch rdrop... --out ~/Downloads\n  ringdropctl fetch blob... --out file.bin --force\n  ringdropctl --json fetch rdrop... --detach      # prints {\"id\": ...} at once"
    )]
    Fetch(commands::fetch::FetchArgs),
    /// Work with tickets.
    #[command(
        subcommand,
        after_help = "Example:\n  ringdropctl ticket inspect rdrop..."
    )]
    Ticket(commands::ticket::TicketCmd),
    /// List and follow transfers.
    #[command(
        subcommand,
        after_help = "Examples:\n  ringdropctl transfers ls\n  ringdropctl transfers wait 3\n  ringdropctl transfers pause 3 && ringdropctl transfers resume 3\n  ringdropctl transfers cancel 3 --purge\n  ringdropctl --json transfers watch"
    )]
    Transfers(commands::transfers::TransfersCmd),
    /// Rings: named groups of peers a share can be restricted to.
    #[command(
        subcommand,
        after_help = "Examples:\n  ringdropctl ring create team\n  ringdropctl ring add-member team bob --expires 7d\n  ringdropctl ring members team\n  ringdropctl ring remove-member team bob"
    )]
    Ring(commands::rings::RingCmd),
    /// The address book: names for endpoint ids.
    #[command(
        subcommand,
        after_help = "Examples:\n  ringdropctl peer add bob 1fe0b4394ecef2b1...\n  ringdropctl peer add alice rdrop...   # from a ticket alice printed\n  ringdropctl peer ls"
    )]
    Peer(commands::rings::PeerCmd),
    /// Ask another node what it shares with you.
    #[command(subcommand, after_help = "Example:\n  ringdropctl remote ls alice")]
    Remote(commands::rings::RemoteCmd),
    /// What this node is serving right now, to whom, how fast.
    #[command(after_help = "Example:\n  ringdropctl uploads")]
    Uploads,
    /// Show or set bandwidth limits: the node's (admins), alternative
    /// ones on a schedule, a peer's, a transfer's own (its owner).
    /// Rates are bytes per second (10M, 512K); 0 or unlimited for none.
    #[command(
        after_help = "Examples:\n  ringdropctl limits\n  sudo ringdropctl limits --up 10M --down 50M\n  sudo ringdropctl limits --alt-up 1M --alt-hours 08:00-18:00 --alt-days mon-fri\n  sudo ringdropctl limits --peer bob --up 2M\n  ringdropctl limits --transfer 12 --down 5M\n  sudo ringdropctl limits --reset   # back to the config's"
    )]
    Limits(commands::limits::LimitsArgs),
    /// Send a file or directory to a peer: it arrives in the peer's inbox
    /// (now, or when it can be reached).
    #[command(
        after_help = "Examples:\n  ringdropctl send report.pdf --to alice\n  ringdropctl send ./photos --to bob --expires 2d"
    )]
    Send(commands::contacts::SendArgs),
    /// Offers you sent, with receipts: queued, delivered, accepted, fetching, completed.
    #[command(after_help = "Examples:\n  ringdropctl sent\n  ringdropctl sent withdraw 3")]
    Sent(commands::contacts::SentArgs),
    /// Offers sent to you.
    #[command(
        after_help = "Examples:\n  ringdropctl inbox\n  ringdropctl inbox accept 2 --out ~/Downloads\n  ringdropctl inbox reject 3"
    )]
    Inbox(commands::contacts::InboxArgs),
    /// Serve a page for this node on loopback (as you: every action is
    /// judged as your user) and open it in a browser.
    #[command(
        after_help = "Examples:\n  ringdropctl web\n  ringdropctl web --listen 127.0.0.1:8400 --no-open\n  systemctl --user start ringdrop-web   # the same, as a user unit"
    )]
    Web(web::WebArgs),
    /// Print what happens (transfers ending, shares served) as it happens.
    #[command(
        after_help = "Examples:\n  ringdropctl events\n  ringdropctl --json events | while read -r e; do ...; done"
    )]
    Events,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ringdropctl completions bash > ~/.local/share/bash-completion/completions/ringdropctl\n  ringdropctl completions zsh > ~/.zfunc/_ringdropctl\n  ringdropctl completions fish > ~/.config/fish/completions/ringdropctl.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per command into a directory.
    #[command(
        after_help = "Examples:\n  ringdropctl man | man -l -\n  ringdropctl man --out /usr/local/share/man/man1"
    )]
    Man {
        /// Directory to write ringdropctl.1 and ringdropctl-<command>.1 into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let out = Out::new(cli.json, cli.quiet);
    let socket = cli.socket;
    match cli.command {
        Command::Status => commands::status::status(socket, &out).await,
        Command::Limits(args) => commands::limits::limits(socket, &out, args).await,
        Command::Id => commands::status::id(socket, &out).await,
        Command::Share(args) => commands::share::share(socket, &out, args).await,
        Command::Shares(cmd) => commands::share::shares(socket, &out, cmd).await,
        Command::Give { kind, key, user } => {
            commands::status::give(socket, &out, kind, key, user).await
        }
        Command::Unshare { hash } => commands::share::unshare(socket, &out, hash).await,
        Command::Fetch(args) => commands::fetch::fetch(socket, &out, args).await,
        Command::Ticket(cmd) => commands::ticket::run(socket, &out, cmd).await,
        Command::Transfers(cmd) => commands::transfers::run(socket, &out, cmd).await,
        Command::Ring(cmd) => commands::rings::ring(socket, &out, cmd).await,
        Command::Peer(cmd) => commands::rings::peer(socket, &out, cmd).await,
        Command::Remote(cmd) => commands::rings::remote(socket, &out, cmd).await,
        Command::Uploads => commands::rings::uploads(socket, &out).await,
        Command::Events => commands::events::events(socket, &out).await,
        Command::Web(args) => web::web(socket, &out, args).await,
        Command::Send(args) => commands::contacts::send(socket, &out, args).await,
        Command::Sent(args) => commands::contacts::sent(socket, &out, args).await,
        Command::Inbox(args) => commands::contacts::inbox(socket, &out, args).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ringdropctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { out: dir } => man(dir),
    }
}

fn man(dir: Option<PathBuf>) -> Result<(), CliError> {
    let cmd = Cli::command();
    let res = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).and_then(|_| clap_mangen::generate_to(cmd, &dir))
        }
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
    };
    res.map_err(|e| CliError::failed(format!("cannot write the man page: {e}")))
}

fn main() -> ExitCode {
    // SIGPIPE stays ignored (Rust's default): a daemon that restarts closes
    // the control socket under a client that follows a transfer, and the
    // client must live to reconnect. A closed stdout (`| head`) ends it
    // quietly in `output::line` instead.
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
