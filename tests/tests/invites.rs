//! Ring invites (real binaries, driven with `ringdropctl` as a user would):
//! one copied string makes a peer a member, both sides name each other, and
//! a forged, used-up, expired or withdrawn invite is refused and changes
//! nothing. The secret never shows in `peer ls` or a log.

use anyhow::{Context, Result};
use ringdrop_tests::{random_file, temp_dir, wait_done, BinDaemon};

/// `ringdropctl ring join`: its exit status and stderr.
fn join(d: &BinDaemon, invite: &str) -> Result<(bool, String)> {
    let out = d.ctl(&["ring", "join", invite])?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn members(d: &BinDaemon, ring: &str) -> Result<Vec<String>> {
    let v = d.ctl_json(&["ring", "members", ring])?;
    Ok(v.as_array()
        .context("array")?
        .iter()
        .filter_map(|m| m["endpoint_id"].as_str().map(str::to_string))
        .collect())
}

fn id_of(d: &BinDaemon) -> Result<String> {
    Ok(d.ctl_json(&["status"])?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invite_makes_a_member_with_one_copied_string() -> Result<()> {
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    a.ctl_json(&["ring", "create", "team"])?;
    let dir = temp_dir("rdrop-src-")?.join("plans");
    let data = random_file(&dir.join("q3.txt"), 50_000)?;
    a.ctl_json(&["share", dir.to_str().context("path")?, "--ring", "team"])?;

    // 1. invite (the one string to copy)
    let invite = a.ctl_json(&["ring", "invite", "team"])?;
    let ticket = invite["ticket"].as_str().context("ticket")?.to_string();
    assert!(ticket.starts_with("rdropinvite"), "{ticket}");
    // 2. join
    let joined = b.ctl_json(&["ring", "join", &ticket, "--name", "alice"])?;
    assert_eq!(joined["ring"], "team");
    assert_eq!(joined["name"], "alice");
    assert_eq!(joined["endpoint_id"], id_of(&a)?);

    let b_id = id_of(&b)?;
    assert_eq!(members(&a, "team")?, vec![b_id.clone()]);
    // Both sides know each other by name.
    let a_book = a.ctl_json(&["peer", "ls"])?;
    let b_entry = a_book
        .as_array()
        .context("array")?
        .iter()
        .find(|p| p["endpoint_id"] == b_id.as_str())
        .context("the joiner is not in the inviter's address book")?
        .clone();
    let b_name = b_entry["name"].as_str().context("name")?;
    assert!(
        !b_name.is_empty() && b_name.parse::<iroh::EndpointId>().is_err(),
        "{b_name}"
    );
    let b_book = b.ctl_json(&["peer", "ls"])?;
    assert!(
        b_book
            .as_array()
            .context("array")?
            .iter()
            .any(|p| p["name"] == "alice"),
        "{b_book}"
    );

    // The member fetches the ring's share through the catalog.
    let remote = b.ctl_json(&["remote", "ls", "alice"])?;
    let share_ticket = remote[0]["ticket"].as_str().context("catalog")?.to_string();
    let out = temp_dir("rdrop-out-")?;
    let fetched = b.ctl_json(&[
        "fetch",
        &share_ticket,
        "--out",
        out.to_str().context("path")?,
        "--detach",
    ])?;
    let id = fetched["id"].as_u64().context("id")?;
    wait_done(&b.socket, id).await?;
    assert_eq!(std::fs::read(out.join("plans/q3.txt"))?, data);

    // Used up now; listed as such; the secret is nowhere to be read.
    let (ok, err) = join(&b, &ticket)?;
    assert!(!ok && err.contains("used up"), "{err}");
    let listed = a.ctl_json(&["ring", "invites", "team"])?;
    assert_eq!(listed[0]["uses_left"], 0);
    assert!(listed[0].get("ticket").is_none(), "{listed}");
    let secret_part = &ticket[ticket.len() - 40..];
    for d in [&a, &b] {
        let log = std::fs::read_to_string(d.dir.join("ringdropd.log"))?;
        assert!(!log.contains(secret_part), "the invite is in a log");
        let book = d.ctl(&["peer", "ls"])?;
        assert!(!String::from_utf8_lossy(&book.stdout).contains(secret_part));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_used_up_expired_and_withdrawn_invites_change_nothing() -> Result<()> {
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let c = BinDaemon::spawn(&temp_dir("rdrop-c-")?, &[])?;
    a.ctl_json(&["ring", "create", "team"])?;
    let book_before = a.ctl_json(&["peer", "ls"])?;

    // Forged: a real invite's secret changed.
    let real = a.ctl_json(&["ring", "invite", "team"])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    let mut forged: ringdropd::rings::invites::Invite = real.parse()?;
    forged.secret[0] ^= 1;
    let (ok, err) = join(&b, &forged.to_string())?;
    assert!(!ok && err.contains("not valid"), "{err}");
    // A made-up id with the real secret.
    let mut forged: ringdropd::rings::invites::Invite = real.parse()?;
    forged.id[0] ^= 1;
    let (ok, err) = join(&b, &forged.to_string())?;
    assert!(!ok && err.contains("not valid"), "{err}");
    // Garbage.
    let (ok, err) = join(&b, "rdropinvitexyz")?;
    assert!(!ok && err.contains("not a ringdrop invite"), "{err}");

    // Used up: the real one works once, then a replay by another peer fails.
    let (ok, err) = join(&b, &real)?;
    assert!(ok, "{err}");
    let (ok, err) = join(&c, &real)?;
    assert!(!ok && err.contains("used up"), "{err}");

    // Expired.
    let short = a.ctl_json(&["ring", "invite", "team", "--expires", "1s"])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (ok, err) = join(&c, &short)?;
    assert!(!ok && err.contains("expired"), "{err}");

    // Withdrawn.
    let w = a.ctl_json(&["ring", "invite", "team"])?;
    let wid = w["id"].as_str().context("id")?;
    a.ctl_json(&["ring", "uninvite", &wid[..8]])?;
    let (ok, err) = join(&c, w["ticket"].as_str().context("ticket")?)?;
    assert!(!ok && err.contains("withdrawn"), "{err}");

    // Only the one real redemption changed anything.
    assert_eq!(members(&a, "team")?, vec![id_of(&b)?]);
    let book_after = a.ctl_json(&["peer", "ls"])?;
    assert_eq!(
        book_after.as_array().context("array")?.len(),
        book_before.as_array().context("array")?.len() + 1
    );
    let c_book = c.ctl_json(&["peer", "ls"])?;
    assert_eq!(c_book.as_array().context("array")?.len(), 0, "{c_book}");
    Ok(())
}
