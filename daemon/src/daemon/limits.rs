//! The facade's bandwidth limits: what `ringdropctl limits` and the Limits
//! service ask. The node's and peers' limits are admins' to change (any
//! caller reads them); a transfer's own limit is its owner's.

use super::{AccessError, Daemon, Named};
use crate::{
    authority::Caller,
    limits::{Limits, Schedule, MAX_PEER_LIMITS},
    registry::RegistryError,
    transfers::TransferError,
};

/// Why limits were not changed.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("only root and the daemon's own user may change the node's and peers' limits; a transfer's own limit is its owner's (`ringdropctl limits --transfer ID --down RATE`)")]
    NotAdmin,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Peer(#[from] AccessError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

/// A change of one rate: `None` leaves it as it is; `Some(None)` makes it
/// unlimited.
pub type RateChange = Option<Option<u64>>;

/// A change of one peer's limits.
#[derive(Debug, Clone)]
pub struct PeerChange {
    /// Endpoint id or address-book name.
    pub peer: String,
    pub up: RateChange,
    pub down: RateChange,
}

/// A change of limits.
#[derive(Debug, Clone, Default)]
pub struct LimitsChange {
    /// Back to the config's limits first.
    pub reset: bool,
    pub up: RateChange,
    pub down: RateChange,
    pub alt_up: RateChange,
    pub alt_down: RateChange,
    /// `Some("")` removes the schedule.
    pub alt_hours: Option<String>,
    pub alt_days: Option<String>,
    pub peers: Vec<PeerChange>,
}

/// The limits as shown: the settings, where they come from, what is in
/// force now and the caller's transfers' own limits.
#[derive(Debug)]
pub struct LimitsView {
    pub settings: Limits,
    /// Set with `ringdropctl limits` (else: the config's).
    pub set: bool,
    pub alt_active: bool,
    pub now: (Option<u64>, Option<u64>),
    /// (transfer id, its own download limit).
    pub transfers: Vec<(u64, u64)>,
}

impl Daemon {
    /// The limits, as `caller` sees them (peers named from the address
    /// book).
    pub async fn limits(&self, caller: &Caller) -> Result<Named<LimitsView>, LimitsError> {
        let bandwidth = &self.inner.bandwidth;
        let settings = bandwidth.settings();
        let view = LimitsView {
            set: self.registry().limits().await?.is_some(),
            alt_active: settings.alt_active(crate::limits::LocalTime::now()),
            now: bandwidth.in_force(),
            transfers: self.inner.transfers.limits_for(caller).await?,
            settings,
        };
        Ok(Named {
            rows: view,
            names: self.peer_names().await,
        })
    }

    /// Changes the node's and peers' limits (admins only): kept, and in
    /// force at once.
    pub async fn set_limits(
        &self,
        caller: &Caller,
        change: LimitsChange,
    ) -> Result<Named<LimitsView>, LimitsError> {
        if !caller.is_admin() {
            return Err(LimitsError::NotAdmin);
        }
        let editing = self.inner.bandwidth.editing().await;
        let mut l = if change.reset {
            self.inner.config.limits.clone()
        } else {
            self.inner.bandwidth.settings()
        };
        let set = |to: &mut Option<u64>, v: RateChange| {
            if let Some(v) = v {
                *to = v.filter(|r| *r > 0);
            }
        };
        set(&mut l.up, change.up);
        set(&mut l.down, change.down);
        set(&mut l.alt_up, change.alt_up);
        set(&mut l.alt_down, change.alt_down);
        apply_schedule(
            &mut l,
            change.alt_hours.as_deref(),
            change.alt_days.as_deref(),
        )?;
        for PeerChange { peer, up, down } in change.peers {
            let id = *self.resolve_peer(&peer).await?.id.as_bytes();
            let old = l.peers.iter().find(|p| p.id == id).cloned();
            let (mut u, mut d) = old.map_or((None, None), |p| (p.up, p.down));
            set(&mut u, up);
            set(&mut d, down);
            l.set_peer(id, u, d);
        }
        if l.peers.len() > MAX_PEER_LIMITS {
            return Err(LimitsError::Invalid(format!(
                "at most {MAX_PEER_LIMITS} peers may have limits of their own"
            )));
        }
        let keep = (!(change.reset && l == self.inner.config.limits)).then(|| l.clone());
        self.registry().put_limits(keep).await?;
        self.inner.bandwidth.apply(l);
        drop(editing);
        tracing::info!(uid = caller.uid, "bandwidth limits changed");
        self.limits(caller).await
    }

    /// Sets transfer `id`'s own download limit (`None`: none).
    pub async fn set_transfer_limit(
        &self,
        caller: &Caller,
        id: u64,
        down: Option<u64>,
    ) -> Result<Named<LimitsView>, LimitsError> {
        self.inner.transfers.set_limit(caller, id, down).await?;
        self.limits(caller).await
    }
}

/// `alt_hours` and `alt_days` of a change onto `l`: hours `""` removes the
/// schedule; hours alone apply every day, days alone the whole day.
fn apply_schedule(
    l: &mut Limits,
    hours: Option<&str>,
    days: Option<&str>,
) -> Result<(), LimitsError> {
    if hours == Some("") {
        l.alt = None;
        if days.is_some() {
            return Err(LimitsError::Invalid(
                "--alt-days needs --alt-hours (the schedule was removed)".into(),
            ));
        }
        return Ok(());
    }
    if let Some(h) = hours {
        let (from, to) = Schedule::parse_hours(h).map_err(LimitsError::Invalid)?;
        let s = l.alt.get_or_insert(Schedule::ALWAYS);
        (s.from, s.to) = (from, to);
    }
    if let Some(d) = days {
        let days = Schedule::parse_days(d).map_err(LimitsError::Invalid)?;
        l.alt.get_or_insert(Schedule::ALWAYS).days = days;
    }
    Ok(())
}
