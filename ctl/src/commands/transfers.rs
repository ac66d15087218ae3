//! `transfers ls | show | wait`, and following one transfer to its end.

use std::path::PathBuf;

use clap::Subcommand;
use ringdrop_proto::v1::{self as pb, TransferState};
use serde_json::Value;

use super::place;
use crate::{
    client::{self, Client},
    error::CliError,
    output::{bytes, clean, line, transfer_json, transfer_line, Out},
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
    /// A transfer whose files are yours to place (ready) is placed now.
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
    /// Forget a finished transfer (its placed files stay); finished
    /// transfers are forgotten by themselves after 30 days.
    #[command(after_help = "Example:\n  ringdropctl transfers rm 3")]
    Rm { id: u64 },
    /// Follow progress and state changes of all transfers (--json: one object per line).
    #[command(
        after_help = "Examples:\n  ringdropctl transfers watch\n  ringdropctl --json transfers watch | jq -c '{id, state, bytes_done}'"
    )]
    Watch,
}

/// The daemon's worker is done with it: ended, or ready for its client.
fn is_terminal(t: &pb::Transfer) -> bool {
    TransferState::of(t.state).awaits_client()
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
                clean(&t.name)
            };
            let b = out.bar(t.bytes_total, name);
            bar = Some(b);
        }
        if let Some(b) = &bar {
            b.set_length(t.bytes_total);
            b.set_position(t.bytes_done);
            if !t.last_error.is_empty() && t.state == TransferState::Running as i32 {
                b.set_message(format!(
                    "{} (retrying: {})",
                    clean(&t.name),
                    clean(&t.last_error)
                ));
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
    match last {
        Some(t) if is_terminal(&t) => Ok(t),
        // The stream ended before the transfer did: the daemon is stopping.
        _ => {
            let mut e = CliError::failed(format!(
                "ringdropd stopped while following transfer {id}; it resumes when the daemon starts again: follow it with `ringdropctl transfers wait {id}`"
            ));
            e.lost_daemon = true;
            Err(e)
        }
    }
}

/// Follows a transfer to its end; if its files are ours to place, places
/// them. A daemon that restarts meanwhile is waited for (the transfer
/// resumes there) and followed again.
pub async fn follow_and_place(c: &Client, id: u64, out: &Out) -> Result<pb::Transfer, CliError> {
    let mut tries = 0;
    loop {
        let t = follow_across_restarts(c, id, out).await?;
        if !place::ours_to_place(&t) {
            return Ok(t);
        }
        // Another user's files are written with that user's authority:
        // root becomes that user (uid and groups) before opening anything
        // and talks to the daemon as them; anyone else is told who may.
        if t.owner_uid != place::my_uid() {
            place::become_user(t.owner_uid, id)?;
            let again = crate::client::connect(Some(c.socket.clone())).await?;
            return Box::pin(follow_and_place(&again, id, out)).await;
        }
        tries += 1;
        match place::place(c, &t, out).await {
            // Cut off mid-way: nothing was placed (the staging undid it);
            // the transfer is still ready once the daemon is back.
            Err(e) if e.lost_daemon && tries < PLACE_TRIES => {
                out.hint(format!(
                    "ringdropd went away while placing transfer {id}; waiting for it to come back"
                ));
                wait_for_daemon(c, id).await?;
            }
            other => return other,
        }
    }
}

/// Waits (up to [`REATTACH_FOR`]) until the daemon answers about `id` again.
async fn wait_for_daemon(c: &Client, id: u64) -> Result<(), CliError> {
    let deadline = std::time::Instant::now() + REATTACH_FOR;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let back = c
            .transfers()
            .get_transfer(pb::GetTransferRequest { id })
            .await
            .is_ok();
        if back {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "ringdropd did not come back within {}s; the transfer resumes when it starts: follow it with `ringdropctl transfers wait {id}`",
                REATTACH_FOR.as_secs()
            )));
        }
    }
}

/// Placements cut off by a lost connection are tried again this often.
const PLACE_TRIES: u32 = 3;

/// How long a follower waits for a restarting daemon to answer again.
const REATTACH_FOR: std::time::Duration = std::time::Duration::from_secs(60);

async fn follow_across_restarts(c: &Client, id: u64, out: &Out) -> Result<pb::Transfer, CliError> {
    loop {
        match follow(c, id, out).await {
            Err(e) if e.lost_daemon => {
                out.hint(format!("ringdropd went away; waiting for it to come back to follow transfer {id} again"));
                wait_for_daemon(c, id).await?;
            }
            other => return other,
        }
    }
}

/// Prints the outcome of a finished transfer; failed or cancelled is exit 1.
pub fn report(out: &Out, t: &pb::Transfer) -> Result<(), CliError> {
    if t.state == TransferState::Completed as i32 {
        out.emit(transfer_json(t), || {
            format!(
                "Fetched {} ({}) to {}",
                if t.name.is_empty() {
                    t.hash.clone()
                } else {
                    clean(&t.name)
                },
                bytes(t.bytes_total),
                t.dest
            )
        });
        return Ok(());
    }
    if out.json {
        line(transfer_json(t));
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
            "no reason recorded".to_string()
        } else {
            clean(&t.last_error)
        }
    )))
}

pub async fn run(socket: Option<PathBuf>, out: &Out, cmd: TransfersCmd) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    match cmd {
        TransfersCmd::Ls => list(&c, out).await?,
        TransfersCmd::Show { id } => {
            let t = c
                .transfers()
                .get_transfer(pb::GetTransferRequest { id })
                .await?
                .into_inner();
            out.emit(transfer_json(&t), || transfer_line(&t));
        }
        TransfersCmd::Wait { id } => {
            let t = follow_and_place(&c, id, out).await?;
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
        TransfersCmd::Cancel { id, purge } => cancel(&c, out, id, purge).await?,
        TransfersCmd::Rm { id } => {
            let t = c
                .transfers()
                .remove_transfer(pb::RemoveTransferRequest { id })
                .await?
                .into_inner()
                .transfer
                .unwrap_or_default();
            out.emit(transfer_json(&t), || format!("Forgot transfer {id}"));
        }
        TransfersCmd::Watch => watch(&c, out).await?,
    }
    Ok(())
}

async fn list(c: &Client, out: &Out) -> Result<(), CliError> {
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
    Ok(())
}

async fn cancel(c: &Client, out: &Out, id: u64, purge: bool) -> Result<(), CliError> {
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
            line(transfer_json(&t));
        } else {
            let rate = if t.rate > 0 {
                format!("  {}/s", bytes(t.rate))
            } else {
                String::new()
            };
            line(format!("{}{rate}", transfer_line(&t)));
        }
    }
    Ok(())
}
