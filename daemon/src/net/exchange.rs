//! The shape of our own small protocols (catalog, invites, offers): one
//! connection, one bidirectional stream, one bounded request, one answer.
//! A peer that sends slowly or never takes the answer is let go after a
//! fixed wait; a connection is never held open by the other side.

use std::time::Duration;

use iroh::{
    endpoint::{Connection, SendStream},
    protocol::AcceptError,
    Endpoint, EndpointAddr,
};

/// How long a peer has to send its request, and to take the answer.
pub const PEER_WAIT: Duration = Duration::from_secs(10);

/// Reads one request of at most `max` bytes; `None` (the connection
/// closed) if the peer is too slow.
pub async fn read_request(
    conn: &Connection,
    max: usize,
) -> Result<Option<(SendStream, Vec<u8>)>, AcceptError> {
    let read = async {
        let (send, mut recv) = conn.accept_bi().await?;
        let req = recv.read_to_end(max).await.map_err(AcceptError::from_err)?;
        Ok::<_, AcceptError>((send, req))
    };
    match tokio::time::timeout(PEER_WAIT, read).await {
        Ok(r) => r.map(Some),
        Err(_) => {
            conn.close(3u32.into(), b"too slow");
            Ok(None)
        }
    }
}

/// Sends the answer, then lets the peer close (or closes after the wait).
pub async fn answer(
    conn: &Connection,
    mut send: SendStream,
    bytes: &[u8],
) -> Result<(), AcceptError> {
    send.write_all(bytes).await.map_err(AcceptError::from_err)?;
    send.finish().map_err(AcceptError::from_err)?;
    if tokio::time::timeout(PEER_WAIT, conn.closed())
        .await
        .is_err()
    {
        conn.close(0u32.into(), b"done");
    }
    Ok(())
}

/// Closes a connection whose request did not parse.
pub fn bad_request(conn: &Connection) {
    conn.close(2u32.into(), b"bad request");
}

/// Why asking a peer failed.
#[derive(Debug)]
pub enum AskError {
    /// It could not be reached.
    Connect(String),
    /// It was reached but the exchange failed.
    Exchange(String),
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Connect(m) | AskError::Exchange(m) => f.write_str(m),
        }
    }
}

/// Dials `addr` on `alpn` (waiting at most `connect_wait`), sends `req`
/// and reads an answer of at most `max` bytes.
pub async fn ask(
    endpoint: &Endpoint,
    addr: EndpointAddr,
    alpn: &[u8],
    connect_wait: Duration,
    req: &[u8],
    max: usize,
) -> Result<Vec<u8>, AskError> {
    let conn = tokio::time::timeout(connect_wait, endpoint.connect(addr, alpn))
        .await
        .map_err(|_| AskError::Connect(format!("no answer within {}s", connect_wait.as_secs())))?
        .map_err(|e| AskError::Connect(e.to_string()))?;
    let talk = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(req).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(max).await.map_err(|e| e.to_string())
    };
    let bytes = tokio::time::timeout(PEER_WAIT, talk)
        .await
        .map_err(|_| AskError::Exchange(format!("no answer within {}s", PEER_WAIT.as_secs())))?
        .map_err(|e| AskError::Exchange(closed_why(&conn).unwrap_or(e)))?;
    conn.close(0u32.into(), b"done");
    Ok(bytes)
}

/// What the peer said when it closed `conn` ("too many connections", "too
/// slow", ...), as printable ASCII only (it is the peer's text).
fn closed_why(conn: &Connection) -> Option<String> {
    let Some(iroh::endpoint::ConnectionError::ApplicationClosed(close)) = conn.close_reason()
    else {
        return None;
    };
    let said: String = close
        .reason
        .iter()
        .take(64)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    (!said.is_empty()).then(|| format!("the peer closed the connection: {said}"))
}
