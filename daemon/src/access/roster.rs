//! A ring's roster: who is in it, where they were last seen, and which of
//! the ring's shares its members may serve one another. The ring's owner
//! signs it with its node key; members keep the latest one they verified
//! and pass it on, so members reach each other with relays and discovery
//! off, and every member stops re-serving when the roster says so or
//! expires.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use iroh::{EndpointAddr, EndpointId, PublicKey, SecretKey, Signature, TransportAddr};
use iroh_blobs::Hash;
use serde::{Deserialize, Serialize};

/// What a signature covers: this prefix, then the roster's body.
const DOMAIN: &[u8] = b"ringdrop roster v1\0";
/// Members, addresses per member and shares a roster carries at most.
pub const MAX_MEMBERS: usize = 1024;
pub const MAX_ADDRS: usize = 8;
pub const MAX_SHARES: usize = 4096;
/// A roster's encoded body at most.
pub const MAX_BODY: usize = 256 * 1024;

/// One member as the owner knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterMember {
    pub id: [u8; 32],
    /// Where it was last seen (it said so when it asked for the roster).
    pub addrs: Vec<SocketAddr>,
    /// Unix seconds; `None`: never.
    pub expires_at: Option<i64>,
}

/// The body the owner signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    pub owner: [u8; 32],
    pub ring: String,
    /// Unix milliseconds when it was made: a later one replaces it.
    pub version: i64,
    /// Unix milliseconds: nobody re-serves by it after this.
    pub valid_until: i64,
    pub members: Vec<RosterMember>,
    /// Collections of the ring its members may serve one another.
    pub shares: Vec<[u8; 32]>,
}

/// A roster as it travels: its body and the owner's signature of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRoster {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why a roster was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RosterError {
    #[error("the roster is larger than {MAX_BODY} bytes or carries too much")]
    TooLarge,
    #[error("the roster does not decode")]
    Malformed,
    #[error("the roster's signature is not its owner's")]
    BadSignature,
    #[error("the roster has expired")]
    Expired,
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(body);
    m
}

impl Roster {
    /// Signs this roster with the owner's key (whose public half must be
    /// `self.owner`).
    pub fn sign(&self, key: &SecretKey) -> Result<SignedRoster, RosterError> {
        let body = postcard::to_stdvec(self).map_err(|_| RosterError::Malformed)?;
        if body.len() > MAX_BODY {
            return Err(RosterError::TooLarge);
        }
        let signature = key.sign(&signed_bytes(&body)).to_bytes().to_vec();
        Ok(SignedRoster { body, signature })
    }

    /// Whether `peer` is a member whose membership has not expired.
    pub fn has_member(&self, peer: &[u8; 32], now_secs: i64) -> bool {
        self.members
            .iter()
            .any(|m| m.id == *peer && m.expires_at.is_none_or(|t| t > now_secs))
    }

    pub fn covers(&self, root: &Hash) -> bool {
        self.shares.iter().any(|h| h == root.as_bytes())
    }

    /// The members but `me`, current at `now_secs`, with their addresses.
    pub fn others(&self, me: &EndpointId, now_secs: i64) -> Vec<EndpointAddr> {
        self.members
            .iter()
            .filter(|m| m.id != *me.as_bytes() && m.expires_at.is_none_or(|t| t > now_secs))
            .filter_map(|m| {
                let id = PublicKey::from_bytes(&m.id).ok()?;
                Some(EndpointAddr::from_parts(
                    id,
                    m.addrs.iter().copied().map(TransportAddr::Ip),
                ))
            })
            .collect()
    }
}

impl SignedRoster {
    /// The roster, if `owner` signed it, it is within bounds and it is
    /// valid at `now_ms`.
    pub fn verify(&self, owner: &EndpointId, now_ms: i64) -> Result<Roster, RosterError> {
        if self.body.len() > MAX_BODY {
            return Err(RosterError::TooLarge);
        }
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| RosterError::BadSignature)?;
        owner
            .verify(&signed_bytes(&self.body), &Signature::from_bytes(&sig))
            .map_err(|_| RosterError::BadSignature)?;
        let roster: Roster =
            postcard::from_bytes(&self.body).map_err(|_| RosterError::Malformed)?;
        if roster.owner != *owner.as_bytes() {
            return Err(RosterError::BadSignature);
        }
        if roster.members.len() > MAX_MEMBERS
            || roster.shares.len() > MAX_SHARES
            || roster.members.iter().any(|m| m.addrs.len() > MAX_ADDRS)
        {
            return Err(RosterError::TooLarge);
        }
        if roster.valid_until <= now_ms {
            return Err(RosterError::Expired);
        }
        Ok(roster)
    }
}

