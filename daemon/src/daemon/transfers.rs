//! The facade's transfers: what `ringdropctl transfers ...` and the
//! Transfers service ask, each judged as its caller (own rows only; an
//! admin's: any, but never another user's files).

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::info;

use super::Daemon;
use crate::{
    authority::Caller,
    registry::{Placement, Terms},
    ticket::Ticket,
    transfers::{plan::Entry, FetchRequest, FileChunk, TransferError, TransferView},
};

/// Where a fetch's files go.
#[derive(Debug, Clone, Default)]
pub struct Dest {
    /// Absolute; `None`: the daemon's download_dir (its own user only).
    pub out: Option<PathBuf>,
    /// Replace existing files there.
    pub force: bool,
    /// Why the caller's client found it cannot write there, if it did.
    pub caller_cannot_write: Option<String>,
}

impl Daemon {
    /// The transfers `caller` may see, newest first.
    pub async fn list_transfers(
        &self,
        caller: &Caller,
    ) -> Result<Vec<TransferView>, TransferError> {
        self.inner.transfers.list_for(caller).await
    }

    /// One transfer `caller` may see, live if it is running.
    pub async fn get_transfer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<TransferView, TransferError> {
        self.inner.transfers.get_for(caller, id).await
    }

    /// What changed among `caller`'s transfers since `rows` (a value of
    /// this, or none): every row when a stored row changed, else only the
    /// live ones (from memory). The generation to pass next time.
    pub(super) async fn transfers_changed(
        &self,
        caller: &Caller,
        rows: Option<u64>,
    ) -> Result<(Vec<TransferView>, u64), TransferError> {
        let now = self.inner.transfers.rows_generation();
        if rows == Some(now) {
            return Ok((self.inner.transfers.live_for(caller), now));
        }
        let mut all = self.inner.transfers.list_for(caller).await?;
        all.reverse();
        Ok((all, now))
    }

    pub async fn pause_transfer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<TransferView, TransferError> {
        self.inner.transfers.pause(caller, id).await
    }

    pub async fn resume_transfer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<TransferView, TransferError> {
        self.inner.transfers.resume(caller, id).await
    }

    /// Cancels; `purge` also frees what was fetched.
    pub async fn cancel_transfer(
        &self,
        caller: &Caller,
        id: u64,
        purge: bool,
    ) -> Result<TransferView, TransferError> {
        self.inner.transfers.cancel(caller, id, purge).await
    }

    /// Forgets a finished transfer.
    pub async fn remove_transfer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<TransferView, TransferError> {
        self.inner.transfers.remove(caller, id).await
    }

