//! The `Daemon` facade: owns endpoint, store, registry, gate and transfer
//! manager. RPC handlers call one method of it each; the methods live in
//! one file per noun beside this one, and this file only starts and stops
//! the node.

mod access;
mod limits;
mod offers;
mod peers;
mod rings;
mod shares;
mod status;
mod transfers;
mod upkeep;
mod view;
mod watch;

pub use access::AccessError;
pub use limits::{LimitsChange, LimitsError, LimitsView, PeerChange, RateChange};
pub use offers::{ContactError, OFFER_EXPIRES};
pub use peers::{PeerNames, PeerRef};
pub use rings::{MAX_INVITE_USES, MAX_INVITE_VALID};
pub use shares::TicketFormat;
pub use status::{EventFeed, Seen, Status};
pub use transfers::Dest;
pub use view::{Created, Named, ShareView, UploadView};
pub use watch::{TransferFeed, TransferWatch};

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use iroh::{protocol::Router, Endpoint};
use iroh_blobs::store::{
    fs::{options::Options, FsStore},
    GcConfig,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    access::slots::Limited,
    catalog::{self, CatalogServer},
    config::Config,
    limits::Bandwidth,
    node::{self, NodeError},
    provider::{spawn_gate, BlobsGate, GateStats, Uploads},
    registry::{Registry, RegistryError},
    tasks::Tasks,
    transfers::TransferManager,
};

/// Errors starting the daemon.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {msg}")]
    DataDir { path: PathBuf, msg: String },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot open the blob store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

struct Inner {
    config: Config,
    endpoint: Endpoint,
    store: FsStore,
    registry: Registry,
    router: Router,
    transfers: TransferManager,
    gate: BlobsGate,
    gate_stats: Arc<GateStats>,
    policy: Arc<crate::access::policy::Policy>,
    uploads: Uploads,
    handoffs: crate::shares::handed::Handoffs,
    events: crate::events::Events,
    contacts: crate::offers::protocol::Shared,
    started: Instant,
    shutdown: CancellationToken,
    /// The background loops, request tasks, offer deliveries and hooks:
    /// cancelled first at shutdown.
    tasks: Tasks,
    /// Serving peers: the gate, request streams and upload followers.
    /// They end when the endpoint is shut down.
    provider_tasks: Tasks,
    /// The bandwidth limits in force.
    bandwidth: Bandwidth,
    /// What this node holds of ring shares, and the rosters.
    swarm: crate::swarm::Swarm,
    /// Shared files in the content layer.
    content: crate::content::Shared,
}

/// The running node; cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("endpoint_id", &self.inner.endpoint.id())
            .finish_non_exhaustive()
    }
}

/// The data dir is private and `download_dir` is not inside it.
fn check_dirs(config: &Config) -> Result<(), StartError> {
    create_private_dir(&config.data_dir)?;
    let data = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    let downloads =
        std::fs::canonicalize(&config.download_dir).unwrap_or(config.download_dir.clone());
    if downloads.starts_with(&data) {
        return Err(StartError::DataDir {
            path: config.data_dir.clone(),
            msg: format!(
                "download_dir {} is inside it; the data dir is the daemon's alone: set download_dir elsewhere (the system default is /var/lib/ringdrop-downloads)",
                config.download_dir.display()
            ),
        });
    }
    Ok(())
}

/// Whether a peer is a contact (ring member, address-book peer, owner of
/// a ring we joined): contacts may use every connection slot, strangers
/// together only half.
/// The bandwidth limits to start with: those set with `ringdropctl limits`
/// (kept in the registry), else the config's.
async fn bandwidth_of(config: &Config, registry: &Registry) -> Result<Bandwidth, StartError> {
    let limits = match registry.limits().await? {
        Some(set) => {
            if set != config.limits && config.limits != Default::default() {
                info!("bandwidth limits set with `ringdropctl limits` are in force, not the config's (`ringdropctl limits --reset` returns to those)");
            }
            set
        }
        None => config.limits.clone(),
    };
    Ok(Bandwidth::new(limits))
}

/// The blobs protocol: every request decided by the gate task, every
/// byte served paced by the upload limits.
fn blobs_gate(
    sources: crate::provider::Sources,
    registry: &Registry,
    policy: &Arc<crate::access::policy::Policy>,
    stats: &Arc<GateStats>,
    uploads: &Uploads,
    tasks: &Tasks,
    bandwidth: &Bandwidth,
) -> BlobsGate {
    let decides = spawn_gate(
        registry.clone(),
        policy.clone(),
        stats.clone(),
        uploads.clone(),
        tasks.clone(),
    );
    let known = contacts_of(registry);
    BlobsGate::new(sources, decides, known, tasks.clone(), bandwidth.clone())
}

