//! `events`: what happens in the daemon, one line per event, until
//! interrupted (`--json`: one object per line, for scripts).

use std::path::PathBuf;

use ringdrop_proto::v1::{self as pb, event::Kind};
use serde_json::{json, Value};

use crate::{
    client,
    error::CliError,
    output::{bytes, clean, line, Out},
};

fn kind_name(kind: i32) -> &'static str {
    match Kind::try_from(kind) {
        Ok(Kind::TransferEnded) => "transfer_ended",
        Ok(Kind::ShareServed) => "share_served",
        Ok(Kind::EventsLost) => "events_lost",
        Ok(Kind::MemberJoined) => "member_joined",
        Ok(Kind::OfferReceived) => "offer_received",
        Ok(Kind::ProviderChanged) => "provider_changed",
        _ => "unknown",
    }
}

fn event_json(e: &pb::Event) -> Value {
    let mut v = json!({ "kind": kind_name(e.kind), "at": e.at });
    let fields = match Kind::try_from(e.kind) {
        Ok(Kind::TransferEnded) => json!({
            "transfer_id": e.transfer_id,
            "state": e.state,
            "dest": e.dest,
            "name": e.name,
            "hash": e.hash,
            "files": e.files,
            "error": e.error,
        }),
        Ok(Kind::ShareServed) => json!({
            "peer": e.peer,
            "share": e.share,
            "bytes": e.bytes,
            "completed": e.completed,
        }),
        Ok(Kind::EventsLost) => json!({ "count": e.count }),
        Ok(Kind::MemberJoined) => json!({ "ring": e.ring, "peer": e.peer, "name": e.name }),
        Ok(Kind::ProviderChanged) => json!({
            "transfer_id": e.transfer_id, "peer": e.peer, "connected": e.connected, "path": e.path,
        }),
        Ok(Kind::OfferReceived) => json!({
            "offer_id": e.offer_id,
            "peer": e.peer,
            "from_name": e.name,
            "name": e.share,
            "size": e.bytes,
        }),
        _ => json!({}),
    };
    if let (Some(v), Value::Object(f)) = (v.as_object_mut(), fields) {
        v.extend(f);
    }
    v
}

fn event_line(e: &pb::Event) -> String {
    match Kind::try_from(e.kind) {
        Ok(Kind::TransferEnded) => {
            let why = if e.error.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&e.error))
            };
            format!(
                "transfer {} {} {} -> {}{why}",
                e.transfer_id,
                e.state,
                clean(&e.name),
                clean(&e.dest)
            )
        }
        Ok(Kind::ShareServed) => format!(
            "served {} of {} to {}{}",
            bytes(e.bytes),
            short(&e.share),
            short(&e.peer),
            if e.completed { "" } else { " (cut short)" }
        ),
        Ok(Kind::EventsLost) => format!("({} events missed: this reader was too slow)", e.count),
        Ok(Kind::OfferReceived) => format!(
            "offer {} from {} ({}): {} ({}); see `ringdropctl inbox`",
            e.offer_id,
            clean(&e.name),
            short(&e.peer),
            clean(&e.share),
            bytes(e.bytes)
        ),
        Ok(Kind::MemberJoined) => format!(
            "{} ({}) joined ring {}",
            clean(&e.name),
            short(&e.peer),
            clean(&e.ring)
        ),
        Ok(Kind::ProviderChanged) if e.connected => format!(
            "transfer {} fetches from {} ({})",
            e.transfer_id,
            short(&e.peer),
            clean(&e.path)
        ),
        Ok(Kind::ProviderChanged) => format!(
            "transfer {} lost provider {}",
            e.transfer_id,
            short(&e.peer)
        ),
        _ => format!("(an event of a newer ringdropd: kind {})", e.kind),
    }
}

pub async fn events(socket: Option<PathBuf>, out: &Out) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    let mut stream = c
        .node()
        .watch_events(pb::WatchEventsRequest {})
        .await?
        .into_inner();
    out.hint("Waiting for events (Ctrl-C to stop)...");
    while let Some(e) = stream.message().await? {
        if out.json {
            line(event_json(&e));
        } else {
            line(event_line(&e));
        }
    }
    Ok(())
}

/// The first 12 characters of an id, or `?`.
fn short(id: &str) -> String {
    if id.is_empty() {
        return "?".into();
    }
    clean(&id.chars().take(12).collect::<String>())
}
