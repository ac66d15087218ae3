//! Builds the iroh endpoint: secret key from the data dir, relays as
//! configured, LAN discovery when asked, and a UDP port that survives
//! restarts. Nothing here waits for the internet.

use std::{
    fs,
    io::Write,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use iroh::{
    endpoint::{presets, BindOpts, IdleTimeout, PortmapperConfig, QuicTransportConfig},
    Endpoint, RelayMode, SecretKey,
};
use tracing::{info, warn};

use crate::config::{Config, RelayChoice};

const KEY_FILE: &str = "secret.key";
const PORT_FILE: &str = "port";

/// Errors bringing the endpoint up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("secret key {path}: {msg}")]
    Key { path: String, msg: String },
    #[error("cannot bind the endpoint's UDP socket {addr}: {msg}")]
    Bind { addr: String, msg: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Loads the secret key, creating it (mode 0600) on first start.
fn load_or_create_key(data_dir: &Path) -> Result<SecretKey, NodeError> {
    let path = data_dir.join(KEY_FILE);
    let key_err = |msg: String| NodeError::Key {
        path: path.display().to_string(),
        msg,
    };
    match fs::read(&path) {
        Ok(bytes) => {
            let meta = fs::metadata(&path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                warn!(path = %path.display(), "secret key is readable by others; tightening to 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| key_err(format!("expected 32 bytes, found {}: the file is damaged; move it away to create a new identity", bytes.len())))?;
            Ok(SecretKey::from_bytes(&arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let tmp = path.with_extension("tmp");
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&key.to_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            info!(path = %path.display(), "created a new node identity");
            Ok(key)
        }
        Err(e) => Err(key_err(e.to_string())),
    }
}

fn saved_port(data_dir: &Path) -> Option<u16> {
    fs::read_to_string(data_dir.join(PORT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn save_port(data_dir: &Path, port: u16) -> std::io::Result<()> {
    let tmp = data_dir.join("port.tmp");
    fs::write(&tmp, format!("{port}\n"))?;
    fs::rename(tmp, data_dir.join(PORT_FILE))
}

/// Streams a peer may have open at once on one connection.
const MAX_PEER_STREAMS: u32 = 16;
/// Bytes a peer may have in flight to us on one connection.
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

fn builder(config: &Config, key: SecretKey) -> iroh::endpoint::Builder {
    // A peer that went away (killed, unplugged) is noticed after
    // `peer_timeout` of silence: keep-alives go out at a third of it.
    // (A path that goes idle cannot be closed while it is the last one, so
    // the connection's own idle timeout has to match.)
    let transport = QuicTransportConfig::builder()
        .max_idle_timeout(IdleTimeout::try_from(config.peer_timeout).ok())
        .keep_alive_interval(config.peer_timeout / 3)
        .default_path_max_idle_timeout(config.peer_timeout)
        .default_path_keep_alive_interval(config.peer_timeout / 3)
        // Each stream a peer opens may hold a request buffer of up to 1 MiB
        // in the provider until the request is complete; our own fetches
        // use one stream at a time.
        .max_concurrent_bidi_streams(MAX_PEER_STREAMS.into())
        // No protocol of ours uses unidirectional streams (QUIC's default
        // lets a peer open 100, each with its receive window).
        .max_concurrent_uni_streams(0u32.into())
        // What a peer can make this node buffer on one connection, across
        // its streams (QUIC's default is unbounded). Above one stream's
        // window (1.25 MB), so our own single-stream fetches are not held
        // back by it.
        .receive_window(CONNECTION_WINDOW.into())
        .build();
    let mut b = Endpoint::builder(presets::N0)
        .secret_key(key)
        .transport_config(transport);
    b = match &config.relay {
        RelayChoice::Default => b,
        // No relay also means no internet address lookup (pkarr / DNS).
        RelayChoice::Disabled => b.relay_mode(RelayMode::Disabled).clear_address_lookup(),
        RelayChoice::Url(url) => b.relay_mode(RelayMode::custom([url.clone()])),
    };
    // Offline or loopback-only nodes must not probe the LAN gateway
    // (UPnP / PCP / NAT-PMP): no packet leaves the machine.
    let loopback = config.bind.is_some_and(|a| a.ip().is_loopback());
    if config.relay == RelayChoice::Disabled || loopback {
        b = b.portmapper_config(PortmapperConfig::Disabled);
    }
    b
}

async fn try_bind(config: &Config, key: SecretKey, port: u16) -> Result<Endpoint, NodeError> {
    let b = builder(config, key).clear_ip_transports();
    let (b, shown) = match config.bind {
        Some(addr) => (
            b.bind_addr(addr).map_err(|e| NodeError::Bind {
                addr: addr.to_string(),
                msg: e.to_string(),
            })?,
            addr.to_string(),
        ),
        None => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
            let b = b
                .bind_addr(v4)
                .and_then(|b| b.bind_addr_with_opts(v6, BindOpts::default().set_is_required(false)))
                .map_err(|e| NodeError::Bind {
                    addr: v4.to_string(),
                    msg: e.to_string(),
                })?;
            (b, v4.to_string())
        }
    };
    b.bind().await.map_err(|e| NodeError::Bind {
        addr: shown,
        msg: e.to_string(),
    })
}

/// Binds the endpoint. The UDP port chosen on first start is written to the
/// data dir and reused, so tickets stay valid across restarts; if it is
/// taken by now, a new one is chosen (and kept) with a warning.
pub async fn bind_endpoint(config: &Config) -> Result<Endpoint, NodeError> {
    let key = load_or_create_key(&config.data_dir)?;
    let endpoint = match config.bind {
        Some(_) => try_bind(config, key, 0).await?,
        None => {
            let port = saved_port(&config.data_dir).unwrap_or(0);
            match try_bind(config, key.clone(), port).await {
                Ok(ep) => ep,
                Err(e) if port != 0 => {
                    warn!("port {port} kept from the last start is not available ({e}); choosing a new one: tickets made before now will not reach this node directly");
                    try_bind(config, key, 0).await?
                }
                Err(e) => return Err(e),
            }
        }
    };
    // With --bind the user chose the socket; otherwise keep the port.
    if config.bind.is_none() {
        if let Some(port) = endpoint.bound_sockets().iter().find(|a| a.is_ipv4()) {
            save_port(&config.data_dir, port.port())?;
        }
    }
    if config.mdns {
        enable_mdns(&endpoint);
    }
    Ok(endpoint)
}

/// LAN discovery is best effort: a network that allows no multicast leaves
/// the daemon running without it.
fn enable_mdns(endpoint: &Endpoint) {
    let lookup = match iroh_mdns_address_lookup::MdnsAddressLookup::builder().build(endpoint.id()) {
        Ok(l) => l,
        Err(e) => {
            warn!("LAN discovery (mDNS) unavailable: {e}");
            return;
        }
    };
    match endpoint.address_lookup() {
        Ok(services) => services.add(lookup),
        Err(e) => warn!("LAN discovery (mDNS) unavailable: {e}"),
    }
}
