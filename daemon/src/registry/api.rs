//! The registry's requests, as async methods of the [`Registry`] handle:
//! each one is the [`Tables`] method of the same name, one read or one
//! write transaction (`read`: on the blocking pool; `write`: on the
//! registry thread, in order). Arguments are copied to go there (`ref`:
//! taken by reference, sent as its owned form).

use iroh_blobs::Hash;

use super::{
    HeldRecord, InboxOffer, InviteRecord, Member, Owned, Owners, PartialRecord, PeerRecord,
    Redeemed, Refusal, Registry, RegistryError, RingInfo, SentOffer, ShareRecord, Source, Stored,
    Tables, Terms, TransferRecord, TrustRecord,
};

type Result<T> = std::result::Result<T, RegistryError>;

/// The registry's requests from a blocking thread (`spawn_blocking`):
/// the same methods, waiting for the answer (see [`Registry::blocking`]).
#[derive(Debug, Clone, Copy)]
pub struct Blocking<'a>(&'a Registry);

impl Registry {
    /// The requests for code on a blocking thread; on a runtime worker
    /// they panic (use the async methods there).
    pub fn blocking(&self) -> Blocking<'_> {
        Blocking(self)
    }
}

macro_rules! requests {
    ($( $rw:ident fn $name:ident ( $($arg:ident : $kind:ident $ty:ty),* ) -> $ret:ty ; )*) => {
        impl Registry { $(
            #[doc = concat!("[`Tables::", stringify!($name), "`] (a ", stringify!($rw), ").")]
            pub async fn $name(&self, $($arg: requests!(@param $kind $ty)),*) -> Result<$ret> {
                $( let $arg = requests!(@own $kind $arg); )*
                requests!(@async $rw self, move |t: &Tables| t.$name($(requests!(@pass $kind $arg)),*))
            }
        )* }
        impl Blocking<'_> { $(
            #[doc = concat!("[`Tables::", stringify!($name), "`] (a ", stringify!($rw), ").")]
            pub fn $name(&self, $($arg: requests!(@param $kind $ty)),*) -> Result<$ret> {
                $( let $arg = requests!(@own $kind $arg); )*
                requests!(@blocking $rw self.0, move |t: &Tables| t.$name($(requests!(@pass $kind $arg)),*))
            }
        )* }
    };
    (@async read $reg:expr, $f:expr) => { $reg.read($f).await };
    (@async write $reg:expr, $f:expr) => { $reg.call($f).await };
    (@blocking read $reg:expr, $f:expr) => { $reg.read_blocking($f) };
    (@blocking write $reg:expr, $f:expr) => { $reg.run_blocking($f) };
    (@param ref $ty:ty) => { &$ty };
    (@param val $ty:ty) => { $ty };
    (@own ref $arg:ident) => { $arg.to_owned() };
    (@own val $arg:ident) => { $arg };
    (@pass ref $arg:ident) => { &$arg };
    (@pass val $arg:ident) => { $arg };
}

