//! Where settings come from, weakest first: defaults (user or system mode),
//! the TOML file, `RINGDROP_*` environment variables, flags. Every value is
//! checked with the name of the key (and where it came from) in the error;
//! unknown keys in the file are errors, not ignored.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Config, RelayChoice};
use crate::limits::Schedule;

/// A rate as the config writes it ([`ringdrop_proto::units::parse_rate`]);
/// an empty value is no limit too.
fn rate(v: &str) -> Result<Option<u64>, String> {
    match v.trim() {
        "" => Ok(None),
        v => ringdrop_proto::units::parse_rate(v),
    }
}

/// Every key, as it is spelled in the file; the variable is `RINGDROP_` +
/// the key in capitals.
pub const KEYS: &[&str] = &[
    "data_dir",
    "socket",
    "relay",
    "mdns",
    "bind",
    "max_concurrent_transfers",
    "download_dir",
    "max_upload_rate",
    "max_download_rate",
    "alt_upload_rate",
    "alt_download_rate",
    "alt_hours",
    "alt_days",
    "gc_interval",
    "peer_timeout",
    "log",
    "on_complete",
    "on_complete_timeout",
    "keep_ready",
    "roster_valid",
    "reserve",
    "metrics_listen",
    "metrics_public",
    "metrics_token_file",
];

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "RINGDROP_CONFIG";

/// User daemon or system service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    User,
    System,
}

/// A configuration error, naming the source and the key.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {msg}")]
pub struct ConfigError {
    /// The file, "environment" or "flags".
    pub origin: String,
    pub msg: String,
}

/// Settings from one source, as text by key.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    /// Where they came from, for error messages ("flags", a file path, ...).
    pub name: String,
    values: BTreeMap<&'static str, String>,
}

impl Layer {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            values: BTreeMap::new(),
        }
    }

    /// Sets `key` (one of [`KEYS`]) to `value`.
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        debug_assert!(KEYS.contains(&key));
        self.values.insert(key, value.into());
    }

    fn from_env() -> Self {
        let mut layer = Self::new("environment");
        for key in KEYS {
            let var = format!("RINGDROP_{}", key.to_ascii_uppercase());
            if let Ok(v) = std::env::var(&var) {
                layer.values.insert(key, v);
            }
        }
        layer
    }

    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let err = |msg: String| ConfigError {
            origin: name.clone(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err(e.to_string()))?;
        let mut layer = Self::new(name.clone());
        for (k, v) in table {
            let Some(key) = KEYS.iter().find(|known| **known == k) else {
                return Err(err(format!(
                    "unknown key `{k}` (known keys: {})",
                    KEYS.join(", ")
                )));
            };
            let text = match v {
                toml::Value::String(s) => s,
                // An argv (on_complete): kept as JSON text until applied.
                toml::Value::Array(items) if items.iter().all(|i| i.is_str()) => {
                    let argv: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
                    serde_json::to_string(&argv).map_err(|e| err(e.to_string()))?
                }
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(err(format!(
                        "key `{k}`: expected a string, number or boolean, found {}",
                        other.type_str()
                    )))
                }
            };
            layer.values.insert(key, text);
        }
        Ok(layer)
    }

    /// Applies every value to `config`.
    fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        for (key, v) in &self.values {
            apply_one(config, key, v.trim()).map_err(|msg| ConfigError {
                origin: self.name.clone(),
                msg: format!("key `{key}`: {msg}"),
            })?;
        }
        Ok(())
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (true or false)")),
    }
}

/// An address, or none: empty or the word `none` says so.
fn addr(v: &str, none: &str, like: &str) -> Result<Option<SocketAddr>, String> {
    if v.is_empty() || v == none {
        return Ok(None);
    }
    let a = v.parse::<SocketAddr>();
    a.map(Some)
        .map_err(|e| format!("{v:?} is not an address like {like} ({e})"))
}

fn path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(v))
}

/// A command line: a list of strings (`["/usr/local/bin/x", "--y"]`, JSON
/// in the environment), or one program path with no arguments. Never split
/// or interpreted by a shell.
fn argv(v: &str) -> Result<Vec<String>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let argv: Vec<String> = if v.starts_with('[') {
        serde_json::from_str(v).map_err(|e| {
            format!(
                "{v:?} is not a list of strings like [\"/usr/local/bin/notify\", \"--done\"] ({e})"
            )
        })?
    } else {
        vec![v.to_string()]
    };
    match argv.first() {
        None => Ok(argv),
        Some(p) if Path::new(p).is_absolute() => Ok(argv),
        Some(p) => Err(format!(
            "the program {p:?} must be an absolute path (no shell and no PATH lookup)"
        )),
    }
}

const SECOND: Duration = Duration::from_secs(1);

