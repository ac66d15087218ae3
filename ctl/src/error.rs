//! Errors of the client and the exit codes they map to:
//! 0 ok, 1 operation failed, 2 usage or bad input, 3 daemon not reachable.

use tonic::Code;

pub const FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const UNREACHABLE: u8 = 3;

/// A message for the user and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub msg: String,
    /// The daemon went away mid-call (restarted, stopped): worth waiting
    /// for it and asking again.
    pub lost_daemon: bool,
}

impl CliError {
    pub fn new(code: u8, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            lost_daemon: false,
        }
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Self::new(FAILED, msg)
    }

    pub fn bad_input(msg: impl Into<String>) -> Self {
        Self::new(BAD_INPUT, msg)
    }

    /// Prints to stderr (a JSON object with `--json`).
    pub fn print(&self, json: bool) {
        if json {
            let v = serde_json::json!({ "error": self.msg, "exit_code": self.code });
            eprintln!("{v}");
        } else {
            eprintln!("ringdropctl: {}", self.msg);
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        let code = match s.code() {
            Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::OutOfRange => {
                BAD_INPUT
            }
            _ => FAILED,
        };
        let mut e = Self::new(code, s.message().to_string());
        // A connection cut by a daemon that stops or restarts surfaces as
        // one of these (tonic maps h2 and I/O errors to Unknown/Unavailable).
        e.lost_daemon = matches!(
            s.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        );
        e
    }
}