requests! {
    // rings and members
    write fn create_ring(name: ref str, now: val i64, owner: val u32) -> bool;
    read fn ring_exists(name: ref str) -> bool;
    read fn rings() -> Vec<RingInfo>;
    write fn remove_ring(name: ref str) -> Option<Vec<Member>>;
    write fn end_offer(ring: ref str, hash: ref Hash, owner: val u32, created_share: val bool)
        -> Option<(Vec<Member>, Option<ShareRecord>)>;
    write fn add_member(ring: ref str, id: ref [u8; 32], expires_at: val Option<i64>) -> ();
    write fn remove_member(ring: ref str, id: ref [u8; 32]) -> bool;
    read fn members(ring: ref str) -> Vec<Member>;
    read fn member_of_any(rings: ref [String], peer: ref [u8; 32], now: val i64) -> bool;
    // the address book
    write fn put_peer(rec: ref PeerRecord) -> ();
    write fn remember_peer(base: ref str, seen: ref PeerRecord) -> String;
    write fn due_now_for(peer: ref [u8; 32]) -> usize;
    write fn refresh_addrs(id: ref [u8; 32], ips: ref [std::net::SocketAddr], relay: val Option<String>) -> usize;
    read fn peer(name: ref str) -> Option<PeerRecord>;
    read fn peers() -> Vec<PeerRecord>;
    write fn remove_peer(name: ref str) -> bool;
    read fn peer_names() -> std::collections::HashMap<[u8; 32], String>;
    read fn peer_name(id: ref [u8; 32]) -> Option<String>;
    // shares
    write fn insert_share(rec: ref ShareRecord) -> ();
    write fn widen_share(owner: val u32, hash: ref Hash, rings: ref [String], listed: val bool,
        sources: val Vec<Source>) -> Option<ShareRecord>;
    read fn blob_sources(hash: ref Hash) -> Vec<Source>;
    read fn share_of(owner: val u32, hash: ref Hash) -> Option<ShareRecord>;
    read fn shares_of(hash: ref Hash) -> Vec<ShareRecord>;
    read fn shares() -> Vec<ShareRecord>;
    read fn counts() -> super::Counts;
    write fn remove_share(owner: val u32, hash: ref Hash) -> Option<ShareRecord>;
    write fn give_share(hash: ref Hash, from: val u32, to: val u32) -> bool;
    read fn parents(child: ref Hash) -> Vec<Hash>;
    write fn add_served(root: val Option<Hash>, bytes: val u64) -> ();
    read fn served_total() -> u64;
    read fn served(root: ref Hash) -> u64;
    read fn served_by_share() -> std::collections::HashMap<Hash, u64>;
    read fn reserved(hash: ref Hash, owner: val u32) -> bool;
    write fn set_reserve(hash: val Hash, owner: val u32, on: val bool) -> ();
    // transfers
    read fn terms(id: val u64) -> Terms;
    write fn put_transfer_limit(id: val u64, down: val Option<u64>) -> ();
    // settings
    read fn limits() -> Option<crate::limits::Limits>;
    write fn put_transfer(rec: ref TransferRecord) -> ();
    read fn transfer(id: val u64) -> Option<TransferRecord>;
    read fn transfers() -> Vec<TransferRecord>;
    write fn give_transfer(id: val u64, uid: val u32) -> Option<TransferRecord>;
    read fn partial(id: val u64) -> Option<PartialRecord>;
    write fn put_partial(id: val u64, rec: ref PartialRecord) -> ();
    write fn remove_partial(id: val u64) -> ();
    write fn put_held(id: val u64, rec: ref HeldRecord) -> ();
    read fn held() -> Vec<(u64, HeldRecord)>;
    write fn remove_held(id: val u64) -> ();
    // owners
    read fn owner(kind: val Owned, key: ref [u8]) -> u32;
    read fn owners(kind: val Owned) -> Owners;
    write fn set_owner(kind: val Owned, key: ref [u8], uid: val u32) -> ();
    write fn remove_owner(kind: val Owned, key: ref [u8]) -> ();
    write fn claim(kind: val Owned, key: ref [u8], uid: val u32, fresh: val bool) -> bool;
    // offers, the inbox and trust
    read fn peek_sent_id() -> u64;
    write fn prune_offers(before: val i64) -> (usize, usize);
    write fn put_sent(rec: ref SentOffer) -> ();
    read fn sent() -> Vec<SentOffer>;
    read fn sent_offer(id: val u64) -> Option<SentOffer>;
    write fn store_offer(rec: val InboxOffer) -> Stored;
    write fn put_inbox(rec: ref InboxOffer) -> ();
    read fn inbox() -> Vec<InboxOffer>;
    read fn inbox_offer(id: val u64) -> Option<InboxOffer>;
    read fn trust(peer: ref [u8; 32]) -> Option<TrustRecord>;
    write fn remove_trust(peer: ref [u8; 32]) -> bool;
    read fn is_contact_of(uid: val u32, peer: ref [u8; 32], now: val i64) -> bool;
    write fn put_trust_owned(peer: ref [u8; 32], rec: ref TrustRecord, per_day: val u64, owner: val u32)
        -> bool;
    read fn trust_per_day(peer: ref [u8; 32]) -> u64;
    read fn is_contact(peer: ref [u8; 32], now: val i64) -> bool;
    // invites and joined rings
    write fn put_invite(rec: ref InviteRecord) -> ();
    read fn invites() -> Vec<InviteRecord>;
    read fn invite(id: ref [u8; 16]) -> Option<InviteRecord>;
    write fn redeem_invite(id: ref [u8; 16], secret_hash: ref [u8; 32], peer: ref [u8; 32], now: val i64)
        -> std::result::Result<Redeemed, Refusal>;
    write fn record_joined(owner: ref [u8; 32], ring: ref str, now: val i64) -> ();
    read fn joined() -> Vec<([u8; 32], String, i64)>;
}

