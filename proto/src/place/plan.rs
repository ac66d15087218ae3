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

/// Longest name component, in bytes (NAME_MAX).
pub const MAX_COMPONENT: usize = 255;
/// Longest name in a collection, in bytes (PATH_MAX).
pub const MAX_NAME: usize = 4096;
/// Deepest name in a collection, in components.
pub const MAX_DEPTH: usize = 128;
/// Most files in one collection.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Splits a collection name into safe path components.
pub fn sanitize(name: &str) -> Result<Vec<&str>, ExportError> {
    let bad = || ExportError::UnsafeName(name.to_string());
    // Control characters (NUL, newline, terminal escapes) are legal in
    // Unix names but only ever a trick: refused like `..`.
    if name.is_empty() || name.starts_with('/') || name.chars().any(char::is_control) {
        return Err(bad());
    }
    if name.len() > MAX_NAME {
        return Err(ExportError::TooLong(name.chars().take(64).collect()));
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(bad());
    }
    if parts.len() > MAX_DEPTH || parts.iter().any(|p| p.len() > MAX_COMPONENT) {
        return Err(ExportError::TooLong(name.chars().take(64).collect()));
    }
    Ok(parts)
}

/// Where each file goes; files already present with the right content
/// are left out.
#[derive(Debug)]
pub struct Plan {
    /// The existing directory everything is created beneath: `dest`
    /// itself, or the nearest existing ancestor when `dest` is the new
    /// entry.
    pub root: PathBuf,
    pub items: Vec<(Entry, PathBuf)>,
    /// Final paths that already hold the right bytes.
    pub present: Vec<PathBuf>,
    /// Replace files that exist at the destination.
    pub force: bool,
}

/// Decides the final path of every entry, checking names and collisions.
///
/// A fetch creates exactly one new entry at the destination:
/// - `dest` an existing directory: the collection's one top-level name is
///   created inside it (a one-file share its file, a directory share its
///   directory), or, for a collection with several top-level names, a new
///   directory named `container` (the ticket's name, or the hash). A
///   hidden top-level name (`.bashrc`, `.config`) is refused there: only
///   the user names one, with `--out DIR/.name`. Names below the top keep
///   their dots.
/// - otherwise `dest` is that entry: the single file, or the top directory
///   (several top-level names: a directory holding them).
pub fn plan(
    dest: &Path,
    entries: &[Entry],
    force: bool,
    container: &str,
) -> Result<Plan, ExportError> {
    if !dest.is_absolute() {
        return Err(ExportError::NotAbsolute(dest.to_path_buf()));
    }
    let root = root_of(dest);
    let (items, dirs) = if root == dest {
        layout(dest, entries, Top::Keep { container })?
    } else {
        layout(dest, entries, Top::Rename)?
    };
    let mut planned = Vec::with_capacity(items.len());
    let mut present = Vec::new();
    for (e, path) in items {
        if dirs.contains(&path) {
            return Err(ExportError::Conflict(e.name.clone()));
        }
        // Early, advisory checks (the staged write checks again through
        // descriptors, following no symlink).
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Err(ExportError::IsDir(path)),
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
        root,
        items: planned,
        present,
        force,
    })
}

/// The existing directory a fetch to `dest` creates everything beneath:
/// `dest` itself when it is a directory, else the nearest directory that
/// exists above it (what is missing below it, `--out new/dirs/file`, is
/// created by the staged write).
pub fn root_of(dest: &Path) -> PathBuf {
    if dest.is_dir() {
        return dest.to_path_buf();
    }
    let mut root = dest.parent().unwrap_or(Path::new("/"));
    while fs::symlink_metadata(root).is_err() {
        root = root.parent().unwrap_or(Path::new("/"));
    }
    root.to_path_buf()
}

/// Checks the names of a collection without a destination: what [`plan`]
/// refuses whatever the destination (unsafe or oversized names, too many
/// files, collisions in either layout) is refused here, before any byte of
/// the files is fetched. A hidden top-level name is left to the plan: the
/// user may name it with `--out`.
pub fn check_names(entries: &[Entry]) -> Result<(), ExportError> {
    let dest = Path::new("/dest");
    for top in [Top::Keep { container: "c" }, Top::Rename] {
        let (items, dirs) = match layout(dest, entries, top) {
            // Refused only inside an existing directory: the user may
            // name it with --out, which the destination decides.
            Err(ExportError::HiddenTop(_)) => continue,
            other => other?,
        };
        if let Some((e, _)) = items.iter().find(|(_, path)| dirs.contains(path)) {
            return Err(ExportError::Conflict(e.name.clone()));
        }
    }
    Ok(())
}

/// What happens to a collection's top-level names.
#[derive(Clone, Copy)]
enum Top<'a> {
    /// Created inside an existing directory: one top name kept (never a
    /// hidden one), several under a new directory `container`.
    Keep { container: &'a str },
    /// `dest` is the new entry: one top name renamed to it, several
    /// placed inside it.
    Rename,
}

type Layout = (Vec<(Entry, PathBuf)>, HashSet<PathBuf>);

