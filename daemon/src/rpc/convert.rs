//! Domain values -> proto messages.

use ringdrop_proto::v1 as pb;

use crate::{
    registry::{Placement, ShareRecord, TransferState},
    transfers::TransferView,
};

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
    }
}

pub fn share(s: &ShareRecord, ticket: String, served: u64, changed: bool) -> pb::Share {
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
