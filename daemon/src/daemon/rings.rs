//! Rings on the facade: creating and removing them, their members, and
//! invites. Every revocation closes the affected peers' live connections;
//! they may reconnect for whatever they may still fetch.

use tracing::info;

use super::{
    access::{check_name, AccessError},
    Daemon, Named,
};
use crate::{
    authority::Caller,
    registry::{InviteRecord, Member, Owned, RingInfo, OPEN_RING},
};
use iroh::EndpointId;
use ringdrop_proto::clock::now;

impl Daemon {
    /// Creates a ring owned by `caller` (names are node-wide: first come,
    /// first served).
    pub async fn create_ring(&self, caller: &Caller, name: &str) -> Result<(), AccessError> {
        if name == OPEN_RING {
            return Err(AccessError::OpenRing);
        }
        check_name(name)?;
        if !self.registry().create_ring(name, now(), caller.uid).await? {
            return Err(AccessError::RingExists(name.to_string()));
        }
        info!(uid = caller.uid, ring = name, "ring created");
        Ok(())
    }

    /// The rings `caller` owns (an admin: all); the first is always `open`.
    pub async fn rings(&self, caller: &Caller) -> Result<Vec<RingInfo>, AccessError> {
        let mut out = vec![RingInfo {
            name: OPEN_RING.to_string(),
            created_at: 0,
            members: 0,
        }];
        let owners = self.registry().owners(Owned::Ring).await?;
        out.extend(
            self.registry()
                .rings()
                .await?
                .into_iter()
                .filter(|r| caller.controls(owners.of(r.name.as_bytes()))),
        );
        Ok(out)
    }

    /// Removes a ring; its members lose access to its shares at once.
    pub async fn remove_ring(&self, caller: &Caller, name: &str) -> Result<(), AccessError> {
        self.existing_ring(caller, name).await?;
        let members = self
            .registry()
            .remove_ring(name)
            .await?
            .ok_or_else(|| AccessError::UnknownRing(name.to_string()))?;
        info!(uid = caller.uid, ring = name, "ring removed");
        for m in members {
            if let Ok(id) = EndpointId::from_bytes(&m.id) {
                self.inner.gate.disconnect(id);
            }
        }
        Ok(())
    }

    /// A ring `caller` controls (another user's is "no ring named").
    async fn existing_ring(&self, caller: &Caller, ring: &str) -> Result<(), AccessError> {
        if ring == OPEN_RING {
            return Err(AccessError::OpenRing);
        }
        if !self.registry().ring_exists(ring).await?
            || !caller.controls(self.registry().owner(Owned::Ring, ring.as_bytes()).await?)
        {
            return Err(AccessError::UnknownRing(ring.to_string()));
        }
        Ok(())
    }

    /// Adds (or updates) a member; `expires_at` in unix seconds.
    pub async fn add_member(
        &self,
        caller: &Caller,
        ring: &str,
        peer: &str,
        expires_at: Option<i64>,
    ) -> Result<Named<Member>, AccessError> {
        self.existing_ring(caller, ring).await?;
        let p = self.resolve_peer(peer).await?;
        self.registry()
            .add_member(ring, p.id.as_bytes(), expires_at)
            .await?;
        info!(uid = caller.uid, ring, peer = %p.id, ?expires_at, "member added");
        let member = Member {
            id: *p.id.as_bytes(),
            expires_at,
        };
        Ok(self.named(member).await)
    }

