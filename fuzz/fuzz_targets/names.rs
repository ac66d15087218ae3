//! Collection names: whatever a peer's collection names, sanitised names
//! and planned paths stay inside the destination.
#![no_main]

use std::{
    collections::HashSet,
    path::{Component, Path, PathBuf},
    sync::OnceLock,
};

use libfuzzer_sys::fuzz_target;
use ringdropd::transfers::plan::{plan, sanitize, Entry};

/// An existing, empty directory (the "into an existing dir" case).
fn empty_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ringdrop-fuzz-names-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
}

fn check_parts(name: &str, parts: &[&str]) {
    assert_eq!(parts.join("/"), name);
    for p in parts {
        assert!(!p.is_empty() && *p != "." && *p != "..", "{name:?}: {p:?}");
        assert!(!p.contains('/'), "{name:?}: {p:?}");
        assert!(!p.chars().any(char::is_control), "{name:?}: control char");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(parts) = sanitize(text) {
        check_parts(text, &parts);
    }
    // Newline-separated names as one collection, planned into a directory
    // that exists (names kept) or a path that does not (top renamed).
    let entries: Vec<Entry> = text
        .split('\n')
        .map(|n| Entry {
            name: n.to_string(),
            hash: [0; 32],
            size: 0,
        })
        .collect();
    let dest = if mode % 2 == 0 {
        empty_dir().to_path_buf()
    } else {
        empty_dir().join("missing")
    };
    let Ok(p) = plan(&dest, &entries, false, "c") else {
        return;
    };
    assert_eq!(p.items.len() + p.present.len(), entries.len());
    let paths: HashSet<&Path> = p.items.iter().map(|(_, path)| path.as_path()).collect();
    assert_eq!(
        paths.len(),
        p.items.len(),
        "two entries planned to one path"
    );
    for path in &paths {
        let rel = path.strip_prefix(&dest).expect("planned path outside dest");
        assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
        for a in path.ancestors().skip(1) {
            assert!(
                !paths.contains(a),
                "{} is planned as a file and as a directory of {}",
                a.display(),
                path.display()
            );
        }
    }
});