    /// The files of `ready` transfer `id`, for its owner, and the private
    /// directory its client hosted them in (if it did).
    pub async fn transfer_files(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<(Vec<Entry>, Option<String>), TransferError> {
        let files = self.inner.transfers.ready_files(id, caller).await?;
        let hosted = self.inner.transfers.hosted_dir(id).await?;
        Ok((files, hosted))
    }

    /// Streams files `wanted` of `ready` transfer `id` to its owner.
    pub async fn read_transfer_files(
        &self,
        caller: &Caller,
        id: u64,
        wanted: Vec<u32>,
    ) -> Result<mpsc::Receiver<Result<FileChunk, TransferError>>, TransferError> {
        self.inner.transfers.read_ready(id, caller, wanted).await
    }

    /// The owner's client placed the files (at `files`): the transfer
    /// completes.
    pub async fn finish_transfer(
        &self,
        caller: &Caller,
        id: u64,
        files: Vec<PathBuf>,
    ) -> Result<TransferView, TransferError> {
        self.inner.transfers.finish_ready(id, caller, files).await
    }

    /// A read-only descriptor of file `index` of `ready` transfer `id`, for
    /// its owner `uid` only (`None`: a file of no bytes). Opens files: for
    /// a blocking thread (`Handle::block_on`).
    pub(super) async fn ready_file(
        &self,
        uid: u32,
        id: u64,
        index: u32,
    ) -> Result<Option<std::fs::File>, String> {
        let caller = Caller::operator(uid, uid);
        self.inner
            .transfers
            .ready_file(&caller, id, index)
            .await
            .map_err(|e| e.to_string())
    }

    /// User `uid`'s client offers its directory again for the files of
    /// its transfer `id` (see `transfers::hosted`).
    pub(super) async fn rehost(
        &self,
        uid: u32,
        id: u64,
        host: crate::transfers::hosted::Host,
    ) -> Result<(), String> {
        self.inner.transfers.rehost(uid, id, host).await
    }

    /// Starts a fetch of `only` those files (empty: all) for the
    /// control-socket client `caller`, into `dest`; `host` is the token of
    /// the directory its client offered to host the files (empty: none).
    pub async fn fetch(
        &self,
        ticket: &str,
        dest: Dest,
        caller: &Caller,
        host: &[u8],
        (only, no_reserve): (Vec<String>, bool),
    ) -> Result<TransferView, TransferError> {
        let host = match host {
            [] => None,
            token => Some(self.inner.handoffs.take_host(token, caller.uid).ok_or_else(|| {
                TransferError::NotWritable(
                    "the directory your ringdropctl offered to host the files is gone (over a minute old, or not yours): run the fetch again".into(),
                )
            })?),
        };
        let terms = Terms {
            only,
            no_reserve,
            ..Terms::default()
        };
        self.fetch_with(ticket, dest, caller, terms, host).await
    }

    /// [`Self::fetch`] with its `terms` (an offer's size), into what `host`
    /// offers if its client hosts the files.
    ///
    /// An empty `dest.out` means the configured download dir (the daemon's
    /// own user; other callers' clients name their destination). Who
    /// writes the files ([`placement_for`]): the daemon itself only for its
    /// own user; for anyone else their own client, running as them.
    /// Whoever writes must be able to, checked before any byte is fetched
    /// (a client's report can only refuse, never grant: its own process
    /// writes, so the kernel judges).
    pub async fn fetch_with(
        &self,
        ticket: &str,
        Dest {
            out,
            force,
            caller_cannot_write,
        }: Dest,
        caller: &Caller,
        terms: Terms,
        host: Option<crate::transfers::hosted::Host>,
    ) -> Result<TransferView, TransferError> {
        let placement = placement_for(caller);
        let dest = match out {
            Some(out) => out,
            None if placement == Placement::Daemon => self.inner.config.download_dir.clone(),
            None => {
                return Err(TransferError::NotWritable(format!(
                    "user {} did not name a destination, and the daemon's download_dir is its own: pass --out DIR (a directory you can write)",
                    ringdrop_proto::place::user_name(caller.uid)
                )))
            }
        };
        match (placement, caller_cannot_write) {
            (Placement::Daemon, _) => daemon_cannot_write(&dest).map_err(TransferError::NotWritable)?,
            (Placement::Client, Some(why)) => {
                return Err(TransferError::NotWritable(format!(
                    "user {} cannot write {}: {why}; nothing was fetched: choose a destination you can write",
                    ringdrop_proto::place::user_name(caller.uid),
                    dest.display(),
                )))
            }
            (Placement::Client, None) => {}
        }
        let view = self
            .inner
            .transfers
            .start(
                FetchRequest {
                    ticket: ticket.to_string(),
                    dest,
                    force,
                    owner_uid: caller.uid,
                    placement,
                    terms,
                },
                host,
            )
            .await?;
        info!(uid = caller.uid, id = view.rec.id, "fetch started");
        // The ticket's addresses refresh the provider's address-book entry.
        if let Ok(t) = ticket.parse::<Ticket>() {
            self.remember_addr(&t.addr).await;
        }
        Ok(view)
    }
}

/// Who places the files of a fetch by `caller`: the daemon writes only
/// for its own user; everyone else's files (root's and every operator's)
/// are written by that user's own client, as that user, so nothing lands
/// where its owner could not have written it (docs/ARCHITECTURE.md,
/// "Authority").
fn placement_for(caller: &Caller) -> Placement {
    if caller.uid == crate::authority::my_uid() {
        Placement::Daemon
    } else {
        Placement::Client
    }
}

/// Why the daemon itself may not write `dest`, in words that say what to do.
pub(super) fn daemon_cannot_write(dest: &Path) -> Result<(), String> {
    ringdrop_proto::place::check_writable(dest).map_err(|(dir, err)| {
        format!(
            "ringdropd runs as user {}, which cannot write {} ({err}); nothing was fetched: choose a destination it may write (its download_dir, or a ReadWritePaths= of the service), or run ringdropctl as a user who can write there",
            ringdrop_proto::place::user_name(crate::authority::my_uid()),
            dir.display()
        )
    })
}
