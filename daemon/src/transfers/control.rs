//! Pause, resume and cancel: asking a transfer's worker to stop for a
//! reason, or changing the row of a transfer that has no worker.

use super::*;

fn invalid(id: u64, state: TransferState, action: &'static str) -> TransferError {
    TransferError::InvalidState {
        id,
        state: state.name(),
        action,
    }
}

impl TransferManager {
    /// Asks the worker of `id` to stop for `reason`; false if it has none.
    fn stop_live(&self, id: u64, reason: StopReason) -> bool {
        let Ok(live) = self.inner.live.lock() else {
            return false;
        };
        let Some(l) = live.get(&id) else { return false };
        if let Ok(mut r) = l.reason.lock() {
            r.get_or_insert(reason);
        }
        l.stop.cancel();
        true
    }

    /// Waits until `id` has no worker any more and returns its row.
    async fn settled(&self, id: u64) -> Result<TransferView, TransferError> {
        let mut changes = self.changes();
        loop {
            let live = self
                .inner
                .live
                .lock()
                .map(|l| l.contains_key(&id))
                .unwrap_or(false);
            if !live {
                return self.get(id).await;
            }
            if changes.changed().await.is_err() {
                return self.get(id).await;
            }
        }
    }

    pub(super) async fn stored(&self, id: u64) -> Result<TransferRecord, TransferError> {
        self.inner
            .registry
            .transfer(id)
            .await?
            .ok_or(TransferError::NotFound(id))
    }

    /// Sets transfer `id`'s own download limit (`None`: none): kept with
    /// it, and in force at once if it is running. Its owner's (or an
    /// admin's) to set; any state but ended.
    pub async fn set_limit(
        &self,
        caller: &Caller,
        id: u64,
        down: Option<u64>,
    ) -> Result<TransferView, TransferError> {
        let rec = self.stored_for(caller, id).await?;
        if rec.state.is_terminal() {
            return Err(invalid(id, rec.state, "limited"));
        }
        self.inner.registry.put_transfer_limit(id, down).await?;
        if let Ok(live) = self.inner.live.lock() {
            if let Some(l) = live.get(&id) {
                l.pace.set(down);
            }
        }
        self.get(id).await
    }

    /// The own download limits of the transfers `caller` may see.
    pub async fn limits_for(&self, caller: &Caller) -> Result<Vec<(u64, u64)>, TransferError> {
        let mut out = Vec::new();
        for v in self.list_for(caller).await? {
            if v.rec.state.is_terminal() {
                continue;
            }
            if let Some(rate) = self.inner.registry.terms(v.rec.id).await?.down_limit {
                out.push((v.rec.id, rate));
            }
        }
        Ok(out)
    }

    /// Pauses a queued or running transfer; its data is kept.
    pub async fn pause(&self, caller: &Caller, id: u64) -> Result<TransferView, TransferError> {
        self.stored_for(caller, id).await?;
        if self.stop_live(id, StopReason::Pause) {
            return self.settled(id).await;
        }
        let rec = self.stored(id).await?;
        match rec.state {
            TransferState::Paused => Ok(TransferView::at_rest(rec)),
            s => Err(invalid(id, s, "paused")),
        }
    }

    /// Queues a paused or failed transfer again.
    pub async fn resume(&self, caller: &Caller, id: u64) -> Result<TransferView, TransferError> {
        self.stored_for(caller, id).await?;
        if self
            .inner
            .live
            .lock()
            .map(|l| l.contains_key(&id))
            .unwrap_or(false)
        {
            // Already queued or running.
            return self.get(id).await;
        }
        let mut rec = self.stored(id).await?;
        match rec.state {
            TransferState::Paused | TransferState::Failed => {}
            s => return Err(invalid(id, s, "resumed")),
        }
        let ticket: Ticket = rec.ticket.parse()?;
        rec.state = TransferState::Queued;
        rec.updated_at = ringdrop_proto::clock::now();
        self.inner.registry.put_transfer(&rec).await?;
        Ok(self.spawn(rec, ticket).await)
    }

