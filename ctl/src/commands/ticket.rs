//! `ticket inspect`.

use std::path::PathBuf;

use clap::Subcommand;
use ringdrop_proto::v1 as pb;
use serde_json::json;

use crate::{
    client,
    error::CliError,
    output::{clean, Out},
};

#[derive(Debug, Subcommand)]
pub enum TicketCmd {
    /// Decode a ticket and show what it points at.
    #[command(after_help = "Example:\n  ringdropctl ticket inspect rdrop...")]
    Inspect {
        /// A ringdrop (rdrop...) or iroh blob (blob...) ticket.
        ticket: String,
    },
}

pub async fn run(socket: Option<PathBuf>, out: &Out, cmd: TicketCmd) -> Result<(), CliError> {
    let TicketCmd::Inspect { ticket } = cmd;
    let c = client::connect(socket).await?;
    let t = c
        .node()
        .inspect_ticket(pb::InspectTicketRequest { ticket })
        .await?
        .into_inner();
    out.emit(
        json!({
            "kind": t.kind,
            "version": t.version,
            "endpoint_id": t.endpoint_id,
            "relay_url": t.relay_url,
            "direct_addresses": t.direct_addresses,
            "hash": t.hash,
            "format": t.format,
            "name": t.name,
        }),
        || {
            format!(
                "kind:      {}{}\nprovider:  {}\nrelay:     {}\naddresses: {}\nhash:      {} ({})\nname:      {}",
                t.kind,
                if t.version > 0 { format!(" v{}", t.version) } else { String::new() },
                t.endpoint_id,
                if t.relay_url.is_empty() { "-" } else { &t.relay_url },
                if t.direct_addresses.is_empty() { "-".to_string() } else { t.direct_addresses.join(", ") },
                t.hash,
                t.format,
                if t.name.is_empty() { "-".to_string() } else { clean(&t.name) },
            )
        },
    );
    Ok(())
}
