//! ringdropd: parses flags, sets up logging, runs the daemon until SIGINT/SIGTERM.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use ringdropd::{Config, Listener, RelayChoice};
use tracing_subscriber::EnvFilter;

/// ringdrop daemon: shares and fetches files over iroh, controlled by
/// `ringdropctl` (or any gRPC client) through a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Data directory (blob store, registry, secret key).
    #[arg(long, env = "RINGDROP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Control socket path.
    #[arg(long, env = "RINGDROP_SOCKET")]
    socket: Option<PathBuf>,
    /// Relays: "default", "disabled" or a relay URL.
    #[arg(long, env = "RINGDROP_RELAY")]
    relay: Option<RelayChoice>,
    /// Turn LAN discovery (mDNS) off.
    #[arg(long)]
    no_mdns: bool,
    /// UDP address of the endpoint, e.g. 127.0.0.1:0 (default: all
    /// interfaces on the port kept from the first start).
    #[arg(long, env = "RINGDROP_BIND")]
    bind: Option<SocketAddr>,
    /// Transfers that run at once.
    #[arg(long, env = "RINGDROP_MAX_CONCURRENT_TRANSFERS")]
    max_concurrent_transfers: Option<usize>,
    /// Where fetches go when the client names no destination.
    #[arg(long, env = "RINGDROP_DOWNLOAD_DIR")]
    download_dir: Option<PathBuf>,
    /// Upload limit for everything this node serves, e.g. 10M (bytes per second).
    #[arg(long, env = "RINGDROP_MAX_UPLOAD_RATE", value_parser = ringdropd::config::parse_bytes)]
    max_upload_rate: Option<u64>,
}

fn config(args: Args) -> Config {
    let mut c = Config::user_defaults();
    if let Some(d) = args.data_dir {
        c.data_dir = d;
    }
    if let Some(s) = args.socket {
        c.socket = s;
    }
    if let Some(r) = args.relay {
        c.relay = r;
    }
    if args.no_mdns {
        c.mdns = false;
    }
    c.bind = args.bind.or(c.bind);
    if let Some(n) = args.max_concurrent_transfers {
        c.max_concurrent_transfers = n;
    }
    if let Some(d) = args.download_dir {
        c.download_dir = d;
    }
    c.max_upload_rate = args.max_upload_rate.or(c.max_upload_rate);
    c
}

/// Installs the SIGTERM/SIGINT handlers now (so a signal that arrives
/// while starting up is not lost) and resolves on the first of them.
fn signals() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,iroh=warn,noq=warn,iroh_blobs=warn,swarm_discovery=warn")
        }))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let config = config(args);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringdropd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async {
        let stop = signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        ringdropd::run(config, Listener::Create, stop)
            .await
            .map_err(|e| e.to_string())
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringdropd: {e}");
            ExitCode::FAILURE
        }
    }
}
