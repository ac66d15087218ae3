//! `transfers ls | show | wait`, and following one transfer to its end.

use std::path::PathBuf;

use clap::Subcommand;
use ringdrop_proto::v1::{self as pb, TransferState};
use serde_json::Value;

use crate::{
    client::{self, Client},
    error::CliError,
    output::{bytes, transfer_json, transfer_line, Out},
};

#[derive(Debug, Subcommand)]
pub enum TransfersCmd {
    /// List transfers, newest first.
    #[command(
        after_help = "Examples:\n  ringdropctl transfers ls\n  ringdropctl --json transfers ls | jq '.[] | select(.state==\"failed\")'"
    )]
    Ls,
    /// Show one transfer.
    #[command(after_help = "Example:\n  ringdropctl transfers show 3")]
    Show { id: u64 },
    /// Wait until a transfer ends: exit 0 when completed, 1 when it failed or was cancelled.
    #[command(after_help = "Example:\n  ringdropctl transfers wait 3 && echo done")]
    Wait { id: u64 },
    /// Pause a queued or running transfer (its data is kept).
    #[command(after_help = "Example:\n  ringdropctl transfers pause 3")]
    Pause { id: u64 },
    /// Resume a paused or failed transfer.
    #[command(after_help = "Example:\n  ringdropctl transfers resume 3")]
    Resume { id: u64 },
    /// Cancel a transfer; nothing is written to its destination.
    #[command(
        after_help = "Examples:\n  ringdropctl transfers cancel 3\n  ringdropctl transfers cancel 3 --purge   # also free the partial data"
    )]
    Cancel {
        id: u64,
        /// Also free the partial data it fetched.
        #[arg(long)]
        purge: bool,
    },
    /// Follow progress and state changes of all transfers (--json: one object per line).
    #[command(
        after_help = "Examples:\n  ringdropctl transfers watch\n  ringdropctl --json transfers watch | jq -c '{id, state, bytes_done}'"
    )]
    Watch,
}

fn is_terminal(t: &pb::Transfer) -> bool {
    [
        TransferState::Completed,
        TransferState::Failed,
        TransferState::Cancelled,
    ]
    .iter()
    .any(|s| *s as i32 == t.state)
}

/// Follows a transfer to its end with a progress bar; returns the final row.
pub async fn follow(c: &Client, id: u64, out: &Out) -> Result<pb::Transfer, CliError> {
    let mut stream = c
        .transfers()
        .watch_transfer(pb::WatchTransferRequest { id })
        .await?
        .into_inner();
    let mut bar = None;
    let mut last = None;
    while let Some(t) = stream.message().await? {
        if t.bytes_total > 0 && bar.is_none() && !is_terminal(&t) {
            let name = if t.name.is_empty() {
                format!("transfer {id}")
            } else {
                t.name.clone()
            };
            let b = out.bar(t.bytes_total, name);
            bar = Some(b);
        }
        if let Some(b) = &bar {
            b.set_length(t.bytes_total);
            b.set_position(t.bytes_done);
            if !t.last_error.is_empty() && t.state == TransferState::Running as i32 {
                b.set_message(format!("{} (retrying: {})", t.name, t.last_error));
            }
        }
        let done = is_terminal(&t);
        last = Some(t);
        if done {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    last.ok_or_else(|| CliError::failed(format!("the daemon sent nothing about transfer {id}")))
}

/// Prints the outcome of a finished transfer; failed or cancelled is exit 1.
pub fn report(out: &Out, t: &pb::Transfer) -> Result<(), CliError> {
    if t.state == TransferState::Completed as i32 {
        out.emit(transfer_json(t), || {
            format!(
                "Fetched {} ({}) to {}",
                if t.name.is_empty() { &t.hash } else { &t.name },
                bytes(t.bytes_total),
                t.dest
            )
        });
        return Ok(());
    }
    if out.json {
        println!("{}", transfer_json(t));
    }
    let what = if t.state == TransferState::Cancelled as i32 {
        "was cancelled"
    } else {
        "failed"
    };
    Err(CliError::failed(format!(
        "transfer {} {what}: {}",
        t.id,
        if t.last_error.is_empty() {
            "no reason recorded"
        } else {
            &t.last_error
        }
    )))
}

pub async fn run(socket: Option<PathBuf>, out: &Out, cmd: TransfersCmd) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    match cmd {
        TransfersCmd::Ls => {
            let list = c
                .transfers()
                .list_transfers(pb::ListTransfersRequest {})
                .await?
                .into_inner()
                .transfers;
            out.emit(
                Value::Array(list.iter().map(transfer_json).collect()),
                || {
                    if list.is_empty() {
                        return "No transfers. Start one with `ringdropctl fetch TICKET`.".into();
                    }
                    list.iter()
                        .map(transfer_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        TransfersCmd::Show { id } => {
            let t = c
                .transfers()
                .get_transfer(pb::GetTransferRequest { id })
                .await?
                .into_inner();
            out.emit(transfer_json(&t), || transfer_line(&t));
        }
        TransfersCmd::Wait { id } => {
            let t = follow(&c, id, out).await?;
            report(out, &t)?;
        }
        TransfersCmd::Pause { id } => {
            let t = c
                .transfers()
                .pause_transfer(pb::PauseTransferRequest { id })
                .await?
                .into_inner();
            out.emit(transfer_json(&t), || format!("Paused transfer {id}"));
        }
        TransfersCmd::Resume { id } => {
            let t = c
                .transfers()
                .resume_transfer(pb::ResumeTransferRequest { id })
                .await?
                .into_inner();
            out.emit(transfer_json(&t), || {
                format!("Resumed transfer {id}; follow it with `ringdropctl transfers wait {id}`")
            });
        }
        TransfersCmd::Cancel { id, purge } => {
            let t = c
                .transfers()
                .cancel_transfer(pb::CancelTransferRequest { id, purge })
                .await?
                .into_inner();
            out.emit(transfer_json(&t), || {
                format!(
                    "Cancelled transfer {id}{}",
                    if purge { " and freed its data" } else { "" }
                )
            });
        }
        TransfersCmd::Watch => watch(&c, out).await?,
    }
    Ok(())
}

/// Prints every change of every transfer until interrupted.
async fn watch(c: &Client, out: &Out) -> Result<(), CliError> {
    let mut stream = c
        .transfers()
        .watch_transfers(pb::WatchTransfersRequest {})
        .await?
        .into_inner();
    while let Some(t) = stream.message().await? {
        if out.json {
            println!("{}", transfer_json(&t));
        } else {
            let rate = if t.rate > 0 {
                format!("  {}/s", bytes(t.rate))
            } else {
                String::new()
            };
            println!("{}{rate}", transfer_line(&t));
        }
    }
    Ok(())
}
