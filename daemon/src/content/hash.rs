//! A file's BLAKE3 root and its pre-order outboard, hashed with every
//! core: the file is cut into segments of [`SEGMENT_BLOCKS`] blocks (each a
//! whole subtree of the tree, so its parents are one run of the pre-order
//! outboard), threads take segments in turn and write their parents where
//! they belong, and the few parents above the segments are merged last.
//!
//! The tree is iroh-blobs' (16 KiB blocks, left-balanced like BLAKE3's):
//! a node of `n > 1` blocks has a left child of the largest power of two
//! below `n`; in pre-order, a node at slot `i` has its left child at
//! `i + 1` and its right child at `i + left`.

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

/// Bytes of a block: the tree's leaf (iroh-blobs' `IROH_BLOCK_SIZE`).
pub const BLOCK: u64 = 16 * 1024;
/// Blocks of a segment (4 MiB): one thread's piece of work.
const SEGMENT_BLOCKS: u64 = 256;
/// Bytes of one parent in the outboard.
const PAIR: u64 = 64;

/// The largest power of two below `n` (`n >= 2`).
fn left_of(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Hashes the `size` bytes of `data` (read at offsets, so threads share
/// it), writes the pre-order outboard into `outboard` (nothing for a file
/// of one block) and counts hashed bytes in `progress`. `threads` at
/// least 1. A file shorter than `size` is an error.
pub fn hash_file(
    data: &File,
    size: u64,
    outboard: &File,
    threads: usize,
    progress: &AtomicU64,
) -> io::Result<blake3::Hash> {
    if size <= BLOCK {
        return hash_block(data, size, progress);
    }
    let blocks = size.div_ceil(BLOCK);
    let file = Segments {
        data,
        outboard,
        size,
        blocks,
    };
    if blocks <= SEGMENT_BLOCKS {
        let mut buf = Vec::new();
        let root = file.segment(0, 0, &mut buf, true)?;
        progress.fetch_add(size, Ordering::Relaxed);
        return Ok(blake3::Hash::from_bytes(root));
    }
    // Each segment's place in the pre-order outboard.
    let mut slots = Vec::with_capacity(blocks.div_ceil(SEGMENT_BLOCKS) as usize);
    segment_slots(blocks, 0, &mut slots);
    let cvs = file.segments_parallel(&slots, threads.max(1), progress)?;
    let root = file.upper(0, blocks, 0, &cvs)?;
    Ok(blake3::Hash::from_bytes(root))
}

/// The root of a file of one block (`size <= BLOCK`): it has no outboard.
pub fn hash_block(data: &File, size: u64, progress: &AtomicU64) -> io::Result<blake3::Hash> {
    let mut buf = vec![0u8; size.min(BLOCK) as usize];
    data.read_exact_at(&mut buf, 0)?;
    progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
    Ok(blake3::hash(&buf))
}

/// The pre-order slot of every segment of a tree of `n` blocks, in order.
fn segment_slots(n: u64, slot: u64, out: &mut Vec<u64>) {
    if n <= SEGMENT_BLOCKS {
        out.push(slot);
        return;
    }
    let left = left_of(n);
    segment_slots(left, slot + 1, out);
    segment_slots(n - left, slot + left, out);
}

struct Segments<'a> {
    data: &'a File,
    outboard: &'a File,
    size: u64,
    blocks: u64,
}

impl Segments<'_> {
    /// Hashes every segment on `threads` threads: their chaining values.
    fn segments_parallel(
        &self,
        slots: &[u64],
        threads: usize,
        progress: &AtomicU64,
    ) -> io::Result<Vec<ChainingValue>> {
        let next = AtomicU64::new(0);
        let cvs = Mutex::new(vec![[0u8; 32]; slots.len()]);
        let failed: Mutex<Option<io::Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..threads.min(slots.len()) {
                s.spawn(|| {
                    let mut buf = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if k >= slots.len() || failed.lock().is_ok_and(|f| f.is_some()) {
                            return;
                        }
                        let start = k as u64 * SEGMENT_BLOCKS;
                        match self.segment(start, slots[k], &mut buf, false) {
                            Ok(cv) => {
                                if let Ok(mut cvs) = cvs.lock() {
                                    cvs[k] = cv;
                                }
                                progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
                            }
                            Err(e) => {
                                if let Ok(mut f) = failed.lock() {
                                    f.get_or_insert(e);
                                }
                                return;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        cvs.into_inner()
            .map_err(|_| io::Error::other("a hashing thread panicked"))
    }

    /// Hashes the segment starting at block `start` whose root is at
    /// pre-order `slot`, writing its parents; `root`: it is the whole tree.
    fn segment(
        &self,
        start: u64,
        slot: u64,
        buf: &mut Vec<u8>,
        root: bool,
    ) -> io::Result<[u8; 32]> {
        let n = SEGMENT_BLOCKS.min(self.blocks - start);
        let from = start * BLOCK;
        let len = (n * BLOCK).min(self.size - from);
        buf.resize(len as usize, 0);
        self.data.read_exact_at(buf, from)?;
        let mut parents = vec![0u8; ((n - 1) * PAIR) as usize];
        let mut tree = Subtree {
            data: buf,
            first: start,
            parents: &mut parents,
            slot0: slot,
        };
        let cv = tree.hash(start, n, slot, root);
        if !parents.is_empty() {
            self.outboard.write_all_at(&parents, slot * PAIR)?;
        }
        Ok(cv)
    }

    /// Merges the segments' chaining values into the nodes above them,
    /// writing those parents: the root for the whole tree.
    fn upper(&self, start: u64, n: u64, slot: u64, cvs: &[ChainingValue]) -> io::Result<[u8; 32]> {
        if n <= SEGMENT_BLOCKS {
            return Ok(cvs[(start / SEGMENT_BLOCKS) as usize]);
        }
        let left = left_of(n);
        let l = self.upper(start, left, slot + 1, cvs)?;
        let r = self.upper(start + left, n - left, slot + left, cvs)?;
        let mut pair = [0u8; PAIR as usize];
        pair[..32].copy_from_slice(&l);
        pair[32..].copy_from_slice(&r);
        self.outboard.write_all_at(&pair, slot * PAIR)?;
        Ok(merge(&l, &r, n == self.blocks))
    }
}

/// One segment in memory, its parents collected for one write.
struct Subtree<'a> {
    data: &'a [u8],
    /// The segment's first block.
    first: u64,
    parents: &'a mut [u8],
    /// The segment root's pre-order slot.
    slot0: u64,
}

impl Subtree<'_> {
    fn hash(&mut self, start: u64, n: u64, slot: u64, root: bool) -> [u8; 32] {
        if n == 1 {
            let at = ((start - self.first) * BLOCK) as usize;
            let end = (at + BLOCK as usize).min(self.data.len());
            let mut h = blake3::Hasher::new();
            h.set_input_offset(start * BLOCK);
            h.update(&self.data[at..end]);
            return h.finalize_non_root();
        }
        let left = left_of(n);
        let l = self.hash(start, left, slot + 1, false);
        let r = self.hash(start + left, n - left, slot + left, false);
        let at = ((slot - self.slot0) * PAIR) as usize;
        self.parents[at..at + 32].copy_from_slice(&l);
        self.parents[at + 32..at + 64].copy_from_slice(&r);
        merge(&l, &r, root)
    }
}

fn merge(l: &ChainingValue, r: &ChainingValue, root: bool) -> [u8; 32] {
    if root {
        *merge_subtrees_root(l, r, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(l, r, Mode::Hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bao_tree::{io::outboard::PreOrderMemOutboard, BlockSize};

    fn check(size: usize, threads: usize) {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 1000) as u8).collect();
        let dir = std::env::temp_dir().join(format!("rdrop-hash-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("d"), &data).unwrap();
        let d = File::open(dir.join("d")).unwrap();
        let ob = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("o"))
            .unwrap();
        let progress = AtomicU64::new(0);
        let root = hash_file(&d, size as u64, &ob, threads, &progress).unwrap();
        let expected = PreOrderMemOutboard::create(&data, BlockSize::from_chunk_log(4));
        assert_eq!(root, expected.root, "root of {size} bytes");
        assert_eq!(root, blake3::hash(&data), "root of {size} bytes");
        let written = std::fs::read(dir.join("o")).unwrap();
        assert_eq!(written, expected.data, "outboard of {size} bytes");
        assert_eq!(progress.load(Ordering::Relaxed), size as u64);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn root_and_outboard_are_bao_trees() {
        let b = BLOCK as usize;
        let seg = (SEGMENT_BLOCKS * BLOCK) as usize;
        for size in [
            0,
            1,
            1024,
            1025,
            b - 1,
            b,
            b + 1,
            3 * b + 5,
            seg - 1,
            seg,
            seg + 1,
            2 * seg,
            3 * seg + b + 17,
            5 * seg - 3,
        ] {
            for threads in [1, 2, 3] {
                check(size, threads);
            }
        }
    }

    #[test]
    fn a_short_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("rdrop-hash-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("d"), vec![1u8; 100_000]).unwrap();
        let d = File::open(dir.join("d")).unwrap();
        let ob = File::create(dir.join("o")).unwrap();
        let progress = AtomicU64::new(0);
        assert!(hash_file(&d, 20_000_000, &ob, 2, &progress).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
