//! The serving gate and interop, against plain iroh-blobs peers.

use anyhow::{Context, Result};
use iroh_blobs::{
    format::collection::Collection,
    protocol::{ChunkRanges, GetRequest, ERR_PERMISSION},
    ticket::BlobTicket,
    BlobFormat, Hash,
};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{completed, list_tree, plain_node, random_file, temp_dir, TestDaemon};

/// Runs `req` against the provider of `ticket` from a plain node.
async fn raw_get(ticket: &str, req: GetRequest) -> Result<Result<(), Option<u64>>> {
    let t: BlobTicket = ticket.parse().context("blob ticket")?;
    let (store, router, _) = plain_node().await?;
    let conn = router
        .endpoint()
        .connect(t.addr().clone(), iroh_blobs::ALPN)
        .await?;
    let res = store.remote().execute_get(conn, req).await;
    Ok(res
        .map(|_| ())
        .map_err(|e| e.iroh_error_code().map(|c| c.into_inner())))
}

async fn shared_dir(a: &TestDaemon) -> Result<(String, Collection)> {
    let root = temp_dir("rdrop-src-")?.join("d");
    random_file(&root.join("one.bin"), 40_000)?;
    random_file(&root.join("two.bin"), 50_000)?;
    let created = a.share_as(&root, pb::TicketFormat::Blob).await?;
    let t: BlobTicket = created.ticket.parse()?;
    // Read the collection back through a permitted request.
    let (store, router, _) = plain_node().await?;
    let conn = router
        .endpoint()
        .connect(t.addr().clone(), iroh_blobs::ALPN)
        .await?;
    store.remote().fetch(conn, t.hash_and_format()).await?;
    let collection = Collection::load(t.hash(), &*store).await?;
    Ok((created.ticket, collection))
}

#[tokio::test(flavor = "multi_thread")]
async fn child_with_child_ranges_is_refused_raw_child_is_served() -> Result<()> {
    let a = TestDaemon::start().await?;
    let (ticket, collection) = shared_dir(&a).await?;
    let child = collection.iter().next().unwrap().1;
    // As a raw blob: allowed.
    assert_eq!(raw_get(&ticket, GetRequest::blob(child)).await?, Ok(()));
    // With child ranges (the provider would read it as a hash sequence): refused.
    let req = GetRequest::builder()
        .root(ChunkRanges::all())
        .child(0, ChunkRanges::all())
        .build(child);
    assert_eq!(
        raw_get(&ticket, req).await?,
        Err(Some(ERR_PERMISSION.into_inner()))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_hash_is_refused() -> Result<()> {
    let a = TestDaemon::start().await?;
    let (ticket, _) = shared_dir(&a).await?;
    let unknown = Hash::new(b"not shared by anyone");
    assert_eq!(
        raw_get(&ticket, GetRequest::blob(unknown)).await?,
        Err(Some(ERR_PERMISSION.into_inner()))
    );
    // The fetching daemon turns the refusal into a permanent failure.
    let t: BlobTicket = ticket.parse()?;
    let bogus = BlobTicket::new(t.addr().clone(), unknown, BlobFormat::HashSeq).to_string();
    let b = TestDaemon::start().await?;
    let out = temp_dir("rdrop-out-")?;
    let done = b.wait(b.fetch(&bogus, &out).await?).await?;
    assert_eq!(done.state, pb::TransferState::Failed as i32);
    assert!(
        done.last_error.starts_with("refused by"),
        "{}",
        done.last_error
    );
    assert!(done.last_error.contains("may not fetch this share"));
    let status = a
        .node()
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    assert!(status.bytes_served > 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_blob_ticket_from_plain_provider() -> Result<()> {
    let (store, _router, addr) = plain_node().await?;
    let data = b"hello from a plain iroh-blobs provider".repeat(1000);
    let tt = store.add_bytes(data.clone()).temp_tag().await?;
    let collection: Collection = [("greeting.txt".to_string(), tt.hash())]
        .into_iter()
        .collect();
    let root = collection.store(&store).await?;
    let ticket = BlobTicket::new(addr, root.hash(), BlobFormat::HashSeq).to_string();

    let b = TestDaemon::start().await?;
    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("greeting.txt"))?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_write_nothing_outside_out() -> Result<()> {
    for bad in [
        "../escaped.txt",
        "/tmp/absolute.txt",
        "a//b.txt",
        "ok/../../up.txt",
        "./x/..",
    ] {
        let (store, _router, addr) = plain_node().await?;
        let good = store.add_bytes(b"fine".to_vec()).temp_tag().await?;
        let evil = store.add_bytes(b"evil".to_vec()).temp_tag().await?;
        let collection: Collection = [
            ("good.txt".to_string(), good.hash()),
            (bad.to_string(), evil.hash()),
        ]
        .into_iter()
        .collect();
        let root = collection.store(&store).await?;
        let ticket = BlobTicket::new(addr, root.hash(), BlobFormat::HashSeq).to_string();

        let parent = temp_dir("rdrop-parent-")?;
        let out = parent.join("out");
        std::fs::create_dir(&out)?;
        let b = TestDaemon::start().await?;
        let t = b.wait(b.fetch(&ticket, &out).await?).await?;
        assert_eq!(t.state, pb::TransferState::Failed as i32, "{bad}: {t:?}");
        assert!(
            t.last_error.contains("unsafe file name"),
            "{bad}: {}",
            t.last_error
        );
        assert_eq!(
            list_tree(&parent),
            vec!["out"],
            "{bad}: something was written"
        );
        assert!(!std::path::Path::new("/tmp/absolute.txt").exists());
    }
    Ok(())
}