/// What this node holds of ring shares and the rosters, and the swarm
/// protocol's server over them.
fn swarm_of(
    config: &Config,
    registry: &Registry,
    policy: &Arc<crate::access::policy::Policy>,
    endpoint: &Endpoint,
    (bandwidth, tasks): (&Bandwidth, &Tasks),
) -> (crate::swarm::Swarm, crate::swarm::server::SwarmServer) {
    let swarm = crate::swarm::Swarm::new(crate::swarm::Settings {
        roster_valid: config.roster_valid,
        reserve: config.reserve,
    });
    let server = crate::swarm::server::SwarmServer::new(crate::swarm::server::Parts {
        swarm: swarm.clone(),
        registry: registry.clone(),
        policy: policy.clone(),
        key: endpoint.secret_key().clone(),
        known: contacts_of(registry),
        bandwidth: bandwidth.clone(),
        tasks: tasks.clone(),
    });
    (swarm, server)
}

fn contacts_of(registry: &Registry) -> crate::access::slots::Known {
    let registry = registry.clone();
    Arc::new(move |peer: iroh::EndpointId| {
        let registry = registry.clone();
        Box::pin(async move {
            let now = ringdrop_proto::clock::now();
            matches!(registry.is_contact(peer.as_bytes(), now).await, Ok(true))
        })
    })
}

/// The protocols peers reach: blobs through the gate, and our small ones
/// (swarm, catalog, invites, offers) behind connection slots.
fn serve_peers(
    endpoint: &Endpoint,
    (gate, swarm): (&BlobsGate, crate::swarm::server::SwarmServer),
    registry: &Registry,
    policy: &Arc<crate::access::policy::Policy>,
    hub: &crate::events::Events,
    contacts: &crate::offers::protocol::Shared,
) -> Router {
    let known = contacts_of(registry);
    Router::builder(endpoint.clone())
        .accept(iroh_blobs::ALPN, gate.clone())
        .accept(crate::swarm::ALPN, swarm)
        .accept(
            catalog::ALPN,
            Limited::small(
                "catalog",
                CatalogServer::new(registry.clone(), policy.clone()),
                known.clone(),
            ),
        )
        .accept(
            crate::rings::invites::ALPN,
            Limited::small(
                "invite",
                crate::rings::invites::InviteServer::new(registry.clone(), hub.clone()),
                known.clone(),
            ),
        )
        .accept(
            crate::offers::protocol::ALPN,
            Limited::small(
                "offer",
                crate::offers::protocol::OfferServer::new(
                    registry.clone(),
                    hub.clone(),
                    contacts.clone(),
                ),
                known,
            ),
        )
        .spawn()
}