/// The requests that take a record to fill in or a rule to apply.
impl Registry {
    /// Records a new transfer; `rec` with its id.
    pub async fn insert_transfer(
        &self,
        mut rec: TransferRecord,
        terms: Terms,
    ) -> Result<TransferRecord> {
        self.call(move |t| {
            t.insert_transfer(&mut rec, &terms)?;
            Ok(rec)
        })
        .await
    }

    /// Keeps `limits` (`None`: back to the config's).
    pub async fn put_limits(&self, limits: Option<crate::limits::Limits>) -> Result<()> {
        self.call(move |t| t.put_limits(limits.as_ref())).await
    }

    /// Records a sent offer owned by `owner`; `rec` with its id.
    pub async fn insert_sent(&self, mut rec: SentOffer, owner: u32) -> Result<SentOffer> {
        self.call(move |t| {
            t.insert_sent(&mut rec, owner)?;
            Ok(rec)
        })
        .await
    }

    /// [`Tables::settle_ready`], on the registry thread.
    pub async fn settle_ready(
        &self,
        id: u64,
        change: impl FnOnce(&mut TransferRecord) + Send + 'static,
    ) -> Result<Option<TransferRecord>> {
        self.call(move |t| t.settle_ready(id, change)).await
    }

    /// [`Tables::remove_transfer_if`], on the registry thread.
    pub async fn remove_transfer_if(
        &self,
        id: u64,
        when: impl FnOnce(&TransferRecord) -> bool + Send + 'static,
    ) -> Result<Option<TransferRecord>> {
        self.call(move |t| t.remove_transfer_if(id, when)).await
    }

    /// [`Tables::prune_transfers`], on the registry thread.
    pub async fn prune_transfers(
        &self,
        old: impl Fn(&TransferRecord) -> bool + Send + 'static,
    ) -> Result<Vec<u64>> {
        self.call(move |t| t.prune_transfers(old)).await
    }

    /// [`Tables::remove_sent_if`], on the registry thread.
    pub async fn remove_sent_if(
        &self,
        id: u64,
        when: impl FnOnce(&SentOffer) -> bool + Send + 'static,
    ) -> Result<Option<SentOffer>> {
        self.call(move |t| t.remove_sent_if(id, when)).await
    }

    /// [`Tables::remove_inbox_if`], on the registry thread.
    pub async fn remove_inbox_if(
        &self,
        id: u64,
        when: impl FnOnce(&InboxOffer) -> bool + Send + 'static,
    ) -> Result<Option<InboxOffer>> {
        self.call(move |t| t.remove_inbox_if(id, when)).await
    }

    /// [`Tables::update_sent`], on the registry thread.
    pub async fn update_sent(
        &self,
        id: u64,
        change: impl FnOnce(&mut SentOffer) + Send + 'static,
    ) -> Result<Option<SentOffer>> {
        self.call(move |t| t.update_sent(id, change)).await
    }

    /// [`Tables::update_inbox`], on the registry thread.
    pub async fn update_inbox(
        &self,
        id: u64,
        change: impl FnOnce(&mut InboxOffer) + Send + 'static,
    ) -> Result<Option<InboxOffer>> {
        self.call(move |t| t.update_inbox(id, change)).await
    }
}
