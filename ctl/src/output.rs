//! All printing: human text by default, one JSON document with `--json`.

use indicatif::{ProgressBar, ProgressStyle};
use ringdrop_proto::v1 as pb;
use serde_json::{json, Value};

/// Output settings of this invocation.
pub struct Out {
    pub json: bool,
    pub quiet: bool,
}

impl Out {
    pub fn new(json: bool, quiet: bool) -> Self {
        Self { json, quiet }
    }

    /// Prints a JSON document (with --json) or the human text.
    pub fn emit(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            line(value);
        } else {
            let text = human();
            if !text.is_empty() {
                line(text);
            }
        }
    }

    /// A hint on stderr for humans (not with --json or --quiet).
    pub fn hint(&self, text: impl AsRef<str>) {
        if !self.json && !self.quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// A byte progress bar on stderr, hidden for --json, --quiet and non-terminals.
    pub fn bar(&self, total: u64, msg: String) -> ProgressBar {
        use std::io::IsTerminal;
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(msg);
        bar
    }
}

/// Prints one line on stdout. A reader that went away (`ringdropctl ...
/// | head`) ends the program quietly, with the status a shell gives a
/// process killed by SIGPIPE.
pub fn line(text: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("ringdropctl: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// Text that came from a peer (names, labels, errors), made safe to print
/// on a terminal: control characters (escape sequences, newlines, bells)
/// are shown escaped instead of acted on. JSON output escapes on its own.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// 1.5 GiB style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn state_name(state: i32) -> &'static str {
    match pb::TransferState::try_from(state) {
        Ok(pb::TransferState::Queued) => "queued",
        Ok(pb::TransferState::Running) => "running",
        Ok(pb::TransferState::Paused) => "paused",
        Ok(pb::TransferState::Completed) => "completed",
        Ok(pb::TransferState::Failed) => "failed",
        Ok(pb::TransferState::Cancelled) => "cancelled",
        Ok(pb::TransferState::Ready) => "ready",
        _ => "unknown",
    }
}

pub fn transfer_json(t: &pb::Transfer) -> Value {
    json!({
        "id": t.id,
        "state": state_name(t.state),
        "name": t.name,
        "hash": t.hash,
        "dest": t.dest,
        "bytes_total": t.bytes_total,
        "bytes_done": t.bytes_done,
        "bytes_received": t.bytes_received,
        "attempts": t.attempts,
        "last_error": if t.last_error.is_empty() { Value::Null } else { Value::from(t.last_error.clone()) },
        "provider": t.provider,
        "files": t.files,
        "rate": t.rate,
        "client_places": t.client_places,
        "owner_uid": t.owner_uid,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "ticket": t.ticket,
        "serving": t.serving,
        "providers": t.providers.iter().map(|p| json!({
            "endpoint_id": p.endpoint_id,
            "bytes": p.bytes,
            "connected": p.connected,
            "path": p.path,
            "rtt_us": p.rtt_us,
        })).collect::<Vec<_>>(),
    })
}

pub fn transfer_line(t: &pb::Transfer) -> String {
    let pct = if t.bytes_total > 0 {
        format!(
            "{:>5.1}%",
            t.bytes_done as f64 * 100.0 / t.bytes_total as f64
        )
    } else {
        "    -".to_string()
    };
    let name = if t.name.is_empty() {
        t.hash[..12.min(t.hash.len())].to_string()
    } else {
        clean(&t.name)
    };
    let mut line = format!(
        "{:>4}  {:<9}  {pct}  {:>10}  {name} -> {}",
        t.id,
        state_name(t.state),
        bytes(t.bytes_total),
        t.dest
    );
    if !t.last_error.is_empty() && t.state != pb::TransferState::Completed as i32 {
        line.push_str(&format!("\n      last error: {}", clean(&t.last_error)));
    }
    for p in &t.providers {
        let how = if !p.connected {
            "not connected".to_string()
        } else if p.path.is_empty() {
            "connecting".to_string()
        } else {
            format!("{}, rtt {:.1} ms", clean(&p.path), p.rtt_us as f64 / 1000.0)
        };
        line.push_str(&format!(
            "\n      from {}: {} received, {how}",
            &p.endpoint_id[..12.min(p.endpoint_id.len())],
            bytes(p.bytes)
        ));
    }
    if !t.serving.is_empty() {
        line.push_str(&format!("\n      {}", clean(&t.serving)));
    }
    if t.state == pb::TransferState::Ready as i32 {
        line.push_str(&format!(
            "\n      fetched; place the files with `ringdropctl transfers wait {}` (as uid {})",
            t.id, t.owner_uid
        ));
    }
    line
}

pub fn share_json(s: &pb::Share) -> Value {
    json!({
        "hash": s.hash,
        "name": s.name,
        "path": s.path,
        "size": s.size,
        "files": s.files,
        "created_at": s.created_at,
        "ticket": s.ticket,
        "bytes_served": s.bytes_served,
        "rings": s.rings,
        "changed": s.changed,
        "listed": s.listed,
    })
}