/// A verified roster and the signed form it came in (to pass on).
#[derive(Debug, Clone)]
pub struct Held {
    pub roster: Roster,
    pub signed: SignedRoster,
}

/// Rosters this node holds, by (owner, ring): only verified ones, only the
/// latest version of each. In memory: a roster lives a minute at most,
/// and a restarted node asks again.
#[derive(Debug, Clone, Default)]
pub struct Rosters {
    held: Arc<RwLock<HashMap<RingKey, Held>>>,
}

/// A ring: its owner and its name.
type RingKey = ([u8; 32], String);

/// Rings whose rosters are held at most (a peer could sign many).
const MAX_HELD: usize = 4096;

impl Rosters {
    /// Keeps `signed` if `owner` signed it, it is valid and newer than the
    /// one held. Returns the roster taken.
    pub fn take(
        &self,
        owner: &EndpointId,
        signed: SignedRoster,
        now_ms: i64,
    ) -> Result<Option<Roster>, RosterError> {
        let roster = signed.verify(owner, now_ms)?;
        let Ok(mut held) = self.held.write() else {
            return Ok(None);
        };
        held.retain(|_, h| h.roster.valid_until > now_ms);
        let key = (roster.owner, roster.ring.clone());
        if held
            .get(&key)
            .is_some_and(|h| h.roster.version >= roster.version)
        {
            return Ok(None);
        }
        if held.len() >= MAX_HELD && !held.contains_key(&key) {
            return Ok(None);
        }
        held.insert(
            key,
            Held {
                roster: roster.clone(),
                signed,
            },
        );
        Ok(Some(roster))
    }

    /// Valid rosters of `owner` that cover `root`.
    pub fn covering(&self, owner: &EndpointId, root: &Hash, now_ms: i64) -> Vec<Held> {
        let Ok(held) = self.held.read() else {
            return Vec::new();
        };
        held.values()
            .filter(|h| {
                h.roster.owner == *owner.as_bytes()
                    && h.roster.valid_until > now_ms
                    && h.roster.covers(root)
            })
            .cloned()
            .collect()
    }

    /// Valid rosters (of any owner) that cover `root`.
    pub fn any_covering(&self, root: &Hash, now_ms: i64) -> Vec<Held> {
        let Ok(held) = self.held.read() else {
            return Vec::new();
        };
        held.values()
            .filter(|h| h.roster.valid_until > now_ms && h.roster.covers(root))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(owner: &SecretKey, valid_until: i64, version: i64) -> Roster {
        Roster {
            owner: *owner.public().as_bytes(),
            ring: "team".into(),
            version,
            valid_until,
            members: vec![RosterMember {
                id: [7; 32],
                addrs: vec![SocketAddr::from(([127, 0, 0, 1], 4433))],
                expires_at: None,
            }],
            shares: vec![[9; 32]],
        }
    }

    #[test]
    fn only_the_owners_valid_signature_is_taken() {
        let owner = SecretKey::generate();
        let other = SecretKey::generate();
        let signed = roster(&owner, 2_000, 1).sign(&owner).unwrap();
        assert!(signed.verify(&owner.public(), 1_000).is_ok());
        // Signed by someone else, or claimed for someone else.
        assert_eq!(
            signed.verify(&other.public(), 1_000),
            Err(RosterError::BadSignature)
        );
        let forged = roster(&owner, 2_000, 1).sign(&other).unwrap();
        assert_eq!(
            forged.verify(&owner.public(), 1_000),
            Err(RosterError::BadSignature)
        );
        // A body changed after signing.
        let mut changed = signed.clone();
        let last = changed.body.len() - 1;
        changed.body[last] ^= 1;
        assert!(changed.verify(&owner.public(), 1_000).is_err());
        assert_eq!(
            signed.verify(&owner.public(), 2_000),
            Err(RosterError::Expired)
        );
    }

    #[test]
    fn a_newer_version_replaces_an_older_one_never_the_reverse() {
        let owner = SecretKey::generate();
        let rosters = Rosters::default();
        let id = owner.public();
        let root = Hash::from_bytes([9; 32]);
        assert!(rosters
            .take(&id, roster(&owner, 5_000, 2).sign(&owner).unwrap(), 1_000)
            .unwrap()
            .is_some());
        assert!(rosters
            .take(&id, roster(&owner, 9_000, 1).sign(&owner).unwrap(), 1_000)
            .unwrap()
            .is_none());
        assert_eq!(rosters.covering(&id, &root, 1_000)[0].roster.version, 2);
        assert!(rosters.covering(&id, &root, 5_000).is_empty());
    }
}
