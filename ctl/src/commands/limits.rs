//! `limits`: show or set bandwidth limits.

use std::path::PathBuf;

use clap::Args;
use ringdrop_proto::{units::parse_rate, v1 as pb};
use serde_json::json;

use crate::{
    client,
    error::CliError,
    output::{bytes, clean, Out},
};

#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// The node's upload limit (or, with --peer, that peer's).
    #[arg(long, value_name = "RATE", value_parser = rate)]
    up: Option<u64>,
    /// The node's download limit (with --peer: that peer's; with
    /// --transfer: that transfer's own).
    #[arg(long, value_name = "RATE", value_parser = rate)]
    down: Option<u64>,
    /// Alternative upload limit, in force during --alt-hours.
    #[arg(long, value_name = "RATE", value_parser = rate)]
    alt_up: Option<u64>,
    /// Alternative download limit, in force during --alt-hours.
    #[arg(long, value_name = "RATE", value_parser = rate)]
    alt_down: Option<u64>,
    /// When the alternative limits apply, local time (08:00-18:00; may
    /// run past midnight); "off" removes the schedule.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    alt_hours: Option<String>,
    /// On which days (mon-fri, sat,sun, all; default all).
    #[arg(long, value_name = "DAYS")]
    alt_days: Option<String>,
    /// Set --up/--down for this peer (endpoint id or address-book name).
    #[arg(long, value_name = "PEER", conflicts_with_all = ["alt_up", "alt_down", "alt_hours", "alt_days", "transfer"])]
    peer: Option<String>,
    /// Set --down for this transfer of yours.
    #[arg(long, value_name = "ID", conflicts_with_all = ["up", "alt_up", "alt_down", "alt_hours", "alt_days", "reset"])]
    transfer: Option<u64>,
    /// Back to the config file's limits (before the other options apply).
    #[arg(long)]
    reset: bool,
}

/// A rate: bytes per second, or 0 / none / unlimited (0 on the wire).
fn rate(s: &str) -> Result<u64, String> {
    Ok(parse_rate(s)?.unwrap_or(0))
}

impl LimitsArgs {
    fn changes_node(&self) -> bool {
        self.reset
            || self.up.is_some()
            || self.down.is_some()
            || self.alt_up.is_some()
            || self.alt_down.is_some()
            || self.alt_hours.is_some()
            || self.alt_days.is_some()
    }
}

pub async fn limits(socket: Option<PathBuf>, out: &Out, args: LimitsArgs) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    let mut l = c.limits();
    let view = if let Some(id) = args.transfer {
        let down = args.down.ok_or_else(|| {
            CliError::bad_input("--transfer ID takes --down RATE (0 removes its limit)")
        })?;
        l.set_transfer_limit(pb::SetTransferLimitRequest { id, down })
            .await?
    } else if let Some(peer) = args.peer {
        l.set_limits(pb::SetLimitsRequest {
            peers: vec![pb::PeerLimitChange {
                peer,
                up: args.up,
                down: args.down,
            }],
            ..Default::default()
        })
        .await?
    } else if args.changes_node() {
        let hours = args
            .alt_hours
            .map(|h| if h == "off" { String::new() } else { h });
        l.set_limits(pb::SetLimitsRequest {
            reset: args.reset,
            up: args.up,
            down: args.down,
            alt_up: args.alt_up,
            alt_down: args.alt_down,
            alt_hours: hours,
            alt_days: args.alt_days,
            peers: Vec::new(),
        })
        .await?
    } else {
        l.get_limits(pb::GetLimitsRequest {}).await?
    };
    show(out, &view.into_inner());
    Ok(())
}

fn rate_text(r: u64) -> String {
    if r == 0 {
        "unlimited".into()
    } else {
        format!("{}/s", bytes(r))
    }
}

fn show(out: &Out, v: &pb::LimitsView) {
    out.emit(limits_json(v), || limits_text(v));
}

fn limits_json(v: &pb::LimitsView) -> serde_json::Value {
    let peers: Vec<_> = v
        .peers
        .iter()
        .map(|p| json!({"peer": p.peer, "name": p.name, "up": p.up, "down": p.down}))
        .collect();
    let transfers: Vec<_> = v
        .transfers
        .iter()
        .map(|t| json!({"id": t.id, "down": t.down}))
        .collect();
    json!({
        "up": v.up, "down": v.down,
        "alt_up": v.alt_up, "alt_down": v.alt_down,
        "alt_hours": v.alt_hours, "alt_days": v.alt_days,
        "alt_active": v.alt_active,
        "up_now": v.up_now, "down_now": v.down_now,
        "peers": peers, "transfers": transfers,
        "source": v.source,
    })
}

fn limits_text(v: &pb::LimitsView) -> String {
    let mut s = format!(
        "upload:   {}\ndownload: {}",
        rate_text(v.up),
        rate_text(v.down)
    );
    let or_normal = |r: u64| {
        if r == 0 {
            "as above".into()
        } else {
            rate_text(r)
        }
    };
    if !v.alt_hours.is_empty() {
        s.push_str(&format!(
            "\nalternative: upload {}, download {}, {} on {}{}",
            or_normal(v.alt_up),
            or_normal(v.alt_down),
            v.alt_hours,
            v.alt_days,
            if v.alt_active { " (in force now)" } else { "" }
        ));
    }
    s.push_str(&format!(
        "\nin force: upload {}, download {} ({})",
        rate_text(v.up_now),
        rate_text(v.down_now),
        if v.source == "set" {
            "set with ringdropctl limits"
        } else {
            "from the config"
        }
    ));
    for p in &v.peers {
        let short = &p.peer[..12.min(p.peer.len())];
        let who = if p.name.is_empty() {
            p.peer.clone()
        } else {
            format!("{} ({short})", clean(&p.name))
        };
        s.push_str(&format!(
            "\npeer {who}: upload {}, download {}",
            rate_text(p.up),
            rate_text(p.down)
        ));
    }
    for t in &v.transfers {
        s.push_str(&format!(
            "\ntransfer {}: download {}",
            t.id,
            rate_text(t.down)
        ));
    }
    s
}
