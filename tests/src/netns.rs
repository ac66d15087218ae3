//! Network namespaces for tests that need more than loopback: hosts that
//! can be cut off from each other or that have no route to each other.
//! Needs root and iproute2; where that is missing the tests say SKIPPED
//! (and fail on CI, where `.ci/run` provides both).

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace with its loopback up, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `None` (with a SKIPPED line) where namespaces cannot be made here;
    /// an error on CI, which must be able to.
    pub fn add(name: &str) -> Result<Option<Self>> {
        // Unique per test process; names stay short (interface limits).
        let name = format!("{name}{}", std::process::id() % 100_000);
        ip(&["netns", "del", &name]).ok();
        match ip(&["netns", "add", &name]) {
            Ok(()) => {
                let ns = Self { name };
                ns.exec(&["link", "set", "lo", "up"])?;
                Ok(Some(ns))
            }
            Err(e) if std::env::var_os("CI").is_some() => {
                Err(e.context("network namespaces are required on CI"))
            }
            Err(e) => {
                eprintln!("SKIPPED: network namespaces are not available here ({e:#})");
                Ok(None)
            }
        }
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.name]).ok();
    }
}
