//! One machine, many users: a `--system` daemon running as a user of its
//! own, two operators in group `ringdrop` (real local users, `setpriv
//! --init-groups`), each trying to read, control or overwrite what is the
//! other's, or the daemon's, with `ringdropctl` and with raw requests
//! (`rdraw`). Every attack here succeeded before the authority model.
//! Needs root and setpriv (CI has both).

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use ringdrop_tests::{bin, random_file, temp_dir, BinDaemon};
use serde_json::Value;

/// The daemon's own user (as the unit's `User=ringdrop`).
const SERVICE: u32 = 65534;

fn can_switch_uid() -> bool {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let tools = ["setpriv", "useradd", "groupadd", "gpasswd"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !(root && tools) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with setpriv and useradd"
        );
        eprintln!("SKIPPED: operators need root, setpriv and useradd");
    }
    root && tools
}

/// A local user in group `ringdrop` (created once), with a private home.
struct User {
    name: &'static str,
    uid: u32,
    home: PathBuf,
}

fn run(cmd: &mut Command) -> Result<Output> {
    Ok(cmd.stdin(Stdio::null()).output()?)
}

fn id_of(name: &str) -> Option<u32> {
    let out = run(Command::new("id").args(["-u", name])).ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn ringdrop_gid() -> Result<u32> {
    let out = run(Command::new("getent").args(["group", "ringdrop"]))?;
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    line.split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .context("group ringdrop")
}

fn user(name: &'static str, in_group: bool) -> Result<User> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK.lock();
    if run(Command::new("getent").args(["group", "ringdrop"]))?
        .stdout
        .is_empty()
    {
        run(Command::new("groupadd").args(["--system", "ringdrop"]))?;
    }
    if id_of(name).is_none() {
        let out = run(Command::new("useradd").args([
            "-M",
            "-d",
            "/nonexistent",
            "-s",
            "/bin/sh",
            "-U",
            name,
        ]))?;
        ensure!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if in_group {
        run(Command::new("usermod").args(["-aG", "ringdrop", name]))?;
    }
    let uid = id_of(name).context("uid")?;
    let home = temp_dir(&format!("rdrop-{name}-"))?;
    std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
    Ok(User { name, uid, home })
}

impl User {
    /// `program` to be run as this user, with its groups.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            self.name,
            "--regid",
            self.name,
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    }

    /// A directory of this user's at `path`.
    fn mkdir(&self, path: &Path) -> Result<()> {
        let out = run(self.command("mkdir").arg(path))?;
        ensure!(
            out.status.success(),
            "mkdir {}: {}",
            path.display(),
            text(&out)
        );
        Ok(())
    }

    /// `ringdropctl --socket S --json ARGS` as this user, with its groups.
    fn ctl(&self, socket: &Path, args: &[&str]) -> Result<Output> {
        run(self
            .command(bin("ringdropctl")?)
            .arg("--socket")
            .arg(socket)
            .arg("--json")
            .args(args))
    }

    /// A raw request (`rdraw`) as this user.
    fn raw(&self, socket: &Path, args: &[&str]) -> Result<Output> {
        run(self.command(bin("rdraw")?).arg(socket).args(args))
    }

    /// A file of this user's, readable by the service (to be shared).
    fn public_file(&self, name: &str, len: usize) -> Result<(PathBuf, Vec<u8>)> {
        let dir = temp_dir(&format!("rdrop-{}-pub-", self.name))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let path = dir.join(name);
        let bytes = random_file(&path, len)?;
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.uid))?;
        std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.uid))?;
        Ok((path, bytes))
    }
}

/// `ringdropctl --socket SOCKET --json ARGS` as the test's own user (root:
/// an admin), at most a minute.
fn root_ctl(socket: &Path, args: &[&str]) -> Result<Output> {
    run(Command::new("timeout")
        .arg("60")
        .arg(bin("ringdropctl")?)
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .args(args))
}

/// Fails with `what` (formatted with the output) unless `out` failed.
fn refused(out: &Output, what: &str) -> Result<()> {
    ensure!(!out.status.success(), "{what}: {}", text(out));
    Ok(())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn text_of(v: &Value) -> String {
    v.to_string()
}

fn json(out: &Output) -> Result<Value> {
    ensure!(out.status.success(), "failed: {}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(
        stdout.lines().last().context("no output")?,
    )?)
}

/// The system service as the unit runs it (its own user, `--system`, the
/// socket 0660 for group `ringdrop`), and a provider to fetch from.
struct Node {
    service: BinDaemon,
    provider: BinDaemon,
    download_dir: PathBuf,
}

fn node() -> Result<Node> {
    let dir = temp_dir("rdrop-sys-")?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    // A download dir every operator may write (sticky, like /tmp): the
    // place where links get planted.
    let download_dir = dir.join("dl");
    std::fs::create_dir(&download_dir)?;
    std::fs::set_permissions(&download_dir, std::fs::Permissions::from_mode(0o1777))?;
    let dl = download_dir.to_str().context("path")?.to_string();
    let group = ringdrop_gid()?;
    let service =
        BinDaemon::spawn_as_group(SERVICE, group, &dir, &["--system", "--download-dir", &dl])?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let provider = BinDaemon::spawn(&temp_dir("rdrop-prov-")?, &[])?;
    Ok(Node {
        service,
        provider,
        download_dir,
    })
}

