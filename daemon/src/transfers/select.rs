//! `fetch --only GLOB`: the part of a share a transfer fetches.
//!
//! A pattern is matched against each file's name in the collection
//! ('/'-separated, as `remote ls` and `ticket` show them): `*` and `?` stay
//! within one name component, `**` crosses them, and a pattern that
//! matches a directory takes everything under it (`--only photos/2024`).
//! The same patterns over the same collection always pick the same files,
//! in collection order, so a resumed transfer continues the same part.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// At most this many patterns, each at most this long: they are stored
/// with the transfer and matched against every name of a collection.
pub const MAX_PATTERNS: usize = 64;
pub const MAX_PATTERN_LEN: usize = 1024;

/// Why patterns were refused.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("--only {0:?} is not a valid pattern: {1}")]
    Invalid(String, String),
    #[error("--only: at most {MAX_PATTERNS} patterns of at most {MAX_PATTERN_LEN} bytes each")]
    TooMany,
}

/// Compiled `--only` patterns; none selects every file.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    set: Option<GlobSet>,
}

impl Selection {
    /// Compiles `patterns` (empty: everything).
    pub fn new(patterns: &[String]) -> Result<Self, SelectError> {
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        if patterns.len() > MAX_PATTERNS || patterns.iter().any(|p| p.len() > MAX_PATTERN_LEN) {
            return Err(SelectError::TooMany);
        }
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            let trimmed = p.trim_matches('/');
            if trimmed.is_empty() {
                return Err(SelectError::Invalid(p.clone(), "it names no file".into()));
            }
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| SelectError::Invalid(p.clone(), e.kind().to_string()))?;
            set.add(glob);
        }
        let set = set
            .build()
            .map_err(|e| SelectError::Invalid(patterns.join(" "), e.to_string()))?;
        Ok(Self { set: Some(set) })
    }

    /// Whether every file is selected.
    pub fn is_all(&self) -> bool {
        self.set.is_none()
    }

    /// Whether the file named `name` is selected: a pattern matches the
    /// name or one of the directories it is in.
    pub fn selects(&self, name: &str) -> bool {
        let Some(set) = &self.set else {
            return true;
        };
        let mut prefix_end = name.len();
        loop {
            if set.is_match(&name[..prefix_end]) {
                return true;
            }
            match name[..prefix_end].rfind('/') {
                Some(slash) => prefix_end = slash,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(p: &[&str]) -> Selection {
        Selection::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn nothing_selects_everything() {
        let s = sel(&[]);
        assert!(s.is_all());
        assert!(s.selects("a/b/c"));
    }

    #[test]
    fn star_stays_in_one_component() {
        let s = sel(&["data/*.csv"]);
        assert!(s.selects("data/x.csv"));
        assert!(!s.selects("data/sub/x.csv"));
        assert!(!s.selects("other/x.csv"));
        let deep = sel(&["data/**/*.csv"]);
        assert!(deep.selects("data/sub/x.csv"));
        assert!(deep.selects("data/x.csv"));
    }

    #[test]
    fn a_directory_takes_what_is_under_it() {
        let s = sel(&["photos/2024/"]);
        assert!(s.selects("photos/2024/a.jpg"));
        assert!(s.selects("photos/2024/b/c.jpg"));
        assert!(!s.selects("photos/2023/a.jpg"));
        assert!(!s.selects("photos/20245/a.jpg"));
    }

    #[test]
    fn patterns_add_up() {
        let s = sel(&["*.txt", "b/*"]);
        assert!(s.selects("a.txt"));
        assert!(s.selects("b/x.bin"));
        assert!(!s.selects("c/x.bin"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Selection::new(&["a[".to_string()]).is_err());
        assert!(Selection::new(&["/".to_string()]).is_err());
        assert!(Selection::new(&vec!["a".to_string(); MAX_PATTERNS + 1]).is_err());
    }
}
