#!/usr/bin/env bash
# Checks that daemon/vendor/h2 is the upstream h2 release it names plus
# daemon/vendor/h2.patch and nothing else: cargo downloads the release
# (a throwaway manifest without our [patch], so the crates.io copy is
# fetched), the patch is applied to its src/, LICENSE and Cargo.toml, and
# the result is compared with the copy. Exit 0: the same; 1: they differ
# (the diff is printed); 2: the release could not be fetched.
#
#   daemon/vendor/check-h2.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/h2/Cargo.toml" | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/probe/src"
echo 'fn main() {}' >"$work/probe/src/main.rs"
cat >"$work/probe/Cargo.toml" <<TOML
[package]
name = "probe"
version = "0.0.0"
edition = "2021"

[dependencies]
h2 = "=$version"

[workspace]
TOML
if ! cargo fetch --quiet --manifest-path "$work/probe/Cargo.toml"; then
    echo "check-h2: cannot fetch h2 $version from crates.io" >&2
    exit 2
fi
upstream=$(cargo metadata --format-version 1 --manifest-path "$work/probe/Cargo.toml" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print([p for p in m["packages"] if p["name"]=="h2"][0]["manifest_path"])')
upstream=$(dirname "$upstream")

mkdir "$work/a"
cp -r "$upstream/src" "$upstream/LICENSE" "$upstream/Cargo.toml" "$work/a/"
(cd "$work/a" && patch --quiet -p1 <"$here/h2.patch")
mkdir "$work/b"
cp -r "$here/h2/src" "$here/h2/LICENSE" "$here/h2/Cargo.toml" "$work/b/"
if diff -r "$work/a" "$work/b"; then
    echo "check-h2: daemon/vendor/h2 is h2 $version plus h2.patch"
else
    echo "check-h2: daemon/vendor/h2 differs from h2 $version plus h2.patch (above)" >&2
    exit 1
fi