impl Node {
    /// Shares a new file on the provider: (ticket, bytes).
    fn offer(&self, len: usize) -> Result<(String, Vec<u8>)> {
        let src = temp_dir("rdrop-src-")?.join("payload.bin");
        let bytes = random_file(&src, len)?;
        let out = root_ctl(
            &self.provider.socket,
            &["share", src.to_str().context("p")?],
        )?;
        let v = json(&out)?;
        Ok((v["ticket"].as_str().context("ticket")?.to_string(), bytes))
    }

    fn sock(&self) -> &Path {
        &self.service.socket
    }
}

/// Waits until `who` sees transfer `id` in `state`.
fn wait_state(who: &User, socket: &Path, id: u64, state: &str) -> Result<Value> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let t = json(&who.ctl(socket, &["transfers", "show", &id.to_string()])?)?;
        if t["state"] == state {
            return Ok(t);
        }
        if Instant::now() > until {
            bail!("transfer {id} never became {state}: {t}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Alice's fetch, detached, left `ready` for her client.
fn alice_ready(n: &Node, alice: &User) -> Result<(u64, Vec<u8>, PathBuf)> {
    let (ticket, bytes) = n.offer(200_000)?;
    let dest = alice.home.join("got.bin");
    let t = json(&alice.ctl(
        n.sock(),
        &[
            "fetch",
            &ticket,
            "--out",
            dest.to_str().context("p")?,
            "--detach",
        ],
    )?)?;
    let id = t["id"].as_u64().context("id")?;
    wait_state(alice, n.sock(), id, "ready")?;
    Ok((id, bytes, dest))
}

#[test]
fn an_operator_sees_and_controls_only_its_own_transfers() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (alice, bob) = (user("rd-alice", true)?, user("rd-bob", true)?);
    let n = node()?;
    let (id, bytes, dest) = alice_ready(&n, &alice)?;
    let ids = id.to_string();

    let listed = json(&bob.ctl(n.sock(), &["transfers", "ls"])?)?;
    ensure!(
        !listed.to_string().contains(&format!("\"id\":{id}")),
        "bob sees alice's transfer: {listed}"
    );
    for args in [
        vec!["transfers", "show", &ids],
        vec!["transfers", "cancel", &ids, "--purge"],
        vec!["transfers", "pause", &ids],
        vec!["transfers", "resume", &ids],
        vec!["transfers", "wait", &ids],
    ] {
        let out = bob.ctl(n.sock(), &args)?;
        refused(&out, &format!("bob ran {args:?} on alice's transfer"))?;
    }
    let raw = bob.raw(n.sock(), &["cancel", &ids])?;
    refused(&raw, "bob's raw cancel went through")?;

    // Still hers, untouched: she collects it.
    let t = json(&alice.ctl(n.sock(), &["transfers", "wait", &ids])?)?;
    ensure!(t["state"] == "completed", "{t}");
    ensure!(std::fs::read(&dest)? == bytes, "alice's file differs");
    ensure!(
        std::fs::metadata(&dest)?.uid() == alice.uid,
        "placed as someone else"
    );
    // Finished, it is forgotten by its owner only; the file stays.
    let out = bob.ctl(n.sock(), &["transfers", "rm", &ids])?;
    refused(&out, "bob forgot alice's transfer")?;
    json(&alice.ctl(n.sock(), &["transfers", "rm", &ids])?)?;
    let out = alice.ctl(n.sock(), &["transfers", "show", &ids])?;
    refused(&out, "still listed after rm")?;
    ensure!(std::fs::read(&dest)? == bytes, "rm touched the placed file");
    Ok(())
}

#[test]
fn root_collecting_an_operators_transfer_writes_only_as_that_operator() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (alice, bob) = (user("rd-alice", true)?, user("rd-bob", true)?);
    let n = node()?;

    // Bob asks, raw, for content to go over a file of root's with --force.
    let roots = temp_dir("rdrop-root-")?;
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o755))?;
    let victim = roots.join("important.conf");
    std::fs::write(&victim, b"root's own\n")?;
    let (ticket, _) = n.offer(50_000)?;
    let started = bob.raw(
        n.sock(),
        &["fetch", &ticket, victim.to_str().context("p")?, "force"],
    )?;
    ensure!(started.status.success(), "{}", text(&started));
    let id: Value = serde_json::from_slice(&started.stdout)?;
    let id = id["id"].as_u64().context("id")?;
    wait_state(&bob, n.sock(), id, "ready")?;
    // Root collects it, as the README says it may: root's client becomes
    // bob, who may not write there.
    let out = root_ctl(n.sock(), &["transfers", "wait", &id.to_string()])?;
    refused(&out, "root placed bob's transfer")?;
    ensure!(
        std::fs::read(&victim)? == b"root's own\n",
        "root's file was overwritten"
    );

    // Alice's transfer collected by root lands as alice's file.
    let (aid, bytes, dest) = alice_ready(&n, &alice)?;
    let out = root_ctl(n.sock(), &["transfers", "wait", &aid.to_string()])?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(std::fs::read(&dest)? == bytes);
    ensure!(
        std::fs::metadata(&dest)?.uid() == alice.uid,
        "root's client wrote as root"
    );
    Ok(())
}

#[test]
fn finish_records_only_what_the_plan_places() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let alice = user("rd-alice", true)?;
    let n = node()?;
    let (id, _, _) = alice_ready(&n, &alice)?;
    let ids = id.to_string();
    for bogus in [vec!["/etc/shadow"], vec!["/tmp/../etc/shadow"]] {
        let mut args = vec!["finish", ids.as_str()];
        args.extend(bogus.iter().copied());
        let out = alice.raw(n.sock(), &args)?;
        refused(&out, &format!("finish took {bogus:?}"))?;
    }
    wait_state(&alice, n.sock(), id, "ready")?;
    Ok(())
}

