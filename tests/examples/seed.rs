//! Fills two running daemons for the page's benchmark: `a` shares
//! `SHARES` small files of its own, and fetches `TRANSFERS` small files
//! `b` shares (so `a` holds that many transfers), 16 calls at a time.
//! Prints what it made as JSON. Used by `tests/bench/web.py`.
//!
//! `cargo run --release -p ringdrop-tests --example seed -- A_SOCKET B_SOCKET DIR SHARES TRANSFERS`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt, TryStreamExt};
use ringdrop_proto::v1::{
    self as pb, shares_client::SharesClient, transfers_client::TransfersClient,
};
use tonic::transport::Channel;

const AT_ONCE: usize = 16;

async fn share(channel: Channel, path: PathBuf) -> Result<String> {
    let mut shares = SharesClient::new(channel);
    let mut progress = shares
        .share(pb::ShareRequest {
            path: path.display().to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    // Read to the stream's end: a stream dropped early is reset, and a
    // connection with too many resets is closed by h2.
    let mut ticket = None;
    while let Some(msg) = progress.message().await? {
        if let Some(pb::share_progress::Event::Created(c)) = msg.event {
            ticket = Some(c.ticket);
        }
    }
    ticket.with_context(|| format!("no share made of {}", path.display()))
}

/// `n` files of 100 bytes in `dir`, each with its own content.
fn files(dir: &Path, prefix: &str, n: usize) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    (0..n)
        .map(|i| {
            let p = dir.join(format!("{prefix}-{i:05}.txt"));
            std::fs::write(&p, format!("{prefix} {i:05} {}\n", "x".repeat(86)))?;
            Ok(p)
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, dir, n_shares, n_transfers] = args.as_slice() else {
        bail!("usage: seed A_SOCKET B_SOCKET DIR SHARES TRANSFERS");
    };
    let (n_shares, n_transfers): (usize, usize) = (n_shares.parse()?, n_transfers.parse()?);
    let dir = PathBuf::from(dir);
    let a_sock = PathBuf::from(a);
    let a = ringdrop_tests::channel(&a_sock).await?;
    let b = ringdrop_tests::channel(Path::new(b)).await?;

    let own = files(&dir.join("own"), "own", n_shares)?;
    stream::iter(own.into_iter().map(|p| share(a.clone(), p)))
        .buffer_unordered(AT_ONCE)
        .try_collect::<Vec<_>>()
        .await
        .context("sharing a's files")?;

    let theirs = files(&dir.join("theirs"), "theirs", n_transfers)?;
    let tickets: Vec<String> = stream::iter(theirs.into_iter().map(|p| share(b.clone(), p)))
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await
        .context("sharing b's files")?;
    let out = dir.join("fetched");
    std::fs::create_dir_all(&out)?;
    let ids: Vec<u64> = stream::iter(tickets.into_iter().map(|ticket| {
        let (a, out, a_sock) = (a.clone(), out.clone(), a_sock.clone());
        async move {
            let t = TransfersClient::new(a.clone())
                .fetch(pb::FetchRequest {
                    ticket,
                    out: out.display().to_string(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .transfer
                .context("no transfer")?;
            ringdrop_tests::wait_done(&a_sock, t.id).await?;
            anyhow::Ok(t.id)
        }
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect()
    .await
    .context("fetching b's files")?;
    println!("{{\"shares\": {n_shares}, \"transfers\": {}}}", ids.len());
    Ok(())
}