/// Creates the data dir (0700) or checks the one there: it must be a
/// directory of the daemon's own user that no one else may read, write or
/// enter (it holds the node's key, the registry and small shared files
/// inline in the store's database).
fn create_private_dir(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let err = |msg: String| StartError::DataDir {
        path: path.to_path_buf(),
        msg,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| err(e.to_string()))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err(
            "is not a directory (a symlink is not accepted either): give --data-dir a directory"
                .into(),
        ));
    }
    if meta.uid() != crate::authority::my_uid() {
        return Err(err(format!(
            "belongs to uid {}, not to the user ringdropd runs as ({}): chown it, or choose another --data-dir",
            meta.uid(),
            crate::authority::my_uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(err(format!(
            "other users may open it (mode {:o}); it holds the node's secret key and registry: run `chmod 700 {}` (the unit sets StateDirectoryMode=0700)",
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    Ok(())
}

/// The blob store in the data dir, with its garbage collection.
async fn open_store(config: &Config) -> Result<FsStore, StartError> {
    let blobs_dir = config.data_dir.join("blobs");
    let mut opts = Options::new(&blobs_dir);
    opts.gc = Some(GcConfig {
        interval: config.gc_interval,
        add_protected: None,
    });
    let store = FsStore::load_with_opts(blobs_dir.join("blobs.db"), opts)
        .await
        .map_err(|e| StartError::Store(e.into()))?;
    Ok(store)
}

impl Daemon {
    /// Opens store and registry, binds the endpoint and starts serving
    /// peers. Never waits for the internet.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        check_dirs(&config)?;
        let registry = Registry::open(&config.data_dir.join("registry.redb")).await?;
        let store = open_store(&config).await?;
        let endpoint = node::bind_endpoint(&config).await?;

        let hub = crate::events::Events::default();
        let gate_stats = Arc::new(GateStats {
            counts: hub.counts().clone(),
            ..GateStats::default()
        });
        let policy = Arc::new(crate::access::policy::Policy::new(registry.clone()));
        let contacts = crate::offers::protocol::Shared::default();
        // Serving peers has its own tasks: they end when the endpoint is
        // shut down, after everything else has stopped.
        let provider_tasks = Tasks::default();
        let uploads = Uploads::new(hub.clone(), provider_tasks.clone());
        let bandwidth = bandwidth_of(&config, &registry).await?;
        let content = crate::content::Shared::new(registry.clone(), config.data_dir.clone());
        let sources = crate::provider::Sources {
            store: (*store).clone(),
            shared: content.clone(),
        };
        let gate = blobs_gate(
            sources,
            &registry,
            &policy,
            &gate_stats,
            &uploads,
            &provider_tasks,
            &bandwidth,
        );
        let (swarm, swarm_server) = swarm_of(
            &config,
            &registry,
            &policy,
            &endpoint,
            (&bandwidth, &provider_tasks),
        );
        let router = serve_peers(
            &endpoint,
            (&gate, swarm_server),
            &registry,
            &policy,
            &hub,
            &contacts,
        );

        let shutdown = CancellationToken::new();
        let tasks = Tasks::new(shutdown.child_token());
        let services = crate::transfers::Services {
            registry: registry.clone(),
            store: (*store).clone(),
            endpoint: endpoint.clone(),
            events: hub.clone(),
            bandwidth: bandwidth.clone(),
            swarm: swarm.clone(),
        };
        let (dir, at_once) = (config.data_dir.clone(), config.max_concurrent_transfers);
        let transfers = TransferManager::new(services, dir, at_once, shutdown.clone());
        let daemon = Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                store,
                registry,
                router,
                transfers,
                gate,
                gate_stats,
                policy,
                uploads,
                handoffs: Default::default(),
                events: hub,
                contacts,
                started: Instant::now(),
                tasks,
                provider_tasks,
                bandwidth,
                shutdown,
                swarm,
                content,
            }),
        };
        daemon.begin().await;
        Ok(daemon)
    }

    /// The first steps of a started daemon: the store's tags checked, the
    /// background loops started, unfinished transfers resumed.
    async fn begin(&self) {
        self.reconcile().await;
        match self.inner.transfers.hold_again().await {
            Ok(0) => {}
            Ok(n) => info!("re-serving what {n} completed ring fetches hold"),
            Err(e) => warn!("cannot read what completed fetches hold: {e}"),
        }
        self.spawn_loops();
        let resumed = self
            .inner
            .transfers
            .resume_unfinished()
            .await
            .unwrap_or_else(|e| {
                warn!("cannot resume transfers: {e}");
                0
            });
        info!(
            endpoint_id = %self.inner.endpoint.id(),
            resumed,
            "ringdropd started"
        );
    }

    /// Runs `work` for a request as a tracked task (shutdown waits for it;
    /// a panic is logged with `name`).
    pub fn spawn(
        &self,
        name: &'static str,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.inner.tasks.spawn(name, work);
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This node's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// A token cancelled when the daemon shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Shutdown in this order (the RPC server has already stopped
    /// accepting): cancel everything; wait for the daemon's tasks (loops,
    /// requests, deliveries, hooks), then for the transfer workers to
    /// persist their states; sync the store; shut the router (endpoint)
    /// down and give the provider's tasks it fed 5 s to end; then the
    /// store and the registry.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.stop().await;
        self.inner.transfers.wait_stopped().await;
        if let Err(e) = self.inner.store.sync_db().await {
            warn!("store sync on shutdown failed: {e}");
        }
        if let Err(e) = self.inner.router.shutdown().await {
            warn!("endpoint shutdown: {e}");
        }
        // The endpoint's provider is gone, so the gate's channel and the
        // request streams close: the provider's tasks end by themselves.
        let grace = std::time::Duration::from_secs(5);
        self.inner
            .provider_tasks
            .stop_within(grace, "provider")
            .await;
        if let Err(e) = self.inner.store.shutdown().await {
            warn!("store shutdown: {e}");
        }
        self.inner.registry.close().await;
        info!("ringdropd stopped");
    }
}
