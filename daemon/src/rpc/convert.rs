//! Domain values -> proto messages.

use ringdrop_proto::v1 as pb;

use crate::{
    daemon::{Created, LimitsView, Named, PeerNames, ShareView, UploadView},
    registry::{InboxOffer, Member, Placement, SentOffer, TransferState},
    transfers::TransferView,
};

/// Sent offers, named.
pub fn sent_offers(n: &Named<Vec<SentOffer>>) -> Vec<pb::SentOffer> {
    n.rows.iter().map(|o| sent_offer(&n.names, o)).collect()
}

/// The inbox as a caller sees it, named, and how many offers were refused.
pub fn inbox(n: &Named<(Vec<InboxOffer>, u64)>) -> pb::ListInboxResponse {
    let (offers, refused) = &n.rows;
    pb::ListInboxResponse {
        offers: offers.iter().map(|o| inbox_offer(&n.names, o)).collect(),
        refused: *refused,
    }
}

/// A ring's members, named.
pub fn members(n: &Named<Vec<Member>>) -> Vec<pb::Member> {
    n.rows.iter().map(|m| member(&n.names, m)).collect()
}

/// An upload under way.
pub fn upload(v: &UploadView) -> pb::Upload {
    let u = &v.upload;
    pb::Upload {
        peer: u.peer.to_string(),
        share: u.share.map(|h| h.to_string()).unwrap_or_default(),
        name: v.share_name.clone(),
        hash: u.hash.to_string(),
        bytes_sent: u.sent,
        rate: u.rate(),
        started_at: ringdrop_proto::clock::unix_secs(u.started),
    }
}

pub fn state(s: TransferState) -> pb::TransferState {
    s.as_pb()
}