    /// Cancels a transfer that has not completed; `purge` also releases
    /// its partial data to garbage collection.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: u64,
        purge: bool,
    ) -> Result<TransferView, TransferError> {
        self.stored_for(caller, id).await?;
        if self.stop_live(id, StopReason::Cancel { purge }) {
            return self.settled(id).await;
        }
        let mut rec = self.stored(id).await?;
        match rec.state {
            TransferState::Completed => return Err(invalid(id, rec.state, "cancelled")),
            TransferState::Cancelled if !purge => return Ok(TransferView::at_rest(rec)),
            _ => {}
        }
        if purge {
            self.inner
                .store
                .tags()
                .delete(transfer_tag(id))
                .await
                .map_err(|e| TransferError::Store(e.into()))?;
        }
        // The incoming files go before the row says cancelled (as a
        // worker's end does).
        self.discard_incoming(id).await;
        rec.state = TransferState::Cancelled;
        rec.updated_at = ringdrop_proto::clock::now();
        self.inner.registry.put_transfer(&rec).await?;
        self.ended(&rec);
        self.touch();
        Ok(TransferView::at_rest(rec))
    }

    /// Gives transfer `id` to user `uid` (an admin's act, judged by the
    /// facade). Only a transfer at rest: a queued or running one has a
    /// worker recording its row as it goes, with the owner it began with.
    pub async fn give(&self, id: u64, uid: u32) -> Result<TransferView, TransferError> {
        let live = self.inner.live.lock().is_ok_and(|l| l.contains_key(&id));
        if live {
            let rec = self.stored(id).await?;
            return Err(invalid(
                id,
                rec.state,
                "given while it runs (pause it first, then give it)",
            ));
        }
        let rec = self
            .inner
            .registry
            .give_transfer(id, uid)
            .await?
            .ok_or(TransferError::NotFound(id))?;
        self.touch();
        Ok(TransferView::at_rest(rec))
    }

    /// Forgets a finished transfer `caller` controls (its row and what is
    /// recorded beside it); its files, wherever they were placed, stay.
    pub async fn remove(&self, caller: &Caller, id: u64) -> Result<TransferView, TransferError> {
        let rec = self.stored_for(caller, id).await?;
        let removed = self
            .inner
            .registry
            .remove_transfer_if(id, |r| r.state.is_terminal())
            .await?;
        let Some(rec) = removed else {
            return Err(invalid(
                id,
                rec.state,
                "removed (it has not finished: cancel it first)",
            ));
        };
        self.release_forgotten(id).await;
        self.touch();
        Ok(TransferView::at_rest(rec))
    }

    /// What a forgotten transfer still held (a failed or cancelled one
    /// keeps its data for a resume): its store tag and incoming files.
    async fn release_forgotten(&self, id: u64) {
        if let Err(e) = self.inner.store.tags().delete(transfer_tag(id)).await {
            warn!(id, "cannot release a forgotten transfer's data: {e}");
        }
        self.discard_incoming(id).await;
        self.inner.swarm.holdings.remove(id);
        let (dir, registry) = (self.inner.data_dir.clone(), self.inner.registry.clone());
        tokio::task::spawn_blocking(move || super::reserve::discard_held(&dir, &registry, id))
            .await
            .ok();
    }

    /// Forgets transfers that finished more than `keep` ago; how many.
    pub async fn forget_finished(&self, keep: std::time::Duration) -> Result<usize, TransferError> {
        let before = ringdrop_proto::clock::now()
            .saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        let gone = self
            .inner
            .registry
            .prune_transfers(move |r| r.updated_at < before)
            .await?;
        for id in &gone {
            self.release_forgotten(*id).await;
        }
        if !gone.is_empty() {
            self.touch();
        }
        Ok(gone.len())
    }
}
