//! Planning where content goes: names sanitised before any byte is
//! fetched (relative, no `..`, no empty or absolute components, no control
//! characters; a bad name fails the transfer and writes nothing),
//! collisions and existing files checked, free space checked.

use std::{
    collections::{BTreeSet, HashSet},
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::{io, ContentHash, Entry, ExportError};

/// Splits a collection name into safe path components.
pub fn sanitize(name: &str) -> Result<Vec<&str>, ExportError> {
    let bad = || ExportError::UnsafeName(name.to_string());
    // Control characters (NUL, newline, terminal escapes) are legal in
    // Unix names but only ever a trick: refused like `..`.
    if name.is_empty() || name.starts_with('/') || name.chars().any(char::is_control) {
        return Err(bad());
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(bad());
    }
    Ok(parts)
}

/// Where each file goes; files already present with the right content
/// are left out.
#[derive(Debug)]
pub struct Plan {
    pub items: Vec<(Entry, PathBuf)>,
    /// Final paths that already hold the right bytes.
    pub present: Vec<PathBuf>,
    /// Replace files that exist at the destination.
    pub force: bool,
}

/// Decides the final path of every entry, checking names and collisions.
///
/// `dest` an existing directory: the names are created inside it.
/// Otherwise `dest` is the single file, or the top directory that replaces
/// the collection's one top-level name (several top-level names: `dest`
/// becomes a directory holding them).
pub fn plan(dest: &Path, entries: &[Entry], force: bool) -> Result<Plan, ExportError> {
    if !dest.is_absolute() {
        return Err(ExportError::NotAbsolute(dest.to_path_buf()));
    }
    let (items, dirs) = layout(dest, entries, dest.is_dir())?;
    let mut planned = Vec::with_capacity(items.len());
    let mut present = Vec::new();
    for (e, path) in items {
        if dirs.contains(&path) {
            return Err(ExportError::Conflict(e.name.clone()));
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Err(ExportError::IsDir(path)),
            // Already there, byte for byte (e.g. placed just before a crash):
            // nothing to write, nothing overwritten.
            Ok(m) if m.is_file() && m.len() == e.size && same_content(&path, &e.hash) => {
                present.push(path);
                continue;
            }
            Ok(_) if !force => return Err(ExportError::Exists(path)),
            _ => {}
        }
        planned.push((e, path));
    }
    Ok(Plan {
        items: planned,
        present,
        force,
    })
}

/// Checks the names of a collection without a destination: what [`plan`]
/// refuses whatever the destination (unsafe names, collisions in either
/// layout) is refused here, before any byte is fetched, by a daemon that
/// does not place the files itself.
pub fn check_names(entries: &[Entry]) -> Result<(), ExportError> {
    let dest = Path::new("/dest");
    for into_dir in [true, false] {
        let (items, dirs) = layout(dest, entries, into_dir)?;
        if let Some((e, _)) = items.iter().find(|(_, path)| dirs.contains(path)) {
            return Err(ExportError::Conflict(e.name.clone()));
        }
    }
    Ok(())
}

type Layout = (Vec<(Entry, PathBuf)>, HashSet<PathBuf>);

/// Every entry's path under `dest` and every directory those paths need;
/// names sanitised, no path twice.
fn layout(dest: &Path, entries: &[Entry], into_dir: bool) -> Result<Layout, ExportError> {
    let mut split = Vec::with_capacity(entries.len());
    for e in entries {
        split.push(sanitize(&e.name)?);
    }
    let tops: BTreeSet<&str> = split.iter().map(|p| p[0]).collect();
    let strip_top = !into_dir && tops.len() == 1;
    let mut items = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    let mut dirs = HashSet::new();
    for (e, parts) in entries.iter().zip(&split) {
        let rel = if strip_top { &parts[1..] } else { &parts[..] };
        let mut path = dest.to_path_buf();
        for p in rel {
            // Every ancestor below the file, `dest` included: with the top
            // stripped, `a` lands on `dest` itself while `a/b` needs it to be
            // a directory.
            dirs.insert(path.clone());
            path.push(p);
        }
        if !seen.insert(path.clone()) {
            return Err(ExportError::Conflict(e.name.clone()));
        }
        items.push((e.clone(), path));
    }
    Ok((items, dirs))
}

/// Whether the file at `path` hashes to `hash` (BLAKE3, as iroh-blobs).
pub fn same_content(path: &Path, hash: &ContentHash) -> bool {
    let mut hasher = blake3::Hasher::new();
    match fs::File::open(path).and_then(|f| hasher.update_reader(f).map(|_| ())) {
        Ok(()) => hasher.finalize().as_bytes() == hash,
        Err(_) => false,
    }
}

/// Free bytes for unprivileged users on the filesystem holding `path`
/// (or its nearest existing ancestor).
pub fn available_space(path: &Path) -> std::io::Result<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let c = CString::new(p.as_os_str().as_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Fails early when `need` bytes will not fit at `path`.
pub fn check_space(path: &Path, need: u64) -> Result<(), ExportError> {
    let avail = available_space(path).map_err(io(path))?;
    if avail < need {
        return Err(ExportError::NoSpace {
            path: path.to_path_buf(),
            need,
            avail,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            hash: [0; 32],
            size: 0,
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for n in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a/",
            "a\0b",
            "..",
        ] {
            assert!(sanitize(n).is_err(), "{n:?} accepted");
        }
        assert_eq!(
            sanitize("dir/sub dir/ü.txt").unwrap(),
            vec!["dir", "sub dir", "ü.txt"]
        );
    }

    #[test]
    fn plan_places_single_file_and_dirs() {
        let tmp = std::env::temp_dir().join(format!("rdrop-plan-{}", rand::random::<u64>()));
        fs::create_dir_all(&tmp).unwrap();
        // into an existing dir: names kept
        let p = plan(&tmp, &[entry("f.txt")], false).unwrap();
        assert_eq!(p.items[0].1, tmp.join("f.txt"));
        // new path: the single file is the path
        let p = plan(&tmp.join("out.bin"), &[entry("f.txt")], false).unwrap();
        assert_eq!(p.items[0].1, tmp.join("out.bin"));
        // new path: the top directory is renamed
        let p = plan(&tmp.join("new"), &[entry("d/a"), entry("d/s/b")], false).unwrap();
        assert_eq!(p.items[1].1, tmp.join("new/s/b"));
        // collisions
        assert!(matches!(
            plan(&tmp, &[entry("a"), entry("a")], false),
            Err(ExportError::Conflict(_))
        ));
        assert!(matches!(
            plan(&tmp, &[entry("a"), entry("a/b")], false),
            Err(ExportError::Conflict(_))
        ));
        fs::write(tmp.join("f.txt"), b"x").unwrap();
        assert!(matches!(
            plan(&tmp, &[entry("f.txt")], false),
            Err(ExportError::Exists(_))
        ));
        assert!(plan(&tmp, &[entry("f.txt")], true).is_ok());
        fs::remove_dir_all(tmp).ok();
    }

    /// Crash inputs of the `names` fuzz target: a mode byte, then
    /// newline-separated names (odd mode: `dest` does not exist).
    fn fuzz_input(bytes: &[u8]) -> (bool, Vec<Entry>) {
        let (mode, rest) = bytes.split_first().unwrap();
        let names = std::str::from_utf8(rest).unwrap();
        (mode % 2 == 1, names.split('\n').map(entry).collect())
    }

    #[test]
    fn control_characters_are_refused() {
        let (_, entries) = fuzz_input(include_bytes!(
            "../../../fuzz/regressions/names/control-char"
        ));
        assert!(matches!(
            sanitize(&entries[0].name),
            Err(ExportError::UnsafeName(_))
        ));
        for n in ["a\nb", "a\x1b[2Jb", "a/\x7f", "\u{85}"] {
            assert!(sanitize(n).is_err(), "{n:?} accepted");
        }
    }

    #[test]
    fn a_name_that_is_also_a_directory_conflicts_when_the_top_is_renamed() {
        let tmp = std::env::temp_dir().join(format!("rdrop-plan-{}", rand::random::<u64>()));
        fs::create_dir_all(&tmp).unwrap();
        // `(` and `(/(`: one top name, renamed to `dest`, which would be
        // both the file `(` and the directory holding `(/(`.
        let (missing, entries) = fuzz_input(include_bytes!(
            "../../../fuzz/regressions/names/file-and-dir"
        ));
        assert!(missing);
        assert!(matches!(
            plan(&tmp.join("new"), &entries, false),
            Err(ExportError::Conflict(_))
        ));
        assert!(matches!(
            plan(&tmp.join("new"), &[entry("d/a"), entry("d")], false),
            Err(ExportError::Conflict(_))
        ));
        fs::remove_dir_all(tmp).ok();
    }

    mod props {
        use std::path::Component;

        use proptest::{collection::vec, prelude::*};

        use super::*;

        /// Path components with the dangerous ones well represented.
        fn component() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(String::new()),
                Just(".".to_string()),
                Just("..".to_string()),
                "[ab]",
                "\\.{1,3}[ab]?",
                "\\PC{1,8}",
                "[ab]?[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}][ab]?",
            ]
        }

        fn name() -> impl Strategy<Value = String> {
            (any::<bool>(), vec(component(), 1..5)).prop_map(|(abs, parts)| {
                format!("{}{}", if abs { "/" } else { "" }, parts.join("/"))
            })
        }

        /// What a sanitised name must be, and where it lands under `dest`.
        fn check_sanitized(name: &str) -> Result<(), TestCaseError> {
            let Ok(parts) = sanitize(name) else {
                return Ok(());
            };
            prop_assert_eq!(parts.join("/"), name);
            for p in &parts {
                prop_assert!(!p.is_empty() && *p != "." && *p != "..", "{:?}", p);
                prop_assert!(!p.contains('/'));
                prop_assert!(!p.chars().any(char::is_control), "control char in {:?}", p);
            }
            let dest = Path::new("/srv/dest");
            let joined = parts.iter().fold(dest.to_path_buf(), |d, p| d.join(p));
            let rel = joined.strip_prefix(dest).expect("outside dest");
            prop_assert_eq!(rel.components().count(), parts.len());
            prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
            Ok(())
        }

        /// Planned paths: inside `dest`, distinct, none inside another.
        fn check_plan(dest: &Path, names: &[String]) -> Result<(), TestCaseError> {
            let entries: Vec<Entry> = names.iter().map(|n| entry(n)).collect();
            let Ok(p) = plan(dest, &entries, false) else {
                return Ok(());
            };
            prop_assert_eq!(p.items.len(), entries.len());
            let paths: HashSet<&Path> = p.items.iter().map(|(_, path)| path.as_path()).collect();
            prop_assert_eq!(paths.len(), entries.len());
            for path in &paths {
                let rel = path.strip_prefix(dest).expect("outside dest");
                prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
                for a in path.ancestors().skip(1) {
                    prop_assert!(!paths.contains(a), "{:?} is a file and a directory", a);
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn sanitized_names_stay_inside(name in name()) {
                check_sanitized(&name)?;
            }

            #[test]
            fn arbitrary_names_are_safe_or_refused(name in any::<String>()) {
                check_sanitized(&name)?;
            }

            #[test]
            fn plans_stay_inside(names in vec("[ab](/[ab]){0,2}", 1..6), into_dir in any::<bool>()) {
                let tmp = std::env::temp_dir().join(format!("rdrop-plan-{}", rand::random::<u64>()));
                fs::create_dir_all(&tmp).unwrap();
                let dest = if into_dir { tmp.clone() } else { tmp.join("new") };
                let checked = check_plan(&dest, &names);
                fs::remove_dir_all(tmp).ok();
                checked?;
            }
        }
    }
}
