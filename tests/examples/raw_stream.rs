//! The transport's ceiling: raw iroh stream throughput between two
//! endpoints bound exactly as ringdropd binds its own (`node::bind_endpoint`
//! with the isolated config: loopback, relays and mDNS off), one stream,
//! no hashing, no disk. Used by `tests/bench/bench.py` next to our fetch.
//!
//! ```text
//! raw_stream serve DIR              # prints "ENDPOINT_ID ADDR", then serves
//! raw_stream send ID ADDR BYTES     # prints {"bytes": .., "secs": .., "mb_s": ..}
//! ```

use std::{net::SocketAddr, str::FromStr, time::Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler, Router},
    EndpointAddr, EndpointId,
};
use ringdropd::config::Config;

const ALPN: &[u8] = b"ringdrop-bench/raw/0";
const CHUNK: usize = 1 << 20;

/// Reads one stream to its end and answers with the byte count.
#[derive(Debug, Clone)]
struct Sink;

impl ProtocolHandler for Sink {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut n = 0u64;
        while let Some(chunk) = recv
            .read_chunk(CHUNK)
            .await
            .map_err(AcceptError::from_err)?
        {
            n += chunk.len() as u64;
        }
        send.write_all(&n.to_be_bytes())
            .await
            .map_err(AcceptError::from_err)?;
        send.finish().map_err(AcceptError::from_err)?;
        conn.closed().await;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", dir] => serve(dir).await,
        ["send", id, addr, bytes] => send(id, addr, bytes.parse()?).await,
        _ => bail!("usage: raw_stream serve DIR | raw_stream send ID ADDR BYTES"),
    }
}

async fn serve(dir: &str) -> Result<()> {
    let config = Config::isolated(std::path::Path::new(dir));
    std::fs::create_dir_all(&config.data_dir)?;
    let endpoint = ringdropd::node::bind_endpoint(&config).await?;
    let addr = endpoint
        .bound_sockets()
        .into_iter()
        .find(|a| a.is_ipv4())
        .context("no IPv4 socket")?;
    let _router = Router::builder(endpoint.clone()).accept(ALPN, Sink).spawn();
    println!("{} {addr}", endpoint.id());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn send(id: &str, addr: &str, bytes: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config::isolated(dir.path());
    std::fs::create_dir_all(&config.data_dir)?;
    let endpoint = ringdropd::node::bind_endpoint(&config).await?;
    let to = EndpointAddr::new(EndpointId::from_str(id)?).with_ip_addr(SocketAddr::from_str(addr)?);
    let conn = endpoint.connect(to, ALPN).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let t0 = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        send.write_chunk(chunk.slice(..n)).await?;
        left -= n as u64;
    }
    send.finish()?;
    let mut got = [0u8; 8];
    recv.read_exact(&mut got).await?;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        u64::from_be_bytes(got) == bytes,
        "the sink counted {} bytes",
        u64::from_be_bytes(got)
    );
    println!(
        "{{\"bytes\": {bytes}, \"secs\": {secs:.3}, \"mb_s\": {:.1}}}",
        bytes as f64 / 1e6 / secs
    );
    conn.close(0u32.into(), b"done");
    endpoint.close().await;
    Ok(())
}
