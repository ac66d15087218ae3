//! What one gate decision costs for a big share: a 10,000-file collection
//! shared open; a stranger asks, one at a time on one connection, for the
//! collection root only (hash sequence, ~320 KB, held locally after the
//! first round, so the rest is a round trip plus the decision), and for
//! one small file of it as a raw blob (the decision walks child -> share).
//! Compared with the same requests for a one-file share.
//!
//! `cargo run --release -p ringdrop-tests --example decision_cost [FILES] [N]`

use std::time::{Duration, Instant};

use anyhow::Result;
use iroh_blobs::{format::collection::Collection, protocol::GetRequest, ticket::BlobTicket};
use ringdrop_tests::{plain_node, random_file, temp_dir, TestDaemon};

async fn each(
    n: usize,
    mut ask: impl FnMut() -> futures::future::BoxFuture<'static, Result<()>>,
) -> Result<Duration> {
    ask().await?; // warm: content held locally, caches filled
    let t0 = Instant::now();
    for _ in 0..n {
        ask().await?;
    }
    Ok(t0.elapsed() / n as u32)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let a = TestDaemon::start().await?;
    let dir = temp_dir("rdrop-bench-")?;
    for i in 0..files {
        random_file(&dir.join("many").join(format!("f{i:05}")), 64)?;
    }
    random_file(&dir.join("one.bin"), 64)?;
    let many: BlobTicket = a
        .share_req_blob(&dir.join("many"), &["open"])
        .await?
        .parse()?;
    let one: BlobTicket = a
        .share_req_blob(&dir.join("one.bin"), &["open"])
        .await?
        .parse()?;

    let (store, router, _) = plain_node().await?;
    let conn = router
        .endpoint()
        .connect(many.addr().clone(), iroh_blobs::ALPN)
        .await?;
    // Learn the big collection's children once.
    store
        .remote()
        .execute_get(conn.clone(), GetRequest::all(many.hash()))
        .await?;
    let collection = Collection::load(many.hash(), &*store).await?;
    let child = collection
        .iter()
        .last()
        .map(|(_, h)| *h)
        .unwrap_or(many.hash());

    let get = |hash| {
        let (store, conn) = (store.clone(), conn.clone());
        move || -> futures::future::BoxFuture<'static, Result<()>> {
            let (store, conn) = (store.clone(), conn.clone());
            Box::pin(async move {
                store
                    .remote()
                    .execute_get(conn, GetRequest::blob(hash))
                    .await?;
                Ok(())
            })
        }
    };
    let root_many = each(n, get(many.hash())).await?;
    let root_one = each(n, get(one.hash())).await?;
    let child_many = each(n, get(child)).await?;
    // Cold: the policy's per-share check of every source (cached for a
    // second) runs again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Instant::now();
    get(many.hash())().await?;
    let cold = t.elapsed();
    println!("{files}-file share vs a one-file share, {n} requests each, loopback, one at a time");
    println!("collection root (raw)     {root_many:?} vs {root_one:?} per request");
    println!("one file of it (raw)      {child_many:?} per request");
    println!("collection root, cold     {cold:?} (every source file checked again)");
    println!(
        "decision cost of the big share, beyond the small one: {:?} warm",
        root_many.saturating_sub(root_one)
    );
    Ok(())
}