/// A duration like `like`, within `range`.
fn duration(
    v: &str,
    like: &str,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let t = humantime::parse_duration(v)
        .map_err(|e| format!("{v:?} is not a duration like {like} ({e})"))?;
    let shown = |d: Duration| humantime::format_duration(d).to_string();
    if t < *range.start() {
        return Err(format!(
            "{v:?} is too short: at least {}",
            shown(*range.start())
        ));
    }
    if t > *range.end() {
        return Err(format!(
            "{v:?} is too long: at most {}",
            shown(*range.end())
        ));
    }
    Ok(t)
}

fn apply_one(c: &mut Config, key: &str, v: &str) -> Result<(), String> {
    match key {
        "data_dir" => c.data_dir = path(v)?,
        "socket" => c.socket = path(v)?,
        "download_dir" => c.download_dir = path(v)?,
        "relay" => c.relay = v.parse::<RelayChoice>()?,
        "mdns" => c.mdns = parse_bool(v)?,
        "bind" => c.bind = addr(v, "default", "0.0.0.0:7777 or 127.0.0.1:0")?,
        "max_concurrent_transfers" => {
            let n: usize = v
                .parse()
                .map_err(|_| format!("{v:?} is not a whole number"))?;
            if n == 0 {
                return Err("must be at least 1".into());
            }
            c.max_concurrent_transfers = n;
        }
        "max_upload_rate" => c.limits.up = rate(v)?,
        "max_download_rate" => c.limits.down = rate(v)?,
        "alt_upload_rate" => c.limits.alt_up = rate(v)?,
        "alt_download_rate" => c.limits.alt_down = rate(v)?,
        "alt_hours" => {
            let (from, to) = Schedule::parse_hours(v)?;
            let s = c.limits.alt.get_or_insert(Schedule::ALWAYS);
            (s.from, s.to) = (from, to);
        }
        "alt_days" => c.limits.alt.get_or_insert(Schedule::ALWAYS).days = Schedule::parse_days(v)?,
        // The store's GC loop sleeps this long between runs: zero spins.
        "gc_interval" => c.gc_interval = duration(v, "60s or 5m", SECOND..=Duration::MAX)?,
        "peer_timeout" => c.peer_timeout = duration(v, "15s", SECOND..=super::MAX_PEER_TIMEOUT)?,
        "on_complete" => c.on_complete = argv(v)?,
        "on_complete_timeout" => {
            c.on_complete_timeout = duration(v, "60s", SECOND..=super::MAX_HOOK_TIMEOUT)?
        }
        "keep_ready" => c.keep_ready = duration(v, "7d or 12h", SECOND..=Duration::MAX)?,
        "roster_valid" => {
            c.roster_valid = duration(v, "60s or 2s", SECOND..=Duration::from_secs(3600))?
        }
        "reserve" => c.reserve = parse_bool(v)?,
        "metrics_listen" => c.metrics_listen = addr(v, "off", "127.0.0.1:9464")?,
        "metrics_public" => c.metrics_public = parse_bool(v)?,
        "metrics_token_file" => {
            c.metrics_token_file = match v {
                "" => None,
                p => Some(path(p)?),
            }
        }
        "log" => {
            tracing_subscriber::EnvFilter::try_new(v).map_err(|e| {
                format!("{v:?} is not a log filter like info or info,ringdropd=debug ({e})")
            })?;
            c.log = v.to_string();
        }
        other => return Err(format!("unknown key `{other}`")),
    }
    Ok(())
}

/// The config file used when none is named.
pub fn default_file(mode: Mode) -> Option<PathBuf> {
    match mode {
        Mode::System => Some(PathBuf::from("/etc/ringdrop/ringdropd.toml")),
        Mode::User => directories::ProjectDirs::from("", "", "ringdrop")
            .map(|d| d.config_dir().join("ringdropd.toml")),
    }
}

/// Builds the effective config: defaults for `mode` < file < environment
/// < `flags`. `file` (or `$RINGDROP_CONFIG`) must exist when given; the
/// default file is optional. Returns the config and the file read, if any.
pub fn load(
    mode: Mode,
    file: Option<&Path>,
    flags: &Layer,
) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let mut config = match mode {
        Mode::User => Config::user_defaults(),
        Mode::System => Config::system_defaults(),
    };
    let named = file.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let used = match named {
        Some(p) => Some(p),
        None => default_file(mode).filter(|p| p.exists()),
    };
    if let Some(p) = &used {
        Layer::from_file(p)?.apply(&mut config)?;
    }
    Layer::from_env().apply(&mut config)?;
    flags.apply(&mut config)?;
    Ok((config, used))
}

