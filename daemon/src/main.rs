//! ringdropd: parses flags, builds the config (flags > env > file >
//! defaults), sets up logging, takes a socket-activated listener if systemd
//! passed one, and runs the daemon until SIGINT/SIGTERM.

use std::{os::fd::FromRawFd, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser};
use ringdropd::{
    config::{self, Layer, Mode},
    Config, Listener,
};
use tracing_subscriber::EnvFilter;

/// ringdrop daemon: shares and fetches files over iroh, controlled by
/// `ringdropctl` (or any gRPC client) through a Unix socket.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Settings come from flags, then RINGDROP_* variables (RINGDROP_RELAY, RINGDROP_DATA_DIR, ...), \
then the config file (user: ~/.config/ringdrop/ringdropd.toml, system: /etc/ringdrop/ringdropd.toml), then defaults.\n\n\
Examples:\n  ringdropd                                   # user daemon, defaults\n  \
ringdropd --relay disabled --no-mdns        # offline / LAN-only\n  \
ringdropd --data-dir /tmp/d --socket /tmp/d.sock --bind 127.0.0.1:0\n  \
ringdropd --print-config                    # show the effective settings"
)]
struct Args {
    /// Config file (default: the user or system one if it exists; also $RINGDROP_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// System service mode: /etc/ringdrop, /var/lib/ringdrop, socket 0660 for group ringdrop.
    #[arg(long)]
    system: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Print the man page (roff) and exit.
    #[arg(long, hide = true)]
    print_man: bool,
    /// Data directory (blob store, registry, secret key).
    #[arg(long)]
    data_dir: Option<String>,
    /// Control socket path.
    #[arg(long)]
    socket: Option<String>,
    /// Relays: "default", "disabled" or a relay URL.
    #[arg(long)]
    relay: Option<String>,
    /// Turn LAN discovery (mDNS) off.
    #[arg(long)]
    no_mdns: bool,
    /// UDP address of the endpoint, e.g. 127.0.0.1:0 (default: all
    /// interfaces on the port kept from the first start).
    #[arg(long)]
    bind: Option<String>,
    /// Transfers that run at once (the rest queue).
    #[arg(long)]
    max_concurrent_transfers: Option<String>,
    /// Where fetches go when the client names no destination.
    #[arg(long)]
    download_dir: Option<String>,
    /// Upload limit for everything this node serves, e.g. 10M (bytes per second).
    #[arg(long)]
    max_upload_rate: Option<String>,
    /// Download limit for everything this node fetches, e.g. 10M (bytes per second).
    #[arg(long)]
    max_download_rate: Option<String>,
    /// How long a silent peer is given before its connection is dropped and
    /// transfers reconnect, e.g. 5s (1s to 15s).
    #[arg(long)]
    peer_timeout: Option<String>,
    /// Log filter, e.g. info or info,ringdropd=debug (RUST_LOG overrides).
    #[arg(long)]
    log: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// (a bearer token is required unless metrics_public).
    #[arg(long)]
    metrics_listen: Option<String>,
}

impl Args {
    fn layer(&self) -> Layer {
        let mut l = Layer::new("flags");
        let pairs: [(&'static str, &Option<String>); 11] = [
            ("data_dir", &self.data_dir),
            ("socket", &self.socket),
            ("relay", &self.relay),
            ("bind", &self.bind),
            ("max_concurrent_transfers", &self.max_concurrent_transfers),
            ("download_dir", &self.download_dir),
            ("max_upload_rate", &self.max_upload_rate),
            ("max_download_rate", &self.max_download_rate),
            ("peer_timeout", &self.peer_timeout),
            ("log", &self.log),
            ("metrics_listen", &self.metrics_listen),
        ];
        for (key, v) in pairs {
            if let Some(v) = v {
                l.set(key, v.clone());
            }
        }
        if self.no_mdns {
            l.set("mdns", "false");
        }
        l
    }
}

fn init_logging(config: &Config) {
    // Under systemd, journald adds timestamps and does not want colours.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if journald {
        builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .init();
    } else {
        use std::io::IsTerminal;
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// A listening socket passed by systemd (socket activation), if any.
fn inherited_listener() -> Result<Option<Listener>, String> {
    let fds: Vec<_> = sd_notify::listen_fds()
        .map_err(|e| format!("socket activation: {e}"))?
        .collect();
    let Some(fd) = fds.first().copied() else {
        return Ok(None);
    };
    if fds.len() > 1 {
        return Err(format!(
            "socket activation passed {} sockets; ringdropd wants exactly one (ListenStream=...)",
            fds.len()
        ));
    }
    // SAFETY: systemd hands us this open listening socket (fd 3) and nothing
    // else in the process owns it.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("socket activation: {e}"))?;
    Ok(Some(Listener::Inherited(std_listener)))
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
    if args.print_man {
        let man = clap_mangen::Man::new(Args::command());
        if let Err(e) = man.render(&mut std::io::stdout()) {
            eprintln!("ringdropd: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    let mode = if args.system {
        Mode::System
    } else {
        Mode::User
    };
    let (config, file) = match config::load(mode, args.config.as_deref(), &args.layer()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringdropd: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        if let Some(f) = &file {
            println!("# read from {}", f.display());
        }
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    let listener = match inherited_listener() {
        Ok(l) => l.unwrap_or(Listener::Create),
        Err(e) => {
            eprintln!("ringdropd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringdropd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async {
        let stop = signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        ringdropd::run(config, listener, stop)
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