#[test]
fn a_link_planted_in_the_download_dir_leads_no_write_into_the_data_dir() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let bob = user("rd-bob", true)?;
    let n = node()?;
    let key = n.service.dir.join("data").join("secret.key");
    let before = std::fs::read(&key)?;
    // Bob plants dl/evil -> the daemon's dir and asks for a write through it.
    let evil = n.download_dir.join("evil");
    let planted = run(bob.command("ln").arg("-s").arg(&n.service.dir).arg(&evil))?;
    ensure!(planted.status.success(), "{}", text(&planted));
    let (ticket, _) = n.offer(64)?;
    let target = evil.join("data").join("secret.key");
    let out = bob.ctl(
        n.sock(),
        &[
            "fetch",
            &ticket,
            "--out",
            target.to_str().context("p")?,
            "--force",
        ],
    )?;
    refused(&out, "bob's fetch through the link succeeded")?;
    ensure!(std::fs::read(&key)? == before, "the node key was replaced");
    Ok(())
}

#[test]
fn offers_land_only_in_a_directory_of_the_rules_owner() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (alice, bob) = (user("rd-alice", true)?, user("rd-bob", true)?);
    let n = node()?;
    let status = root_ctl(&n.provider.socket, &["status"])?;
    let peer = json(&status)?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();
    let data = n.service.dir.join("data");
    let roots = temp_dir("rdrop-root-")?;
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o777))?;
    for dir in [&data, &n.service.dir, &roots] {
        let out = alice.ctl(
            n.sock(),
            &[
                "peer",
                "trust",
                &peer,
                "--accept-into",
                dir.to_str().context("p")?,
            ],
        )?;
        ensure!(
            !out.status.success(),
            "trust into {} accepted: {}",
            dir.display(),
            text(&out)
        );
    }
    let mine = alice.home.join("in");
    alice.mkdir(&mine)?;
    std::fs::set_permissions(&alice.home, std::fs::Permissions::from_mode(0o711))?;
    let ok = alice.ctl(
        n.sock(),
        &[
            "peer",
            "trust",
            &peer,
            "--accept-into",
            mine.to_str().context("p")?,
        ],
    )?;
    ensure!(ok.status.success(), "{}", text(&ok));
    // The rule is alice's: bob neither replaces nor removes it.
    let bob_dir = bob.home.join("in");
    let out = bob.ctl(
        n.sock(),
        &[
            "peer",
            "trust",
            &peer,
            "--accept-into",
            bob_dir.to_str().context("p")?,
        ],
    )?;
    refused(&out, "bob replaced alice's rule")?;
    let out = bob.ctl(n.sock(), &["peer", "untrust", &peer])?;
    refused(&out, "bob removed alice's rule")?;
    Ok(())
}

#[test]
fn shares_rings_and_names_belong_to_their_owner() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (alice, bob) = (user("rd-alice", true)?, user("rd-bob", true)?);
    let n = node()?;
    json(&alice.ctl(n.sock(), &["ring", "create", "alices"])?)?;
    let (file, _) = alice.public_file("notes.txt", 4096)?;
    let shared = json(&alice.ctl(
        n.sock(),
        &["share", file.to_str().context("p")?, "--ring", "alices"],
    )?)?;
    let hash = shared["share"]["hash"]
        .as_str()
        .or_else(|| shared["hash"].as_str())
        .context("hash")?
        .to_string();

    let listed = bob.ctl(n.sock(), &["shares", "ls"])?;
    ensure!(
        !text(&listed).contains(&hash),
        "bob lists alice's share: {}",
        text(&listed)
    );
    let rings = bob.ctl(n.sock(), &["ring", "ls"])?;
    ensure!(
        !text(&rings).contains("alices"),
        "bob lists alice's ring: {}",
        text(&rings)
    );
    for args in [
        vec!["unshare", hash.as_str()],
        vec!["ring", "members", "alices"],
        vec!["ring", "rm", "alices"],
        vec!["ring", "create", "alices"],
    ] {
        let out = bob.ctl(n.sock(), &args)?;
        refused(&out, &format!("bob ran {args:?}"))?;
    }
    // Bob's own content may not use alice's ring, and alice's content
    // stays as she shared it.
    let (bobs, _) = bob.public_file("mine.txt", 100)?;
    let out = bob.ctl(
        n.sock(),
        &["share", bobs.to_str().context("p")?, "--ring", "alices"],
    )?;
    refused(&out, "bob shared with alice's ring")?;
    // Shares are keyed by (content, owner): bob's copy of the same bytes
    // is a share of his own, open as he chose; alice's stays hers, on her
    // ring, and bob unsharing his leaves hers alone.
    let copy = bob.public_file("notes.txt", 1)?.0;
    std::fs::copy(&file, &copy)?;
    let his = json(&bob.ctl(n.sock(), &["share", copy.to_str().context("p")?])?)?;
    ensure!(
        text_of(&his).contains(&hash) && text_of(&his).contains("open"),
        "bob's own share of the same content: {his}"
    );
    let hers = json(&alice.ctl(n.sock(), &["shares", "ls"])?)?;
    ensure!(
        text_of(&hers).contains(&hash) && !text_of(&hers).contains("\"open\""),
        "alice's share changed with bob's: {hers}"
    );
    // The node serves the content if any owner's share allows it: a
    // stranger fetches it through bob's open share.
    let his_ticket = his["ticket"]
        .as_str()
        .or_else(|| his["share"]["ticket"].as_str())
        .context("ticket")?
        .to_string();
    let stranger = temp_dir("rdrop-stranger-")?;
    let got = stranger.join("a.txt");
    let out = root_ctl(
        &n.provider.socket,
        &["fetch", &his_ticket, "--out", got.to_str().context("p")?],
    )?;
    ensure!(out.status.success(), "stranger: {}", text(&out));
    ensure!(
        std::fs::read(&got)? == std::fs::read(&file)?,
        "bytes differ"
    );
    json(&bob.ctl(n.sock(), &["unshare", &hash])?)?;
    // Only alice's share is left, on her ring: the stranger is refused.
    let got = stranger.join("b.txt");
    let out = root_ctl(
        &n.provider.socket,
        &["fetch", &his_ticket, "--out", got.to_str().context("p")?],
    )?;
    refused(&out, "a stranger fetched alice's ring-only content")?;
    ensure!(text(&out).contains("refused by"), "{}", text(&out));
    let hers = json(&alice.ctl(n.sock(), &["shares", "ls"])?)?;
    ensure!(
        text_of(&hers).contains(&hash),
        "bob's unshare removed alice's share: {hers}"
    );
    let out = bob.ctl(n.sock(), &["unshare", &hash])?;
    refused(&out, "bob unshared alice's share")?;
    // Admins see everything.
    let all = root_ctl(n.sock(), &["shares", "ls"])?;
    ensure!(
        text(&all).contains(&hash),
        "root does not see alice's share: {}",
        text(&all)
    );
    Ok(())
}

