//! What a transfer's state means, one copy for the daemon and its clients.

use crate::v1::TransferState;

impl TransferState {
    /// Ended for good: completed, failed or cancelled (it never runs again
    /// by itself).
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// No worker runs for it, and none is started on a restart: it ended,
    /// or waits for a user (paused) or for its owner's client (ready).
    pub fn is_at_rest(self) -> bool {
        self.is_ended() || matches!(self, Self::Paused | Self::Ready)
    }

    /// The daemon has nothing more to do for it until someone acts: ended,
    /// or fetched and waiting for its owner's client to place the files.
    pub fn awaits_client(self) -> bool {
        self.is_ended() || self == Self::Ready
    }

    /// The state a message carries (`Unspecified` for a number this build
    /// does not know).
    pub fn of(value: i32) -> Self {
        Self::try_from(value).unwrap_or(Self::Unspecified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_and_at_rest() {
        use TransferState::*;
        for s in [Completed, Failed, Cancelled] {
            assert!(s.is_ended() && s.is_at_rest() && s.awaits_client());
        }
        assert!(Ready.is_at_rest() && Ready.awaits_client() && !Ready.is_ended());
        assert!(Paused.is_at_rest() && !Paused.awaits_client());
        for s in [Queued, Running, Unspecified] {
            assert!(!s.is_at_rest() && !s.awaits_client());
        }
        assert_eq!(TransferState::of(99), Unspecified);
    }
}