    /// Removes a member and closes its live connections.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        ring: &str,
        peer: &str,
    ) -> Result<Named<Member>, AccessError> {
        self.existing_ring(caller, ring).await?;
        let p = self.resolve_peer(peer).await?;
        if !self.registry().remove_member(ring, p.id.as_bytes()).await? {
            return Err(AccessError::NotMember {
                ring: ring.to_string(),
                peer: peer.to_string(),
            });
        }
        let closed = self.inner.gate.disconnect(p.id);
        info!(uid = caller.uid, ring, peer = %p.id, closed, "member removed");
        let member = Member {
            id: *p.id.as_bytes(),
            expires_at: None,
        };
        Ok(self.named(member).await)
    }

    /// Members of a ring.
    pub async fn members(
        &self,
        caller: &Caller,
        ring: &str,
    ) -> Result<Named<Vec<Member>>, AccessError> {
        self.existing_ring(caller, ring).await?;
        let members = self.registry().members(ring).await?;
        Ok(self.named(members).await)
    }

    /// A new invite to `ring`: `uses` redemptions (at least 1), valid for
    /// `valid_for` seconds, granting `member_for` seconds of membership
    /// (`None`: for good). Returns the record and the ticket.
    pub async fn create_invite(
        &self,
        caller: &Caller,
        ring: &str,
        uses: u32,
        valid_for: i64,
        member_for: Option<i64>,
    ) -> Result<(InviteRecord, String), AccessError> {
        // Inviting to a ring that does not exist yet creates it.
        if ring != OPEN_RING && !self.registry().ring_exists(ring).await? {
            self.create_ring(caller, ring).await?;
        }
        self.existing_ring(caller, ring).await?;
        if uses == 0 || uses > MAX_INVITE_USES {
            return Err(AccessError::BadInviteTerms(format!(
                "an invite is for 1 to {MAX_INVITE_USES} uses"
            )));
        }
        if !(1..=MAX_INVITE_VALID).contains(&valid_for) {
            return Err(AccessError::BadInviteTerms(
                "an invite is valid for 1 second to 30 days".into(),
            ));
        }
        if member_for.is_some_and(|s| s < 1) {
            return Err(AccessError::BadInviteTerms(
                "membership must last at least 1 second".into(),
            ));
        }
        let (rec, invite) = crate::rings::invites::create(
            self.ticket_addr(),
            ring,
            uses,
            now().saturating_add(valid_for),
            member_for,
        );
        self.registry().put_invite(&rec).await?;
        info!(uid = caller.uid, ring, id = %data_encoding::HEXLOWER.encode(&rec.id), uses, "invite created");
        Ok((rec, invite.to_string()))
    }

    /// Invites, oldest first (of `ring` only, if given).
    pub async fn invites(
        &self,
        caller: &Caller,
        ring: Option<&str>,
    ) -> Result<Vec<InviteRecord>, AccessError> {
        let owners = self.registry().owners(Owned::Ring).await?;
        let all = self.registry().invites().await?;
        Ok(all
            .into_iter()
            .filter(|i| ring.is_none_or(|r| i.ring == r))
            .filter(|i| caller.controls(owners.of(i.ring.as_bytes())))
            .collect())
    }

    /// Withdraws an invite (by id or a unique prefix of it).
    pub async fn revoke_invite(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<InviteRecord, AccessError> {
        let id = id.trim().to_ascii_lowercase();
        let mut found: Vec<InviteRecord> = self
            .invites(caller, None)
            .await?
            .into_iter()
            .filter(|i| !id.is_empty() && data_encoding::HEXLOWER.encode(&i.id).starts_with(&id))
            .collect();
        if found.len() != 1 {
            return Err(AccessError::NoSuchInvite(id));
        }
        let mut rec = found.remove(0);
        rec.revoked = true;
        self.registry().put_invite(&rec).await?;
        info!(uid = caller.uid, id, "invite revoked");
        Ok(rec)
    }

    /// Redeems an invite with its inviter (see [`crate::rings::invites::join`]).
    pub async fn join_ring(
        &self,
        caller: &Caller,
        invite: &str,
        alias: Option<&str>,
    ) -> Result<crate::rings::invites::Joined, AccessError> {
        if let Some(a) = alias {
            check_name(a)?;
        }
        let invite: crate::rings::invites::Invite = invite
            .parse()
            .map_err(crate::rings::invites::JoinError::from)?;
        let joined =
            crate::rings::invites::join(&self.inner.endpoint, self.registry(), &invite, alias)
                .await?;
        info!(uid = caller.uid, ring = joined.ring, inviter = %joined.inviter, "joined a ring by invite");
        Ok(joined)
    }
}

/// Most redemptions one invite may allow.
pub const MAX_INVITE_USES: u32 = 1000;

/// Longest an invite stays valid: 30 days.
pub const MAX_INVITE_VALID: i64 = 30 * 24 * 3600;