#[test]
fn a_user_outside_the_group_is_refused_and_the_data_dir_is_private() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let carol = user("rd-carol", false)?;
    let n = node()?;
    let out = carol.ctl(n.sock(), &["status"])?;
    ensure!(!out.status.success(), "{}", text(&out));
    let mode = std::fs::metadata(n.service.dir.join("data"))?.mode() & 0o777;
    ensure!(mode == 0o700, "data dir mode {mode:o}");

    // A data dir others may enter is refused at start.
    let dir = temp_dir("rdrop-open-")?;
    std::fs::create_dir(dir.join("data"))?;
    std::fs::set_permissions(dir.join("data"), std::fs::Permissions::from_mode(0o750))?;
    let log = dir.join("ringdropd.log");
    let mut child = Command::new(bin("ringdropd")?)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(dir.join("d.sock"))
        .args(["--no-mdns", "--relay", "disabled", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > until {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&log)?;
    ensure!(
        status.is_some_and(|s| !s.success()),
        "started on a data dir others may open: {said}"
    );
    ensure!(said.contains("chmod 700"), "{said}");
    Ok(())
}

#[test]
fn an_operator_who_leaves_the_group_is_no_longer_served() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let dave = user("rd-dave", true)?;
    let n = node()?;
    let (file, bytes) = dave.public_file("leaving.bin", 30_000)?;
    let shared = json(&dave.ctl(
        n.sock(),
        &["share", file.to_str().context("p")?, "--listed"],
    )?)?;
    let ticket = shared["ticket"].as_str().context("ticket")?.to_string();
    let hash = shared["hash"].as_str().context("hash")?.to_string();
    let provider = |args: &[&str]| root_ctl(&n.provider.socket, args);
    let out = temp_dir("rdrop-out-")?;
    let got = provider(&[
        "fetch",
        &ticket,
        "--out",
        out.join("1.bin").to_str().context("p")?,
    ])?;
    ensure!(got.status.success(), "{}", text(&got));
    ensure!(std::fs::read(out.join("1.bin"))? == bytes);

    let removed = run(Command::new("gpasswd").args(["-d", dave.name, "ringdrop"]))?;
    ensure!(removed.status.success(), "{}", text(&removed));
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = provider(&["remote", "ls", &ticket])?;
        if listed.status.success() && !text(&listed).contains(&hash) {
            break;
        }
        ensure!(
            Instant::now() < until,
            "still listed a minute after dave left: {}",
            text(&listed)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let again = provider(&[
        "fetch",
        &ticket,
        "--out",
        out.join("2.bin").to_str().context("p")?,
    ])?;
    refused(&again, "served after its owner left")?;
    ensure!(!out.join("2.bin").exists());
    Ok(())
}

#[test]
fn an_operator_shares_exactly_what_it_can_read_and_nothing_by_path() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let bob = user("rd-bob", true)?;
    let n = node()?;
    // A file only the service's user may read, outside its data dir.
    let theirs = temp_dir("rdrop-svc-only-")?;
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755))?;
    let secret = theirs.join("service-only.txt");
    std::fs::write(&secret, b"for the service's eyes")?;
    std::os::unix::fs::chown(&secret, Some(SERVICE), None)?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let raw = bob.raw(n.sock(), &["share", secret.to_str().context("p")?])?;
    refused(
        &raw,
        "bob shared by path, read with the service's authority",
    )?;
    let out = bob.ctl(n.sock(), &["share", secret.to_str().context("p")?])?;
    refused(&out, "bob shared a file he cannot read")?;
    let key = n.service.dir.join("data").join("secret.key");
    let out = bob.ctl(n.sock(), &["share", key.to_str().context("p")?])?;
    refused(&out, "bob shared the node key")?;

    // What bob can read, even in his 0700 home, he shares; a peer gets it
    // byte for byte.
    let mine = bob.home.join("report.bin");
    let bytes = random_file(&mine, 300_000)?;
    std::os::unix::fs::chown(&mine, Some(bob.uid), Some(bob.uid))?;
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o600))?;
    let shared = json(&bob.ctl(n.sock(), &["share", mine.to_str().context("p")?])?)?;
    let ticket = shared["ticket"].as_str().context("ticket")?;
    let out = temp_dir("rdrop-out-")?.join("got.bin");
    let got = root_ctl(
        &n.provider.socket,
        &["fetch", ticket, "--out", out.to_str().context("p")?],
    )?;
    ensure!(got.status.success(), "{}", text(&got));
    ensure!(std::fs::read(&out)? == bytes, "fetched bytes differ");
    Ok(())
}

