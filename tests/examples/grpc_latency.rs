//! Round-trip latency of raw gRPC `GetStatus` calls to a running ringdropd
//! over its Unix socket, on one channel: prints p50 and p99 in
//! milliseconds as JSON. Used by `tests/bench/run.sh`.
//!
//! `cargo run --release -p ringdrop-tests --example grpc_latency -- SOCKET [N]`

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use ringdrop_proto::v1::{self as pb, node_client::NodeClient};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let socket = PathBuf::from(args.next().context("usage: grpc_latency SOCKET [N]")?);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let mut client = NodeClient::new(ringdrop_tests::channel(&socket).await?);
    // One call to settle the connection, not counted.
    client.get_status(pb::GetStatusRequest {}).await?;
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.get_status(pb::GetStatusRequest {}).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "{{\"calls\": {n}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
