//! `ringdropctl web`: the page in a real headless Chromium (Debian's
//! chromium and chromium-driver, driven by tests/web/page.py through
//! Selenium), and the requests it must refuse, sent by hand.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};
use ringdrop_tests::{bin, random_file, temp_dir, BinDaemon};
use serde_json::Value;

/// Names a peer chose, with markup in them: a shared file's (the
/// transfer's name on the fetching side) and an offer's. (Address-book
/// names are letters, digits and `-_.` only.)
const EVIL_SHARE: &str = "<script>alert(1)<.bin";
const EVIL_OFFER: &str = "<img src=x onerror=alert(1)>.bin";

/// `ringdropctl web` for one daemon, with its own runtime dir.
struct Web {
    child: Child,
    addr: SocketAddr,
    url: String,
    token: String,
    token_file: PathBuf,
}

impl Web {
    fn start(socket: &Path) -> Result<Self> {
        let runtime = temp_dir("rdrop-run-")?;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))?;
        let mut child = Command::new(bin("ringdropctl")?)
            .arg("--socket")
            .arg(socket)
            .args(["--json", "web", "--listen", "127.0.0.1:0", "--no-open"])
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("ringdropctl web printed {line:?}"))?;
        let url = v["url"].as_str().context("url")?.to_string();
        let token_file = PathBuf::from(v["token_file"].as_str().context("token_file")?);
        let token = std::fs::read_to_string(&token_file)?.trim().to_string();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()?;
        Ok(Self {
            child,
            addr,
            url,
            token,
            token_file,
        })
    }

    /// One HTTP/1.1 request; the status and the whole response.
    fn request(
        &self,
        head: &[(&str, &str)],
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String)> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        for (k, v) in head {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        ringdrop_tests::http(self.addr, &req)
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Whether the browser and its driver are here; on CI they must be.
fn have_browser() -> bool {
    let ok = Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists()
        && Command::new("python3")
            .args(["-c", "import selenium"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium, chromium-driver or selenium missing on CI"
        );
        eprintln!("SKIPPED: the page test needs chromium, chromium-driver and python3 selenium");
    }
    ok
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("path")
}

/// Where screenshots go (kept as artifacts, not compared).
fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/web")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_in_chromium() -> Result<()> {
    if !have_browser() {
        return Ok(());
    }
    let alice = BinDaemon::spawn(&temp_dir("rdrop-web-a-")?, &[])?;
    let bob = BinDaemon::spawn(&temp_dir("rdrop-web-b-")?, &[])?;

    // Alice joins Bob's ring; Bob's name for her.
    let invite = bob.ctl_json(&["ring", "invite", "friends"])?["ticket"]
        .as_str()
        .context("invite")?
        .to_string();
    alice.ctl_json(&["ring", "join", &invite, "--name", "bob"])?;
    let alice_id = alice.ctl_json(&["status"])?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();
    let book = bob.ctl_json(&["peer", "ls"])?;
    let alice_name = book
        .as_array()
        .and_then(|b| b.iter().find(|p| p["endpoint_id"] == alice_id.as_str()))
        .and_then(|p| p["name"].as_str())
        .context("alice in bob's book")?
        .to_string();

    // A share of Bob's, slow enough to watch (Bob's node limit).
    let src = temp_dir("rdrop-web-src-")?;
    let big = random_file(&src.join(EVIL_SHARE), 48 << 20)?;
    let ticket = bob.ctl_json(&["share", path(&src.join(EVIL_SHARE))?])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    let limited = bob.ctl(&["limits", "--up", "6M"])?;
    ensure!(
        limited.status.success(),
        "{}",
        String::from_utf8_lossy(&limited.stderr)
    );

    // An offer from Bob with markup in its name, in Alice's inbox.
    let offered = random_file(&src.join(EVIL_OFFER), 300_000)?;
    bob.ctl_json(&["send", path(&src.join(EVIL_OFFER))?, "--to", &alice_name])?;
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        loop {
            let inbox = alice.ctl_json(&["inbox"])?;
            if inbox.as_array().is_some_and(|i| !i.is_empty()) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .context("the offer did not reach the inbox")??;

    // Something of Alice's to share from the page.
    let mine = temp_dir("rdrop-web-mine-")?.join("notes.bin");
    let notes = random_file(&mine, 1 << 20)?;
    let fetch_out = temp_dir("rdrop-web-fetched-")?;
    let inbox_dir = temp_dir("rdrop-web-inbox-")?;
    let result = temp_dir("rdrop-web-result-")?.join("result.json");

    let web = Web::start(&alice.socket)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/page.py");
    let run = Command::new("python3")
        .arg(&script)
        .env("RD_URL", &web.url)
        .env("RD_TOKEN", &web.token)
        .env("RD_SHOTS", shots())
        .env("RD_PROFILE", temp_dir("rdrop-chromium-")?)
        .env("RD_FETCH_TICKET", &ticket)
        .env("RD_FETCH_OUT", &fetch_out)
        .env("RD_OFFER_NAME", EVIL_OFFER)
        .env("RD_INBOX_DIR", &inbox_dir)
        .env("RD_SHARE_PATH", &mine)
        .env("RD_EVIL_NAME", EVIL_SHARE)
        .env("RD_OUT", &result)
        .output()?;
    println!("{}", String::from_utf8_lossy(&run.stdout));
    if !run.status.success() {
        bail!(
            "the page test failed ({}); screenshots in {}:\n{}",
            run.status,
            shots().display(),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let result: Value = serde_json::from_slice(&std::fs::read(&result)?)?;

    // The ticket shared from the page is fetched by Bob, byte for byte.
    let shared = result["ticket"].as_str().context("ticket")?;
    let out = temp_dir("rdrop-web-bob-")?;
    let fetched = bob.ctl(&["fetch", shared, "--out", path(&out)?])?;
    ensure!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert_eq!(std::fs::read(out.join("notes.bin"))?, notes);

    // The offer accepted by a click arrives where the page said.
    wait_file(&inbox_dir.join(EVIL_OFFER), &offered).await?;
    // The fetch pasted into the page finishes (Bob's limit lifted).
    bob.ctl(&["limits", "--up", "0"])?;
    wait_file(&fetch_out.join(EVIL_SHARE), &big).await?;
    Ok(())
}

async fn wait_file(p: &Path, want: &[u8]) -> Result<()> {
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        loop {
            if std::fs::read(p).is_ok_and(|got| got == want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .with_context(|| format!("{} never held what was sent", p.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_are_not_the_pages_are_refused() -> Result<()> {
    let alice = BinDaemon::spawn(&temp_dir("rdrop-web-r-")?, &[])?;
    let web = Web::start(&alice.socket)?;
    let host = web.addr.to_string();
    let origin = format!("http://{host}");
    let call = r#"{"method":"ringdrop.v1.Node/GetStatus","request":{}}"#;
    let api = |h: &[(&str, &str)]| web.request(h, "POST", "/api/call", call);
    let json = ("Content-Type", "application/json");

    // The page itself loads without the token, with its rules.
    let (status, page) = web.request(&[("Host", &host)], "GET", "/", "")?;
    assert_eq!(status, 200);
    let lower = page.to_ascii_lowercase();
    for want in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
    ] {
        assert!(lower.contains(want), "missing {want:?}");
    }
    assert!(!lower.contains("access-control-allow"), "CORS headers sent");

    // The page's own request works...
    let good = [
        ("Host", host.as_str()),
        ("Origin", &origin),
        ("X-Ringdrop-Token", &web.token),
        json,
    ];
    let (status, body) = api(&good)?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"endpoint_id\""), "{body}");

    // ...and nothing else: another name for the host (DNS rebinding),
    // another origin, no token, a wrong token.
    let rebound = [
        ("Host", "evil.example:80"),
        ("Origin", "http://evil.example:80"),
        ("X-Ringdrop-Token", &web.token),
        json,
    ];
    assert_eq!(api(&rebound)?.0, 421);
    assert_eq!(
        web.request(&[("Host", "evil.example")], "GET", "/", "")?.0,
        421
    );
    let foreign = [
        ("Host", host.as_str()),
        ("Origin", "http://evil.example"),
        ("X-Ringdrop-Token", &web.token),
        json,
    ];
    assert_eq!(api(&foreign)?.0, 403);
    let no_origin = [
        ("Host", host.as_str()),
        ("X-Ringdrop-Token", &web.token),
        json,
    ];
    assert_eq!(api(&no_origin)?.0, 403);
    let no_token = [("Host", host.as_str()), ("Origin", &origin), json];
    assert_eq!(api(&no_token)?.0, 401);
    let wrong = "0".repeat(64);
    let wrong_token = [
        ("Host", host.as_str()),
        ("Origin", &origin),
        ("X-Ringdrop-Token", &wrong),
        json,
    ];
    assert_eq!(api(&wrong_token)?.0, 401);
    // No CORS: a preflight is not answered with permission.
    let (status, resp) = web.request(
        &[("Host", &host), ("Origin", "http://evil.example")],
        "OPTIONS",
        "/api/call",
        "",
    )?;
    assert_eq!(status, 405);
    assert!(!resp.to_ascii_lowercase().contains("access-control-allow"));
    // Only the daemon's API, not any path of the socket.
    let health = r#"{"method":"grpc.health.v1.Health/Check","request":{}}"#;
    assert_eq!(web.request(&good, "POST", "/api/call", health)?.0, 400);

    // The token is this user's alone, and never on a command line.
    let mode = std::fs::metadata(&web.token_file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", web.child.id()))?;
    assert!(!String::from_utf8_lossy(&cmdline).contains(&web.token));
    if is_root() {
        // Another local user can reach the port but not the token.
        let read = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(&web.token_file)
            .output()?;
        assert!(!read.status.success(), "another user read the token");
        assert!(!String::from_utf8_lossy(&read.stdout).contains(&web.token));
        let curl = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c"])
            .arg(format!(
                "import urllib.request as u, sys\n\
                 r = u.Request('{}api/call', data=b'{call}', headers={{'Origin': '{origin}', 'Content-Type': 'application/json'}})\n\
                 try:\n    u.urlopen(r); print(200)\n\
                 except Exception as e:\n    print(getattr(e, 'code', e))",
                web.url
            ))
            .output()?;
        assert_eq!(String::from_utf8_lossy(&curl.stdout).trim(), "401");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}
