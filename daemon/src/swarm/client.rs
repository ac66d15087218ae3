//! Asking a peer over the swarm protocol: its rosters for a collection,
//! and what it holds of one.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use bao_tree::ChunkRanges;
use iroh::{endpoint::Connection, Endpoint, EndpointAddr};
use iroh_blobs::Hash;

use super::{
    HaveAsk, HaveReply, RosterAsk, RosterReply, SignedRoster, ALPN, ASK_HAVE, ASK_ROSTER,
    MAX_REPLY, MAX_ROSTERS,
};

/// How long connecting to a peer may take.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// How long one ask may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `addr` on the swarm protocol.
pub async fn connect(endpoint: &Endpoint, addr: EndpointAddr) -> Result<Connection, String> {
    match tokio::time::timeout(CONNECT_WITHIN, endpoint.connect(addr, ALPN)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CONNECT_WITHIN.as_secs())),
    }
}

/// Sends one ask (`kind`, then its body) and reads the whole answer.
async fn ask(conn: &Connection, kind: u8, body: &[u8]) -> Result<Vec<u8>, String> {
    let run = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(&[kind]).await.map_err(|e| e.to_string())?;
        send.write_all(body).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(MAX_REPLY).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(ASK_TIMEOUT, run)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// The rosters `conn`'s peer has for `root` (signed, not yet verified),
/// telling it where this node is.
pub async fn rosters(
    conn: &Connection,
    root: &Hash,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SignedRoster>, String> {
    let body = postcard::to_stdvec(&RosterAsk {
        root: *root.as_bytes(),
        addrs,
    })
    .map_err(|e| e.to_string())?;
    let reply = ask(conn, ASK_ROSTER, &body).await?;
    let reply: RosterReply = postcard::from_bytes(&reply).map_err(|e| e.to_string())?;
    let mut rosters = reply.rosters;
    rosters.truncate(MAX_ROSTERS);
    Ok(rosters)
}

/// What a member holds, and what the owner is sending it now: chunk
/// ranges by collection position.
pub type Have = (HashMap<u64, ChunkRanges>, HashMap<u64, ChunkRanges>);

/// What `conn`'s peer holds of `root`, and is being sent.
pub async fn have(conn: &Connection, root: &Hash) -> Result<Have, String> {
    let body = postcard::to_stdvec(&HaveAsk {
        root: *root.as_bytes(),
    })
    .map_err(|e| e.to_string())?;
    let reply = ask(conn, ASK_HAVE, &body).await?;
    let reply: HaveReply = postcard::from_bytes(&reply).map_err(|e| e.to_string())?;
    let rows = |rows: Vec<(u64, Vec<u64>)>| {
        rows.into_iter()
            .map(|(p, row)| (p, crate::content::ranges::from_row(&row)))
            .collect()
    };
    Ok((rows(reply.files), rows(reply.coming)))
}
