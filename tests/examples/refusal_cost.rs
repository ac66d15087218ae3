//! What a refusal costs the provider: N requests for a restricted share
//! from a stranger, one at a time on one connection, against the same
//! number of allowed requests for a tiny open share, on loopback.
//!
//! `cargo run --release -p ringdrop-tests --example refusal_cost [N]`

use std::time::Instant;

use anyhow::Result;
use iroh_blobs::{protocol::GetRequest, ticket::BlobTicket};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{plain_node, random_file, temp_dir, TestDaemon};

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let a = TestDaemon::start().await?;
    a.rings()
        .create_ring(pb::CreateRingRequest {
            name: "team".into(),
        })
        .await?;
    let dir = temp_dir("rdrop-bench-")?;
    random_file(&dir.join("secret.bin"), 1024)?;
    random_file(&dir.join("public.bin"), 1024)?;
    let secret: BlobTicket = a
        .share_req_blob(&dir.join("secret.bin"), &["team"])
        .await?
        .parse()?;
    let public: BlobTicket = a
        .share_req_blob(&dir.join("public.bin"), &["open"])
        .await?
        .parse()?;

    let (store, router, _) = plain_node().await?;
    let conn = router
        .endpoint()
        .connect(secret.addr().clone(), iroh_blobs::ALPN)
        .await?;

    let t0 = Instant::now();
    let mut refused = 0;
    for _ in 0..n {
        let req = GetRequest::all(secret.hash());
        if store.remote().execute_get(conn.clone(), req).await.is_err() {
            refused += 1;
        }
    }
    let refused_each = t0.elapsed() / n as u32;

    // Allowed: the open collection's root, already held locally after the
    // first round, so each request is a round trip plus the gate's decision.
    let t1 = Instant::now();
    for _ in 0..n {
        store
            .remote()
            .execute_get(conn.clone(), GetRequest::blob(public.hash()))
            .await?;
    }
    let allowed_each = t1.elapsed() / n as u32;
    let status = a
        .node()
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    println!("requests                 {n} each, one at a time, one connection, loopback");
    println!(
        "refused                  {refused} of {n}, {refused_each:?} per request (round trip)"
    );
    println!("allowed (hash seq root)  {allowed_each:?} per request (round trip, ~200 bytes)");
    println!(
        "gate counters            allowed {}, refused {}",
        status.requests_allowed, status.requests_refused
    );
    Ok(())
}
