//! Every write of a fetch stays beneath its destination, and a fetch into
//! an existing directory creates exactly one new entry there: the attacker
//! is a local user who can write in a shared destination (planting
//! symlinks), or a provider whose collection names try to plant dotfiles.

use anyhow::Result;
use iroh_blobs::{format::collection::Collection, ticket::BlobTicket, BlobFormat};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{completed, list_tree, plain_node, random_file, temp_dir, TestDaemon};

fn failed(t: &pb::Transfer) -> bool {
    t.state == pb::TransferState::Failed as i32
}

/// A provider (plain iroh-blobs, as sendme) serving a collection of
/// `names`, each holding its own name as content.
async fn provider_of(
    names: &[&str],
) -> Result<(
    String,
    iroh_blobs::store::mem::MemStore,
    iroh::protocol::Router,
)> {
    let (store, router, addr) = plain_node().await?;
    let mut entries = Vec::new();
    for n in names {
        let tt = store.add_bytes(n.as_bytes().to_vec()).temp_tag().await?;
        entries.push((n.to_string(), tt.hash()));
        std::mem::forget(tt);
    }
    let collection: Collection = entries.into_iter().collect();
    let root = collection.store(&store).await?;
    let ticket = BlobTicket::new(addr, root.hash(), BlobFormat::HashSeq).to_string();
    Ok((ticket, store, router))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_symlink_redirects_no_write() -> Result<()> {
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let tree = temp_dir("rdrop-src-")?.join("tree");
    random_file(&tree.join("top.txt"), 1000)?;
    random_file(&tree.join("sub/inner.txt"), 1000)?;
    let share = a.share(&tree).await?;
    for planted in ["tree", "tree/sub"] {
        // DEST is shared (think /tmp); someone else put a symlink where the
        // download's directory will go, pointing at a directory of theirs
        // choosing (the victim's ~/.ssh, say).
        let dest = temp_dir("rdrop-dest-")?;
        let elsewhere = temp_dir("rdrop-victim-")?;
        if planted == "tree/sub" {
            std::fs::create_dir(dest.join("tree"))?;
        }
        std::os::unix::fs::symlink(&elsewhere, dest.join(planted))?;
        let t = b.wait(b.fetch(&share.ticket, &dest).await?).await?;
        assert!(failed(&t), "{planted}: {t:?}");
        assert!(
            t.last_error.contains("symlink"),
            "{planted}: {}",
            t.last_error
        );
        assert!(
            list_tree(&elsewhere).is_empty(),
            "{planted}: written through the symlink: {:?}",
            list_tree(&elsewhere)
        );
        // Nothing of the download is left behind either (temporary files).
        let left: Vec<String> = list_tree(&dest)
            .into_iter()
            .filter(|p| p.contains("rdrop"))
            .collect();
        assert!(left.is_empty(), "{planted}: {left:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_into_a_home_plants_no_dotfile() -> Result<()> {
    let b = TestDaemon::start().await?;
    for names in [
        &[".bash_profile"][..],
        &[".config/autostart/x.desktop"],
        &[".ssh/authorized_keys", ".profile"],
    ] {
        let (ticket, _store, _router) = provider_of(names).await?;
        let home = temp_dir("rdrop-home-")?;
        let t = b.wait(b.fetch(&ticket, &home).await?).await?;
        if names.len() == 1 {
            // One hidden top-level name: refused, nothing written.
            assert!(failed(&t), "{names:?}: {t:?}");
            assert!(t.last_error.contains("hidden"), "{}", t.last_error);
            assert!(list_tree(&home).is_empty(), "{:?}", list_tree(&home));
        } else {
            // Several top-level names (a sendme collection): one new
            // directory named after the content, the dotfiles inside it.
            assert!(completed(&t), "{names:?}: {t:?}");
            let top: Vec<String> = std::fs::read_dir(&home)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            assert_eq!(top.len(), 1, "{top:?}");
            assert!(!top[0].starts_with('.'), "{top:?}");
            assert!(home.join(&top[0]).join(".ssh/authorized_keys").exists());
        }
    }
    // Named by the user with --out, a hidden name is theirs to choose.
    let (ticket, _store, _router) = provider_of(&[".bash_profile"]).await?;
    let home = temp_dir("rdrop-home-")?;
    let t = b
        .wait(b.fetch(&ticket, &home.join(".bash_profile")).await?)
        .await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(home.join(".bash_profile"))?, b".bash_profile");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_directories_on_the_way_are_created() -> Result<()> {
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let src = temp_dir("rdrop-src-")?.join("f.bin");
    let data = random_file(&src, 100_000)?;
    let share = a.share(&src).await?;
    let dest = temp_dir("rdrop-dest-")?;
    let out = dest.join("downloads/2026/f.bin");
    let t = b.wait(b.fetch(&share.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(&out)?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_planted_as_the_destination_in_a_shared_directory_is_refused() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let tree = temp_dir("rdrop-src-")?.join("tree");
    random_file(&tree.join("f.txt"), 1000)?;
    let share = a.share(&tree).await?;
    // `--out /tmp/incoming`, which the user expects to be created; someone
    // else made it first, a symlink to a directory of their choosing.
    let shared = temp_dir("rdrop-tmp-")?;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777))?;
    let elsewhere = temp_dir("rdrop-victim-")?;
    std::os::unix::fs::symlink(&elsewhere, shared.join("incoming"))?;
    let t = b
        .wait(b.fetch(&share.ticket, &shared.join("incoming")).await?)
        .await?;
    assert!(failed(&t), "{t:?}");
    assert!(t.last_error.contains("symlink"), "{}", t.last_error);
    assert!(
        list_tree(&elsewhere).is_empty(),
        "{:?}",
        list_tree(&elsewhere)
    );
    Ok(())
}