/// Every entry's path under `dest` and every directory those paths need;
/// names sanitised and bounded, no path twice. Memory stays linear in the
/// names: each directory is recorded once, however many files it holds.
fn layout(dest: &Path, entries: &[Entry], top: Top<'_>) -> Result<Layout, ExportError> {
    if entries.len() > MAX_ENTRIES {
        return Err(ExportError::TooMany(entries.len()));
    }
    let mut split = Vec::with_capacity(entries.len());
    for e in entries {
        split.push(sanitize(&e.name)?);
    }
    let tops: BTreeSet<&str> = split.iter().map(|p| p[0]).collect();
    let (base, strip_top) = match top {
        Top::Rename => (dest.to_path_buf(), tops.len() == 1),
        Top::Keep { .. } if tops.len() == 1 => {
            let name = tops.iter().next().copied().unwrap_or_default();
            if name.starts_with('.') {
                return Err(ExportError::HiddenTop(name.to_string()));
            }
            (dest.to_path_buf(), false)
        }
        Top::Keep { container } => {
            let safe = sanitize(container)
                .ok()
                .filter(|p| p.len() == 1 && !container.starts_with('.'));
            if safe.is_none() {
                return Err(ExportError::HiddenTop(container.to_string()));
            }
            (dest.join(container), false)
        }
    };
    let mut items = Vec::with_capacity(entries.len());
    let mut seen = HashSet::with_capacity(entries.len());
    let mut dirs = HashSet::new();
    for (e, parts) in entries.iter().zip(&split) {
        let rel = if strip_top { &parts[1..] } else { &parts[..] };
        let mut path = base.clone();
        path.extend(rel);
        // Every ancestor below the file, `base` included: with the top
        // stripped, `a` lands on `base` itself while `a/b` needs it to be
        // a directory. Walked up until one is known.
        let mut dir = path.parent().map(Path::to_path_buf);
        for _ in 0..rel.len() {
            let Some(d) = dir else { break };
            if !dirs.insert(d.clone()) {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
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
    fs::File::open(path).is_ok_and(|f| same_content_of(f, hash))
}

/// Whether the open file `f` hashes to `hash`.
pub fn same_content_of(f: fs::File, hash: &ContentHash) -> bool {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(f).is_ok() && hasher.finalize().as_bytes() == hash
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
        let p = plan(&tmp, &[entry("f.txt")], false, "c").unwrap();
        assert_eq!(p.items[0].1, tmp.join("f.txt"));
        // new path: the single file is the path
        let p = plan(&tmp.join("out.bin"), &[entry("f.txt")], false, "c").unwrap();
        assert_eq!(p.items[0].1, tmp.join("out.bin"));
        // new path: the top directory is renamed
        let p = plan(
            &tmp.join("new"),
            &[entry("d/a"), entry("d/s/b")],
            false,
            "c",
        )
        .unwrap();
        assert_eq!(p.items[1].1, tmp.join("new/s/b"));
        // collisions
        assert!(matches!(
            plan(&tmp, &[entry("a"), entry("a")], false, "c"),
            Err(ExportError::Conflict(_))
        ));
        assert!(matches!(
            plan(&tmp, &[entry("a"), entry("a/b")], false, "c"),
            Err(ExportError::Conflict(_))
        ));
        fs::write(tmp.join("f.txt"), b"x").unwrap();
        assert!(matches!(
            plan(&tmp, &[entry("f.txt")], false, "c"),
            Err(ExportError::Exists(_))
        ));
        assert!(plan(&tmp, &[entry("f.txt")], true, "c").is_ok());
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
    fn one_new_entry_in_an_existing_directory() {
        let tmp = std::env::temp_dir().join(format!("rdrop-plan-{}", rand::random::<u64>()));
        fs::create_dir_all(&tmp).unwrap();
        // Several top-level names: one new directory named after the ticket.
        let p = plan(&tmp, &[entry("a"), entry("b/c")], false, "photos").unwrap();
        assert_eq!(p.items[0].1, tmp.join("photos/a"));
        assert_eq!(p.items[1].1, tmp.join("photos/b/c"));
        assert_eq!(p.root, tmp);
        // A hidden top-level name is never planted by the sender...
        for names in [&[".bash_profile"][..], &[".config/autostart/x.desktop"]] {
            let entries: Vec<Entry> = names.iter().map(|n| entry(n)).collect();
            assert!(matches!(
                plan(&tmp, &entries, false, "c"),
                Err(ExportError::HiddenTop(_))
            ));
        }
        assert!(matches!(
            plan(&tmp, &[entry("a"), entry("b")], false, ".hidden"),
            Err(ExportError::HiddenTop(_))
        ));
        // ...only named by the user; dots below the top stay.
        let p = plan(&tmp.join(".profile"), &[entry(".bash_profile")], false, "c").unwrap();
        assert_eq!(p.items[0].1, tmp.join(".profile"));
        let p = plan(&tmp, &[entry("repo/.git/HEAD")], false, "c").unwrap();
        assert_eq!(p.items[0].1, tmp.join("repo/.git/HEAD"));
        fs::remove_dir_all(tmp).ok();
    }

    #[test]
    fn oversized_names_and_collections_are_refused() {
        let long = "x".repeat(256);
        assert!(matches!(sanitize(&long), Err(ExportError::TooLong(_))));
        let deep = vec!["d"; 129].join("/");
        assert!(matches!(sanitize(&deep), Err(ExportError::TooLong(_))));
        let wide = format!("{}/f", vec!["abcdefgh"; 500].join("/"));
        assert!(matches!(sanitize(&wide), Err(ExportError::TooLong(_))));
        assert_eq!(sanitize(&"é".repeat(127)).map(|p| p.len()).ok(), Some(1));
        // Deep trees plan in memory linear in the names: every directory
        // recorded once.
        let names: Vec<Entry> = (0..2000)
            .map(|i| entry(&format!("{}/f{i}", vec!["d"; 100].join("/"))))
            .collect();
        assert!(check_names(&names).is_ok());
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
            plan(&tmp.join("new"), &entries, false, "c"),
            Err(ExportError::Conflict(_))
        ));
        assert!(matches!(
            plan(&tmp.join("new"), &[entry("d/a"), entry("d")], false, "c"),
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
            let Ok(p) = plan(dest, &entries, false, "c") else {
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