#[test]
fn only_an_admin_gives_a_row_to_an_operator() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (alice, bob) = (user("rd-alice", true)?, user("rd-bob", true)?);
    let n = node()?;
    json(&root_ctl(n.sock(), &["ring", "create", "legacy"])?)?;
    let out = alice.ctl(n.sock(), &["ring", "members", "legacy"])?;
    refused(&out, "alice controls root's ring")?;
    // An operator may not give rows, not even to itself: the method is
    // an admin's in the authority table.
    let out = bob.ctl(n.sock(), &["give", "ring", "legacy", bob.name])?;
    refused(&out, "bob gave himself root's ring")?;
    ensure!(
        text(&out).contains("only root and the daemon's own user"),
        "{}",
        text(&out)
    );
    json(&root_ctl(
        n.sock(),
        &["give", "ring", "legacy", alice.name],
    )?)?;
    json(&alice.ctl(n.sock(), &["ring", "members", "legacy"])?)?;
    let out = bob.ctl(n.sock(), &["ring", "members", "legacy"])?;
    refused(&out, "bob controls alice's ring")?;
    // A share given moves to its new owner whole: listed and unshared by
    // alice, never bob.
    let (file, _) = alice.public_file("given.txt", 3000)?;
    let shared = json(&root_ctl(
        n.sock(),
        &["share", file.to_str().context("p")?],
    )?)?;
    let hash = shared["share"]["hash"]
        .as_str()
        .or_else(|| shared["hash"].as_str())
        .context("hash")?
        .to_string();
    json(&root_ctl(n.sock(), &["give", "share", &hash, alice.name])?)?;
    let hers = alice.ctl(n.sock(), &["shares", "ls"])?;
    ensure!(
        text(&hers).contains(&hash),
        "alice lacks the given share: {}",
        text(&hers)
    );
    let out = bob.ctl(n.sock(), &["unshare", &hash])?;
    refused(&out, "bob unshared alice's given share")?;
    json(&alice.ctl(n.sock(), &["unshare", &hash])?)?;
    // A transfer at rest given: the new owner controls it, the old one no
    // longer does.
    let (id, _, _) = alice_ready(&n, &alice)?;
    let ids = id.to_string();
    json(&root_ctl(n.sock(), &["give", "transfer", &ids, bob.name])?)?;
    json(&bob.ctl(n.sock(), &["transfers", "show", &ids])?)?;
    let out = alice.ctl(n.sock(), &["transfers", "show", &ids])?;
    refused(&out, "alice still sees the transfer given to bob")?;
    Ok(())
}

/// Case 1's race: bob shares `pub/d/secret.key` while `d` is swapped,
/// thousands of times, with a link to the daemon's data dir
/// (`renameat2(RENAME_EXCHANGE)`). The daemon never opens his path: his
/// client opens it as bob, so every share that succeeds is his own file
/// (its size), never the node key.
/// Shares attempted while the link is swapped.
const SHARES_UNDER_SWAPS: usize = 200;