impl Config {
    /// The effective configuration as a TOML file would say it.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let p = |p: &Path| q(&p.display().to_string());
        let mut out = String::new();
        out.push_str(&format!("data_dir = {}\n", p(&self.data_dir)));
        out.push_str(&format!("socket = {}\n", p(&self.socket)));
        out.push_str(&format!("relay = {}\n", q(&self.relay.to_string())));
        out.push_str(&format!("mdns = {}\n", self.mdns));
        let addr = |a: Option<SocketAddr>, none: &str| q(&a.map_or(none.into(), |a| a.to_string()));
        out.push_str(&format!("bind = {}\n", addr(self.bind, "default")));
        out.push_str(&format!(
            "max_concurrent_transfers = {}\n",
            self.max_concurrent_transfers
        ));
        out.push_str(&format!("download_dir = {}\n", p(&self.download_dir)));
        let rate = |r: Option<u64>| r.map_or_else(|| "unlimited".into(), |r| r.to_string());
        let l = &self.limits;
        out.push_str(&format!("max_upload_rate = {}\n", q(&rate(l.up))));
        out.push_str(&format!("max_download_rate = {}\n", q(&rate(l.down))));
        out.push_str(&format!("alt_upload_rate = {}\n", q(&rate(l.alt_up))));
        out.push_str(&format!("alt_download_rate = {}\n", q(&rate(l.alt_down))));
        if let Some(s) = l.alt {
            out.push_str(&format!("alt_hours = {}\n", q(&s.hours())));
            out.push_str(&format!("alt_days = {}\n", q(&s.days_text())));
        }
        out.push_str(&format!(
            "gc_interval = {}\n",
            q(&humantime::format_duration(self.gc_interval).to_string())
        ));
        out.push_str(&format!(
            "peer_timeout = {}\n",
            q(&humantime::format_duration(self.peer_timeout).to_string())
        ));
        out.push_str(&format!("log = {}\n", q(&self.log)));
        let argv: Vec<toml::Value> = self
            .on_complete
            .iter()
            .map(|a| toml::Value::String(a.clone()))
            .collect();
        out.push_str(&format!("on_complete = {}\n", toml::Value::Array(argv)));
        out.push_str(&format!(
            "on_complete_timeout = {}\n",
            q(&humantime::format_duration(self.on_complete_timeout).to_string())
        ));
        out.push_str(&format!(
            "keep_ready = {}\n",
            q(&humantime::format_duration(self.keep_ready).to_string())
        ));
        out.push_str(&format!(
            "roster_valid = {}\n",
            q(&humantime::format_duration(self.roster_valid).to_string())
        ));
        out.push_str(&format!("reserve = {}\n", self.reserve));
        let metrics = addr(self.metrics_listen, "off");
        out.push_str(&format!("metrics_listen = {metrics}\n"));
        out.push_str(&format!("metrics_public = {}\n", self.metrics_public));
        let token = self.metrics_token_file.as_deref().map_or_else(|| q(""), p);
        out.push_str(&format!("metrics_token_file = {token}\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The installed example file documents every key, and every key it
    /// shows is one the daemon knows.
    #[test]
    fn the_example_file_documents_every_key() {
        let example = include_str!("../../../systemd/ringdropd.toml");
        for key in KEYS {
            assert!(
                example.contains(&format!("\n#{key} = ")),
                "systemd/ringdropd.toml does not document `{key}`"
            );
        }
        let shown = example
            .lines()
            .filter_map(|l| l.strip_prefix('#')?.split_once(" = ").map(|(k, _)| k))
            .filter(|k| !k.contains(' '));
        for key in shown {
            assert!(
                KEYS.contains(&key),
                "systemd/ringdropd.toml shows unknown key `{key}`"
            );
        }
        // Uncommented, it is a valid file.
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| KEYS.contains(&k)))
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().expect("the example parses");
        assert_eq!(table.len(), KEYS.len());
        let file = std::env::temp_dir().join(format!("rdrop-example-{}.toml", std::process::id()));
        std::fs::write(&file, &uncommented).unwrap();
        let applied = Layer::from_file(&file).and_then(|l| l.apply(&mut Config::user_defaults()));
        std::fs::remove_file(&file).ok();
        applied.expect("every example value is valid");
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = Config::user_defaults();
        let mut l = Layer::new("flags");
        l.set("relay", "sometimes");
        let e = l.apply(&mut c).unwrap_err().to_string();
        assert!(e.starts_with("flags: key `relay`"), "{e}");
        let mut l = Layer::new("flags");
        l.set("max_concurrent_transfers", "0");
        assert!(l
            .apply(&mut c)
            .unwrap_err()
            .to_string()
            .contains("max_concurrent_transfers"));
    }

    #[test]
    fn printed_config_reads_back() {
        let c = Config::user_defaults();
        let dir = std::env::temp_dir().join(format!("rdrop-cfg-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, c.to_toml()).unwrap();
        let mut back = Config::isolated(&dir);
        Layer::from_file(&f).unwrap().apply(&mut back).unwrap();
        assert_eq!(back.to_toml(), c.to_toml());
        std::fs::remove_dir_all(dir).ok();
    }
}
