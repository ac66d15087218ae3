//! `/metrics` over HTTP for Prometheus: iroh's endpoint metrics and the
//! `ringdrop` group in the OpenMetrics text format. A loopback port is
//! open to every local user, so a scrape must send the bearer token
//! (`metrics_token_file`, Prometheus' `authorization.credentials_file`)
//! unless `metrics_public` says the numbers are for anyone.

use std::{
    convert::Infallible,
    future::Future,
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use iroh_metrics::{MetricsGroup, Registry};
use ringdrop_proto::secret;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ByDirection, ByState, Counts, Direction, StateLabel};
use crate::registry::TransferState;

/// Scrapes served at once.
const MAX_CONNECTIONS: usize = 16;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Who may scrape.
#[derive(Debug, Clone)]
pub enum Auth {
    Public,
    Bearer(String),
}

impl Auth {
    /// `metrics_public`, or the token in `file` (made, 0600, with a new
    /// random token when missing). A file any user may read is refused:
    /// its token would guard nothing.
    pub fn load(public: bool, file: &Path) -> Result<Self, String> {
        if public {
            return Ok(Auth::Public);
        }
        let shown = file.display();
        match std::fs::metadata(file) {
            Ok(meta) => {
                if meta.mode() & 0o007 != 0 {
                    return Err(format!(
                        "{shown} may be read by every user: chmod o-rwx it (its token guards the metrics)"
                    ));
                }
                let token = std::fs::read_to_string(file)
                    .map_err(|e| format!("{shown}: {e}"))?
                    .trim()
                    .to_string();
                if token.is_empty() {
                    return Err(format!(
                        "{shown} is empty: put a token in it, or remove it to have one made"
                    ));
                }
                Ok(Auth::Bearer(token))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = secret::token_hex(32).map_err(|e| format!("no random token: {e}"))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(file)
                    .map_err(|e| format!("{shown}: {e}"))?;
                writeln!(f, "{token}")
                    .and_then(|_| f.sync_all())
                    .map_err(|e| format!("{shown}: {e}"))?;
                info!("metrics: a new bearer token is in {shown}");
                Ok(Auth::Bearer(token))
            }
            Err(e) => Err(format!("{shown}: {e}")),
        }
    }

    fn allows(&self, headers: &http::HeaderMap) -> bool {
        let Auth::Bearer(token) = self else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        secret::same(given.as_bytes(), token.as_bytes())
    }
}

/// The default token file.
pub fn default_token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("metrics-token")
}

/// What is read at each scrape rather than counted as it happens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub registry: crate::registry::Counts,
    pub registry_bytes: u64,
    /// Bandwidth takes that waited: up, down.
    pub waits: (u64, u64),
}

/// Where a scrape's sample comes from (the daemon).
pub trait Sampler: Send + Sync + 'static {
    fn sample(&self) -> impl Future<Output = Result<Sample, String>> + Send;
}

/// Serves `/metrics` on `listener` until `stop`.
pub async fn serve<S: Sampler>(
    listener: TcpListener,
    auth: Auth,
    endpoint: &iroh::metrics::EndpointMetrics,
    counts: Arc<Counts>,
    sampler: S,
    stop: CancellationToken,
) {
    let mut registry = Registry::default();
    registry.register_all_prefixed(endpoint);
    registry.register(counts.clone() as Arc<dyn MetricsGroup>);
    let scrape = Arc::new(Scrape {
        registry,
        counts,
        sampler,
        auth,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (scrape, stop) = (scrape.clone(), stop.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let scrape = scrape.clone();
                async move { Ok::<_, Infallible>(scrape.answer(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
}

struct Scrape<S> {
    registry: Registry,
    counts: Arc<Counts>,
    sampler: S,
    auth: Auth,
}

impl<S: Sampler> Scrape<S> {
    async fn answer<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/metrics" {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: the metrics are at /metrics\n",
            );
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        }
        if !self.auth.allows(req.headers()) {
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: the one in metrics_token_file\n",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        match self.text().await {
            Ok(text) => {
                let mut r = Response::new(Full::new(Bytes::from(text)));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
                r
            }
            Err(e) => plain(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
        }
    }

    async fn text(&self) -> Result<String, String> {
        let s = self.sampler.sample().await?;
        let c = &self.counts;
        c.served_bytes.set(s.registry.served);
        c.shares.set(s.registry.shares as i64);
        c.registry_bytes.set(s.registry_bytes as i64);
        for state in TransferState::ALL {
            let n = s.registry.by_state[state as usize];
            let state = label(state);
            c.transfers.get_or_create(&ByState { state }).set(n as i64);
        }
        for (direction, n) in [(Direction::Up, s.waits.0), (Direction::Down, s.waits.1)] {
            c.throttle_waits
                .get_or_create(&ByDirection { direction })
                .set(n);
        }
        let mut text = String::new();
        self.registry
            .encode_openmetrics_to_writer(&mut text)
            .and_then(|_| iroh_metrics::encoding::encode_openmetrics_eof(&mut text))
            .map_err(|e| format!("encoding the metrics: {e}"))?;
        Ok(text)
    }
}

fn label(state: TransferState) -> StateLabel {
    match state {
        TransferState::Queued => StateLabel::Queued,
        TransferState::Running => StateLabel::Running,
        TransferState::Paused => StateLabel::Paused,
        TransferState::Ready => StateLabel::Ready,
        TransferState::Completed => StateLabel::Completed,
        TransferState::Failed => StateLabel::Failed,
        TransferState::Cancelled => StateLabel::Cancelled,
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_made_private_and_a_public_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        let Auth::Bearer(made) = Auth::load(false, &file).unwrap() else {
            panic!("no token");
        };
        assert_eq!(made.len(), 64);
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        let Auth::Bearer(again) = Auth::load(false, &file).unwrap() else {
            panic!("no token");
        };
        assert_eq!(made, again, "the token is kept across starts");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Auth::load(false, &file).unwrap_err().contains("every user"));

        let mut h = http::HeaderMap::new();
        let auth = Auth::Bearer(made.clone());
        assert!(!auth.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {made}x").parse().unwrap(),
        );
        assert!(!auth.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {made}").parse().unwrap(),
        );
        assert!(auth.allows(&h));
        assert!(Auth::Public.allows(&http::HeaderMap::new()));
    }
}
