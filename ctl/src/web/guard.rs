//! Who may use the page: a loopback port is open to every local user and
//! to any web page the user's browser has open, so every API request must
//! name this server by its own loopback `Host` (DNS rebinding), come from
//! its own `Origin` (cross-site requests) and carry the token only this
//! user can read (other local users).

use std::{
    fs,
    io::Write,
    net::SocketAddr,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use http::{header, HeaderMap};
use ringdrop_proto::secret;

use crate::error::CliError;

/// The header that carries the token on every API request.
pub const TOKEN_HEADER: &str = "x-ringdrop-token";
/// File names in the user's runtime directory.
const TOKEN_FILE: &str = "web-token";
const OPEN_FILE: &str = "web-open.html";
/// Hex digits of a token (32 random bytes).
const TOKEN_HEX: usize = 64;

/// What a request is refused for.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` is not this server's loopback name: 421.
    Host,
    /// A state-changing request without this server's `Origin`: 403.
    Origin,
    /// No token, or not the token: 401.
    Token,
}

impl Refusal {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::Host => http::StatusCode::MISDIRECTED_REQUEST,
            Refusal::Origin => http::StatusCode::FORBIDDEN,
            Refusal::Token => http::StatusCode::UNAUTHORIZED,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Host => "this server answers only to its loopback address",
            Refusal::Origin => "requests must come from this page",
            Refusal::Token => "no valid token: open the link `ringdropctl web` printed",
        }
    }
}

/// The checks of one server: the names it answers to and its token.
pub struct Guard {
    hosts: Vec<String>,
    token: String,
}

impl Guard {
    pub fn new(addr: SocketAddr, token: String) -> Self {
        let port = addr.port();
        let ip = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        Self {
            hosts: vec![format!("{ip}:{port}"), format!("localhost:{port}")],
            token,
        }
    }

    /// The page's address (the first name it answers to).
    pub fn url(&self) -> String {
        format!("http://{}/", self.hosts[0])
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Every request: `Host` must be one of ours.
    pub fn host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        match host {
            Some(h) if self.hosts.iter().any(|ours| ours.eq_ignore_ascii_case(h)) => Ok(()),
            _ => Err(Refusal::Host),
        }
    }

    /// API requests (all state-changing, all POST): our `Origin` and the
    /// token. Browsers send `Origin` on every POST, so a missing one is
    /// not a browser of this page either.
    pub fn api(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.host(headers)?;
        let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
        let ours = origin.is_some_and(|o| {
            self.hosts
                .iter()
                .any(|h| o.eq_ignore_ascii_case(&format!("http://{h}")))
        });
        if !ours {
            return Err(Refusal::Origin);
        }
        let given = headers.get(TOKEN_HEADER).map(|t| t.as_bytes());
        match given {
            Some(t) if secret::same(t, self.token.as_bytes()) => Ok(()),
            _ => Err(Refusal::Token),
        }
    }
}

/// Where the token and the redirect file live: the user's runtime
/// directory, shut to others.
pub struct Files {
    dir: PathBuf,
}

impl Files {
    pub fn new(dir: PathBuf) -> Result<Self, CliError> {
        let fail = |e: std::io::Error| CliError::failed(format!("{}: {e}", dir.display()));
        fs::create_dir_all(&dir).map_err(fail)?;
        let meta = fs::metadata(&dir).map_err(fail)?;
        if meta.uid() != crate::commands::place::my_uid() {
            return Err(CliError::failed(format!(
                "{} is not yours: the page's token cannot be kept there",
                dir.display()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        Ok(Self { dir })
    }

    pub fn token_path(&self) -> PathBuf {
        self.dir.join(TOKEN_FILE)
    }

    pub fn open_path(&self) -> PathBuf {
        self.dir.join(OPEN_FILE)
    }

    /// The token of an earlier run (so a bookmark keeps working), if its
    /// file is ours and private; else a new one.
    pub fn token(&self) -> Result<String, CliError> {
        let path = self.token_path();
        if let Some(t) = reuse(&path) {
            return Ok(t);
        }
        let token = secret::token_hex(TOKEN_HEX / 2)
            .map_err(|e| CliError::failed(format!("no random token: {e}")))?;
        write_private(&path, token.as_bytes())?;
        Ok(token)
    }

    /// A page that sends the browser on to the URL with the token, so the
    /// token is never in a command line (`ps` shows those to everyone).
    pub fn write_open(&self, url_with_token: &str) -> Result<PathBuf, CliError> {
        let path = self.open_path();
        let html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"0;url={url_with_token}\">\
             <title>ringdrop</title></head>\
             <body><p><a href=\"{url_with_token}\">Open ringdrop</a></p></body></html>\n"
        );
        write_private(&path, html.as_bytes())?;
        Ok(path)
    }
}

fn reuse(path: &Path) -> Option<String> {
    let meta = fs::symlink_metadata(path).ok()?;
    let private = meta.is_file()
        && meta.uid() == crate::commands::place::my_uid()
        && meta.mode() & 0o077 == 0;
    let text = fs::read_to_string(path).ok()?;
    let t = text.trim();
    (private && t.len() == TOKEN_HEX && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| t.to_string())
}

/// Writes a 0600 file under a temporary name and renames it into place.
fn write_private(path: &Path, data: &[u8]) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::failed(format!("{}: {e}", path.display()));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(fail)?;
    fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn host_origin_and_token_are_all_required() {
        let g = Guard::new("127.0.0.1:8080".parse().unwrap(), "ab".repeat(32));
        let tok = "ab".repeat(32);
        let good = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            (TOKEN_HEADER, tok.as_str()),
        ];
        assert_eq!(g.api(&headers(&good)), Ok(()));
        let mut local = good;
        local[0].1 = "localhost:8080";
        local[1].1 = "http://localhost:8080";
        assert_eq!(g.api(&headers(&local)), Ok(()));
        for (i, bad, why) in [
            (0, "evil.example:8080", Refusal::Host),
            (0, "127.0.0.1:8081", Refusal::Host),
            (1, "http://evil.example", Refusal::Origin),
            (1, "null", Refusal::Origin),
            (2, "ab", Refusal::Token),
        ] {
            let mut h = good;
            h[i].1 = bad;
            assert_eq!(g.api(&headers(&h)), Err(why), "{bad}");
        }
        assert_eq!(g.api(&headers(&good[..2])), Err(Refusal::Token));
        assert_eq!(g.api(&headers(&[good[0], good[2]])), Err(Refusal::Origin));
        assert_eq!(g.host(&headers(&[])), Err(Refusal::Host));
    }
}
