//! The facade's transfers: what `ringdropctl transfers ...` and the
//! Transfers service ask, each judged as its caller (own rows only; an
//! admin's: any, but never another user's files).

use std::path::PathBuf;

use tokio::sync::{mpsc, watch};

use super::Daemon;
use crate::{
    authority::Caller,
    transfers::{plan::Entry, FileChunk, TransferError, TransferView},
};

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

    /// Follows a transfer `caller` may see: its live view while it runs
    /// (`None`: not running now; [`Self::get_transfer`] has its row).
    pub async fn follow_transfer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Option<watch::Receiver<TransferView>>, TransferError> {
        self.inner.transfers.subscribe(caller, id).await
    }

    /// Changes whenever any transfer changed.
    pub fn transfer_changes(&self) -> watch::Receiver<u64> {
        self.inner.transfers.changes()
    }

    /// What changed among `caller`'s transfers since `rows` (a value of
    /// this, or none): every row when a stored row changed, else only the
    /// live ones (from memory). The generation to pass next time.
    pub async fn transfers_changed(
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
}