#[test]
fn swapping_a_link_under_a_share_never_shares_the_daemons_files() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let bob = user("rd-bob", true)?;
    let n = node()?;
    let (decoy, _) = bob.public_file("unused", 1)?;
    let public = decoy.parent().context("dir")?.to_path_buf();
    let d = public.join("d");
    std::fs::create_dir(&d)?;
    std::fs::write(d.join("secret.key"), vec![b'b'; 1000])?;
    for p in [&d, &d.join("secret.key")] {
        std::os::unix::fs::chown(p, Some(bob.uid), Some(bob.uid))?;
    }
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    let evil = public.join("evil");
    std::os::unix::fs::symlink(n.service.dir.join("data"), &evil)?;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, d, evil) = (stop.clone(), d.clone(), evil.clone());
        std::thread::spawn(move || {
            use std::os::unix::ffi::OsStrExt;
            let (a, b) = (
                std::ffi::CString::new(d.as_os_str().as_bytes()).unwrap_or_default(),
                std::ffi::CString::new(evil.as_os_str().as_bytes()).unwrap_or_default(),
            );
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || swaps % 2 == 1 {
                // SAFETY: two NUL-terminated paths; RENAME_EXCHANGE swaps them.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if rc == 0 {
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let target = d.join("secret.key");
    let (mut shared, mut refused) = (0, 0);
    for _ in 0..SHARES_UNDER_SWAPS {
        let out = bob.ctl(n.sock(), &["share", target.to_str().context("p")?])?;
        if out.status.success() {
            let v = json(&out)?;
            ensure!(
                v["size"] == 1000,
                "shared something else than bob's file: {v}"
            );
            shared += 1;
        } else {
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper
        .join()
        .map_err(|_| anyhow::anyhow!("swapper panicked"))?;
    eprintln!("{swaps} swaps; {shared} shares of bob's own file, {refused} refused");
    ensure!(swaps >= 1000, "only {swaps} swaps");
    Ok(())
}

/// How an admin's call of a method on alice's objects must come out.
#[derive(Debug, Clone, Copy)]
enum AsAdmin {
    /// It answers, and the answer shows alice's row (this marker).
    Shows(&'static str),
    /// It is refused: files are only ever read or written as their owner.
    Refused,
    /// It is not refused for authority (the object's state may still
    /// make it fail).
    Acts,
}

/// Every method of the API, in the order the admin calls them (reads
/// first, then what changes or removes alice's rows). A method of the
/// descriptor set missing here fails the test.
const TABLE: &[(&str, AsAdmin)] = &[
    ("Node/GetStatus", AsAdmin::Acts),
    ("Node/InspectTicket", AsAdmin::Acts),
    ("Node/ListUploads", AsAdmin::Acts),
    ("Node/WatchEvents", AsAdmin::Acts),
    ("Shares/ListShares", AsAdmin::Shows("alices-notes")),
    ("Transfers/ListTransfers", AsAdmin::Shows("ALICE_HOME")),
    ("Transfers/GetTransfer", AsAdmin::Shows("ALICE_HOME")),
    ("Transfers/WatchTransfer", AsAdmin::Shows("ALICE_HOME")),
    ("Transfers/WatchTransfers", AsAdmin::Shows("ALICE_HOME")),
    ("Transfers/ListTransferFiles", AsAdmin::Refused),
    ("Transfers/ReadTransferFiles", AsAdmin::Refused),
    ("Transfers/FinishTransfer", AsAdmin::Refused),
    ("Rings/ListRings", AsAdmin::Shows("alices-ring")),
    ("Rings/ListMembers", AsAdmin::Shows("PROVIDER")),
    ("Rings/ListInvites", AsAdmin::Shows("alices-ring")),
    ("Peers/ListPeers", AsAdmin::Shows("alices-friend")),
    ("Peers/RemoteList", AsAdmin::Acts),
    ("Contacts/ListSent", AsAdmin::Shows("alices-sent")),
    ("Contacts/ListInbox", AsAdmin::Shows("for-alice")),
    ("Limits/GetLimits", AsAdmin::Acts),
    // What changes alice's rows.
    ("Node/GiveRow", AsAdmin::Acts),
    ("Limits/SetLimits", AsAdmin::Acts),
    ("Limits/SetTransferLimit", AsAdmin::Acts),
    // The daemon reads an admin's path itself: an admin may read more
    // than the daemon's user, never less.
    ("Shares/Share", AsAdmin::Acts),
    ("Contacts/Send", AsAdmin::Acts),
    ("Transfers/Fetch", AsAdmin::Acts),
    ("Transfers/PauseTransfer", AsAdmin::Acts),
    ("Transfers/ResumeTransfer", AsAdmin::Acts),
    ("Transfers/CancelTransfer", AsAdmin::Acts),
    ("Transfers/RemoveTransfer", AsAdmin::Acts),
    ("Contacts/TrustPeer", AsAdmin::Acts),
    ("Contacts/UntrustPeer", AsAdmin::Acts),
    ("Contacts/Withdraw", AsAdmin::Acts),
    ("Contacts/RemoveSent", AsAdmin::Acts),
    ("Contacts/RejectOffer", AsAdmin::Acts),
    ("Contacts/AcceptOffer", AsAdmin::Acts),
    ("Contacts/RemoveInboxOffer", AsAdmin::Acts),
    ("Rings/CreateInvite", AsAdmin::Acts),
    ("Rings/RevokeInvite", AsAdmin::Acts),
    ("Rings/JoinRing", AsAdmin::Acts),
    ("Rings/AddMember", AsAdmin::Acts),
    ("Rings/RemoveMember", AsAdmin::Acts),
    ("Rings/CreateRing", AsAdmin::Acts),
    ("Rings/RemoveRing", AsAdmin::Acts),
    ("Peers/AddPeer", AsAdmin::Acts),
    ("Peers/RemovePeer", AsAdmin::Acts),
    ("Shares/Unshare", AsAdmin::Acts),
];

/// `rdtable` as `who` (None: root): one answer per method.
fn table_calls(
    who: Option<&User>,
    socket: &Path,
    values: &Path,
    methods: &[&str],
) -> Result<Vec<Value>> {
    let mut cmd = match who {
        Some(u) => u.command(bin("rdtable")?),
        None => Command::new(bin("rdtable")?),
    };
    let out = run(cmd.arg(socket).arg(values).args(methods))?;
    ensure!(out.status.success(), "rdtable: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// Every method of the API (read from the descriptor set by `rdtable`),
/// called by bob on alice's objects, is refused or shows nothing of
/// hers, and changes nothing of hers; called by root, each works as the
/// authority table says.
#[test]
fn every_method_called_on_another_operators_objects_is_refused_or_shows_nothing() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (alice, bob) = (user("rd-alice", true)?, user("rd-bob", true)?);
    let n = node()?;
    let provider_id = json(&root_ctl(&n.provider.socket, &["status"])?)?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();

    // Alice's rows, one of each kind: a ring the provider joined, an
    // open invite, a share, an address-book name, a sent offer, an offer
    // in the inbox from a member of her ring, a trust rule, a transfer.
    json(&alice.ctl(n.sock(), &["ring", "create", "alices-ring"])?)?;
    let joined = json(&alice.ctl(n.sock(), &["ring", "invite", "alices-ring"])?)?;
    let join_ticket = joined["ticket"].as_str().context("ticket")?.to_string();
    json(&root_ctl(
        &n.provider.socket,
        &["ring", "join", &join_ticket, "--name", "alices-node"],
    )?)?;
    let invite = json(&alice.ctl(n.sock(), &["ring", "invite", "alices-ring"])?)?;
    let invite_id = invite["id"].as_str().context("invite id")?.to_string();
    let (notes, _) = alice.public_file("alices-notes.txt", 5000)?;
    let shared = json(&alice.ctl(
        n.sock(),
        &[
            "share",
            notes.to_str().context("p")?,
            "--ring",
            "alices-ring",
        ],
    )?)?;
    let hash = shared["share"]["hash"]
        .as_str()
        .or_else(|| shared["hash"].as_str())
        .context("hash")?
        .to_string();
    let book = json(&alice.ctl(n.sock(), &["peer", "ls"])?)?;
    if !book.to_string().contains("alices-friend") {
        let named = alice.ctl(n.sock(), &["peer", "add", "alices-friend", &provider_id])?;
        ensure!(named.status.success(), "{}", text(&named));
    }
    let (sent_file, _) = alice.public_file("alices-sent.bin", 3000)?;
    let sent = json(&alice.ctl(
        n.sock(),
        &[
            "send",
            sent_file.to_str().context("p")?,
            "--to",
            &provider_id,
        ],
    )?)?;
    let sent_id = sent["id"].as_u64().context("sent id")?;
    let gift = temp_dir("rdrop-gift-")?.join("for-alice.bin");
    random_file(&gift, 2000)?;
    json(&root_ctl(
        &n.provider.socket,
        &["send", gift.to_str().context("p")?, "--to", "alices-node"],
    )?)?;
    let until = Instant::now() + Duration::from_secs(60);
    let inbox_id = loop {
        let inbox = json(&alice.ctl(n.sock(), &["inbox"])?)?;
        let found = inbox
            .as_array()
            .and_then(|a| a.iter().find(|o| o["name"] == "for-alice.bin"))
            .and_then(|o| o["id"].as_u64());
        if let Some(id) = found {
            break id;
        }
        ensure!(
            Instant::now() < until,
            "the offer never reached alice: {inbox}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let into = alice.home.join("in");
    alice.mkdir(&into)?;
    std::fs::set_permissions(&alice.home, std::fs::Permissions::from_mode(0o711))?;
    json(&alice.ctl(
        n.sock(),
        &[
            "peer",
            "trust",
            &provider_id,
            "--accept-into",
            into.to_str().context("p")?,
        ],
    )?)?;
    let (transfer, _, dest) = alice_ready(&n, &alice)?;
    let ticket = json(&alice.ctl(n.sock(), &["transfers", "show", &transfer.to_string()])?)?
        ["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();

    // What bob names in his requests: alice's ids, names and paths.
    let home = alice.home.to_str().context("p")?.to_string();
    let values = serde_json::json!({
        "Transfers.id": transfer,
        "Withdraw.id": sent_id,
        "RemoveSent.id": sent_id,
        "AcceptOffer.id": inbox_id,
        "RejectOffer.id": inbox_id,
        "RemoveInboxOffer.id": inbox_id,
        "RevokeInvite.id": invite_id,
        "ring": "alices-ring",
        "rings": ["alices-ring"],
        "CreateRing.name": "alices-ring",
        "RemoveRing.name": "alices-ring",
        "AddPeer.name": "alices-friend",
        "AddPeer.endpoint": provider_id,
        "RemovePeer.name": "alices-friend",
        "peer": provider_id,
        "hash": hash,
        "ticket": ticket,
        "invite": join_ticket,
        "out": dest.to_str().context("p")?,
        // His own fetch goes to his own home (what it names is his).
        "Fetch.out": bob.home.join("his.bin").to_str().context("p")?,
        "force": true,
        "purge": true,
        "path": notes.to_str().context("p")?,
        "accept_into": into.to_str().context("p")?,
        "FinishTransfer.files": [dest.to_str().context("p")?],
        "ReadTransferFiles.files": [0],
        "kind": "transfer",
        "key": transfer.to_string(),
        "uid": bob.uid,
    });
    let values_file = temp_dir("rdrop-table-")?.join("values.json");
    std::fs::write(&values_file, values.to_string())?;
    std::fs::set_permissions(
        values_file.parent().context("dir")?,
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::set_permissions(&values_file, std::fs::Permissions::from_mode(0o644))?;

    // Alice's rows as text no answer to bob may carry, unless his own
    // request named it (a ticket he holds names its provider).
    let markers = [
        "alices-ring".to_string(),
        "alices-notes".to_string(),
        "alices-friend".to_string(),
        "alices-sent".to_string(),
        "for-alice".to_string(),
        hash.clone(),
        home.clone(),
        join_ticket.clone(),
        provider_id.clone(),
    ];
    // What a method may show although it names alice's: a ticket names
    // its provider, and what the provider serves this node is the
    // node's to see (remote grants are node-wide, README).
    let public_to_bob = |method: &str, marker: &str| match method {
        "Transfers/Fetch" | "Node/InspectTicket" => marker == provider_id,
        "Peers/RemoteList" => marker == "for-alice",
        _ => false,
    };
    let listed = run(Command::new(bin("rdtable")?).arg("--list"))?;
    let listed: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    ensure!(!listed.is_empty(), "rdtable lists no methods");
    for m in &listed {
        ensure!(
            TABLE.iter().any(|(t, _)| t == m),
            "{m} is in the descriptor set but not in this test's table"
        );
    }
    ensure!(listed.len() == TABLE.len(), "methods: {listed:?}");
    // Bob's own fetch (of the ticket alice fetched) last: from then on
    // its provider is a row of his.
    let mut order: Vec<&str> = TABLE
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| *m != "Transfers/Fetch")
        .collect();
    order.push("Transfers/Fetch");
    let answers = table_calls(Some(&bob), n.sock(), &values_file, &order)?;
    for a in &answers {
        let method = a["method"].as_str().unwrap_or_default();
        if a["code"] != "Ok" {
            continue;
        }
        let request = a["request"].as_str().unwrap_or_default();
        let shown = a["messages"].to_string();
        for m in &markers {
            let named = request.contains(m.as_str()) || public_to_bob(method, m);
            ensure!(
                named || !shown.contains(m.as_str()),
                "bob's {method} shows alice's {m:?}: {a}"
            );
        }
    }

    // Nothing of alice's changed: root sees every row as it was.
    let reads: Vec<&str> = TABLE
        .iter()
        .filter(|(_, e)| matches!(e, AsAdmin::Shows(_)))
        .map(|(m, _)| *m)
        .collect();
    let check_admin = |answers: &[Value]| -> Result<()> {
        for a in answers {
            let method = a["method"].as_str().unwrap_or_default();
            let expect = TABLE
                .iter()
                .find(|(m, _)| *m == method)
                .map(|(_, e)| *e)
                .context("in the table")?;
            let code = a["code"].as_str().unwrap_or_default();
            match expect {
                AsAdmin::Shows(marker) => {
                    let marker = match marker {
                        "ALICE_HOME" => home.as_str(),
                        "PROVIDER" => provider_id.as_str(),
                        m => m,
                    };
                    ensure!(
                        code == "Ok" && a["messages"].to_string().contains(marker),
                        "root's {method} does not show alice's {marker}: {a}"
                    );
                }
                AsAdmin::Refused => ensure!(code != "Ok", "root's {method} was served: {a}"),
                AsAdmin::Acts => ensure!(
                    code != "PermissionDenied" && code != "Unauthenticated",
                    "root's {method} was refused: {a}"
                ),
            }
        }
        Ok(())
    };
    check_admin(&table_calls(None, n.sock(), &values_file, &reads)?)?;
    let t = json(&alice.ctl(n.sock(), &["transfers", "show", &transfer.to_string()])?)?;
    ensure!(t["state"] == "ready", "bob changed alice's transfer: {t}");
    ensure!(
        !dest.exists(),
        "something was written at alice's destination"
    );

    // Root may act on every row (files aside).
    let all: Vec<&str> = TABLE.iter().map(|(m, _)| *m).collect();
    check_admin(&table_calls(None, n.sock(), &values_file, &all)?)?;
    Ok(())
}

/// An operator's fetch is written once, by the daemon, into a private
/// directory the operator's own ringdropctl made beside the destination
/// (it hosts the files); the daemon's data dir never holds the data.
/// After a `kill -9` of the daemon the client offers the directory again
/// and the fetch resumes in it.
#[test]
fn an_operators_fetch_is_written_once_into_its_own_directory_and_resumes_there() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let alice = user("rd-alice", true)?;
    let mut n = node()?;
    let slow = BinDaemon::spawn(&temp_dir("rdrop-slow-")?, &["--max-upload-rate", "4M"])?;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let size = 24 << 20;
    let bytes = random_file(&src, size)?;
    let ticket = json(&root_ctl(
        &slow.socket,
        &["share", src.to_str().context("p")?],
    )?)?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    let dl = alice.home.join("dl");
    alice.mkdir(&dl)?;
    let dest = dl.join("big.bin");
    let mut fetch = alice
        .command(bin("ringdropctl")?)
        .arg("--socket")
        .arg(n.sock())
        .args(["--json", "fetch", &ticket, "--out"])
        .arg(&dest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;

    // The hosted directory appears beside the destination, alice's, and
    // fills; the daemon's data dir holds no incoming file.
    let incoming = n.service.dir.join("data").join("incoming");
    let until = Instant::now() + Duration::from_secs(60);
    let hosted = loop {
        let found = std::fs::read_dir(&dl)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains(".ringdrop-"));
        if let Some(dir) = found {
            let file = dir.join("0");
            if std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) {
                let written = std::fs::read(&file)?;
                let filled = written.iter().rposition(|b| *b != 0).unwrap_or(0);
                if filled > 4 << 20 {
                    break dir;
                }
            }
        }
        ensure!(
            Instant::now() < until,
            "no hosted directory filled in {}",
            dl.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let meta = std::fs::metadata(&hosted)?;
    ensure!(
        meta.uid() == alice.uid,
        "the hosted directory is not alice's"
    );
    ensure!(
        meta.mode() & 0o077 == 0,
        "the hosted directory is not private"
    );
    let in_data_dir = std::fs::read_dir(&incoming)
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    ensure!(in_data_dir == 0, "the data dir holds incoming files too");

    // The daemon dies mid-way and comes back: the fetch goes on in the
    // same directory.
    n.service.kill9()?;
    n.service.restart()?;
    let until = Instant::now() + Duration::from_secs(180);
    while fetch.try_wait()?.is_none() {
        if Instant::now() > until {
            fetch.kill().ok();
            bail!("the fetch did not end within 3 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = fetch.wait_with_output()?;
    ensure!(out.status.success(), "the fetch failed: {}", text(&out));
    let t = json(&out)?;
    ensure!(t["state"] == "completed", "{t}");
    ensure!(std::fs::read(&dest)? == bytes, "fetched bytes differ");
    let received = t["bytes_received"].as_u64().context("bytes_received")?;
    ensure!(
        received < size as u64 + size as u64 / 2,
        "started over: {received} bytes received for {size}"
    );
    let left: Vec<_> = std::fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(left.len() == 1, "left beside the destination: {left:?}");
    Ok(())
}
