//! A raw gRPC client for the tests: sends exactly the request named on
//! the command line, as whichever user runs it, with none of ringdropctl's
//! own checks (what any program in group `ringdrop` can send).
//!
//! rdraw SOCKET fetch TICKET OUT force|noforce
//! rdraw SOCKET finish ID PATH...
//! rdraw SOCKET cancel ID
//! rdraw SOCKET share PATH        (no files handed over)

use anyhow::{bail, Context, Result};
use ringdrop_proto::v1::{self as pb, transfers_client::TransfersClient};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (socket, cmd, rest) = match args.as_slice() {
        [socket, cmd, rest @ ..] => (socket, cmd.as_str(), rest),
        _ => bail!("usage: rdraw SOCKET fetch|finish|cancel ..."),
    };
    let channel = ringdrop_tests::channel(std::path::Path::new(socket)).await?;
    if let ("share", [path]) = (cmd, rest) {
        let mut shares = ringdrop_proto::v1::shares_client::SharesClient::new(channel);
        let answer = async {
            let mut stream = shares
                .share(pb::ShareRequest {
                    path: path.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            while let Some(msg) = stream.message().await? {
                if let Some(pb::share_progress::Event::Created(c)) = msg.event {
                    return Ok(c.share.unwrap_or_default().hash);
                }
            }
            Err(tonic::Status::unknown("the stream ended without a share"))
        };
        match answer.await {
            Ok(hash) => {
                println!("{{\"hash\": \"{hash}\"}}");
                return Ok(());
            }
            Err(status) => {
                eprintln!("{:?}: {}", status.code(), status.message());
                std::process::exit(1);
            }
        }
    }
    let mut t = TransfersClient::new(channel);
    let answer = match (cmd, rest) {
        ("fetch", [ticket, out, force]) => t
            .fetch(pb::FetchRequest {
                ticket: ticket.clone(),
                out: out.clone(),
                force: force == "force",
                caller_cannot_write: String::new(),
                host: Vec::new(),
                only: Vec::new(),
                no_reserve: false,
            })
            .await
            .map(|r| r.into_inner().transfer.unwrap_or_default()),
        ("finish", [id, paths @ ..]) => t
            .finish_transfer(pb::FinishTransferRequest {
                id: id.parse().context("id")?,
                files: paths.to_vec(),
            })
            .await
            .map(|r| r.into_inner()),
        ("cancel", [id]) => t
            .cancel_transfer(pb::CancelTransferRequest {
                id: id.parse().context("id")?,
                purge: true,
            })
            .await
            .map(|r| r.into_inner()),
        _ => bail!("unknown request {cmd} {rest:?}"),
    };
    match answer {
        Ok(tr) => {
            println!("{{\"id\": {}, \"state\": {}}}", tr.id, tr.state);
            Ok(())
        }
        Err(status) => {
            eprintln!("{:?}: {}", status.code(), status.message());
            std::process::exit(1);
        }
    }
}