pub fn transfer(v: &TransferView) -> pb::Transfer {
    let r = &v.rec;
    pb::Transfer {
        id: r.id,
        state: state(r.state) as i32,
        ticket: r.ticket.clone(),
        dest: r.dest.display().to_string(),
        name: r.name.clone(),
        hash: r.hash.to_string(),
        bytes_total: r.bytes_total,
        bytes_done: r.bytes_done,
        bytes_received: r.bytes_received,
        attempts: r.attempts,
        last_error: r.last_error.clone().unwrap_or_default(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        provider: r.provider.clone(),
        files: r.files.iter().map(|f| f.display().to_string()).collect(),
        rate: v.rate,
        client_places: r.placement == Placement::Client,
        owner_uid: r.owner_uid,
        force: r.force,
        providers: v
            .providers
            .iter()
            .map(|p| pb::Provider {
                endpoint_id: p.id.to_string(),
                bytes: p.bytes,
                connected: p.connected,
                path: p.path.clone(),
                rtt_us: p.rtt.as_micros() as u64,
            })
            .collect(),
        serving: v.serving.clone(),
    }
}

/// The stream's last message of a share request: the share made, with
/// its tickets.
pub fn share_created(c: &Created) -> pb::ShareProgress {
    pb::ShareProgress {
        event: Some(pb::share_progress::Event::Created(pb::ShareCreated {
            share: Some(share(&c.share)),
            ticket: c.ticket.clone(),
            created: c.created,
        })),
    }
}

/// A share as listed.
pub fn share(v: &ShareView) -> pb::Share {
    let (s, ticket, served, changed) = (&v.rec, v.ticket.clone(), v.served, v.changed);
    pb::Share {
        hash: s.hash.to_string(),
        name: s.name.clone(),
        path: s.path.display().to_string(),
        size: s.size,
        files: s.files,
        created_at: s.created_at,
        ticket,
        bytes_served: served,
        rings: s.rings.clone(),
        changed,
        listed: s.listed,
    }
}

/// A sent offer, its peer named from the address book.
pub fn sent_offer(names: &PeerNames, o: &SentOffer) -> pb::SentOffer {
    pb::SentOffer {
        id: o.id,
        peer: data_encoding::HEXLOWER.encode(&o.peer),
        peer_name: names.of(&o.peer),
        name: o.name.clone(),
        size: o.size,
        files: o.files,
        state: o.state.name().to_string(),
        bytes: o.bytes,
        created_at: o.created_at,
        expires_at: o.expires_at,
        attempts: o.attempts,
        last_error: o.last_error.clone().unwrap_or_default(),
        hash: o.hash.to_string(),
    }
}

/// An inbox offer, its sender named from the address book.
pub fn inbox_offer(names: &PeerNames, o: &InboxOffer) -> pb::InboxOffer {
    pb::InboxOffer {
        id: o.id,
        from: data_encoding::HEXLOWER.encode(&o.from),
        from_name: names.of(&o.from),
        name: o.name.clone(),
        size: o.size,
        files: o.files,
        ticket: o.ticket.clone(),
        received_at: o.received_at,
        state: o.state.name().to_string(),
        transfer_id: o.transfer_id.unwrap_or(0),
    }
}

/// A ring member, named from the address book.
pub fn member(names: &PeerNames, m: &Member) -> pb::Member {
    pb::Member {
        endpoint_id: data_encoding::HEXLOWER.encode(&m.id),
        name: names.of(&m.id),
        expires_at: m.expires_at.unwrap_or(0),
        expired: m
            .expires_at
            .is_some_and(|t| t <= ringdrop_proto::clock::now()),
    }
}

/// An invite, with the ticket that redeems it (empty once made).
pub fn invite(i: &crate::registry::InviteRecord, ticket: String) -> pb::Invite {
    pb::Invite {
        id: data_encoding::HEXLOWER.encode(&i.id),
        ring: i.ring.clone(),
        uses_left: i.uses_left,
        uses: i.uses,
        expires_at: i.expires_at,
        member_for: i.member_for.unwrap_or(0),
        created_at: i.created_at,
        revoked: i.revoked,
        ticket,
    }
}

/// The mark for `n` events a slow reader missed.
pub fn events_lost(n: u64) -> pb::Event {
    pb::Event {
        kind: pb::event::Kind::EventsLost as i32,
        at: ringdrop_proto::clock::now(),
        count: n,
        ..Default::default()
    }
}

/// The wire form of an event.
/// A transfer gained or lost a provider.
fn provider_event(c: crate::events::ProviderChange) -> pb::Event {
    pb::Event {
        kind: pb::event::Kind::ProviderChanged as i32,
        transfer_id: c.id,
        peer: c.peer,
        connected: c.connected,
        path: c.path,
        ..Default::default()
    }
}

pub fn event(s: crate::events::Stamped) -> pb::Event {
    pb::Event {
        at: s.at,
        ..event_of(s.event)
    }
}

fn event_of(event: crate::events::Event) -> pb::Event {
    use crate::events::Event;
    match event {
        Event::TransferEnded {
            id,
            state,
            dest,
            name,
            hash,
            files,
            error,
            ..
        } => pb::Event {
            kind: pb::event::Kind::TransferEnded as i32,
            transfer_id: id,
            state: state.name().to_string(),
            dest: dest.display().to_string(),
            name,
            hash,
            files: files.len() as u64,
            error: error.unwrap_or_default(),
            ..Default::default()
        },
        Event::ShareServed {
            peer,
            share,
            bytes,
            completed,
        } => pb::Event {
            kind: pb::event::Kind::ShareServed as i32,
            peer,
            share: share.unwrap_or_default(),
            bytes,
            completed,
            ..Default::default()
        },
        Event::OfferReceived {
            id,
            from,
            from_name,
            name,
            size,
        } => pb::Event {
            kind: pb::event::Kind::OfferReceived as i32,
            offer_id: id,
            peer: from,
            name: from_name,
            share: name,
            bytes: size,
            ..Default::default()
        },
        Event::ProviderChanged(change) => provider_event(change),
        Event::MemberJoined { ring, peer, name } => pb::Event {
            kind: pb::event::Kind::MemberJoined as i32,
            ring,
            peer,
            name,
            ..Default::default()
        },
    }
}

/// An address-book entry.
pub fn peer(p: crate::registry::PeerRecord) -> pb::Peer {
    pb::Peer {
        name: p.name,
        endpoint_id: data_encoding::HEXLOWER.encode(&p.id),
        relay_url: p.relay.unwrap_or_default(),
        direct_addresses: p.addrs.iter().map(|a| a.to_string()).collect(),
        updated_at: p.updated_at,
    }
}

/// The limits as the API shows them (0: unlimited).
pub fn limits(view: &Named<LimitsView>) -> pb::LimitsView {
    let (v, names) = (&view.rows, &view.names);
    let l = &v.settings;
    let r = |x: Option<u64>| x.unwrap_or(0);
    pb::LimitsView {
        up: r(l.up),
        down: r(l.down),
        alt_up: r(l.alt_up),
        alt_down: r(l.alt_down),
        alt_hours: l.alt.map(|s| s.hours()).unwrap_or_default(),
        alt_days: l.alt.map(|s| s.days_text()).unwrap_or_default(),
        alt_active: v.alt_active,
        up_now: r(v.now.0),
        down_now: r(v.now.1),
        peers: l
            .peers
            .iter()
            .map(|p| pb::PeerLimit {
                peer: data_encoding::HEXLOWER.encode(&p.id),
                name: names.of(&p.id),
                up: r(p.up),
                down: r(p.down),
            })
            .collect(),
        transfers: v
            .transfers
            .iter()
            .map(|(id, down)| pb::TransferLimit {
                id: *id,
                down: *down,
            })
            .collect(),
        source: if v.set { "set" } else { "config" }.into(),
    }
}
