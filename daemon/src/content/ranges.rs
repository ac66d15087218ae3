//! Chunk ranges of content: what a file of a size has, how many bytes a
//! set of ranges covers or an encoding of them carries, and the row a
//! record keeps them as.

use bao_tree::{ChunkNum, ChunkRanges};

/// Chunks of a file of `size` bytes.
pub fn all_chunks(size: u64) -> ChunkRanges {
    ChunkRanges::from(ChunkNum(0)..ChunkNum::chunks(size))
}

/// Payload bytes of a file of `size` that `ranges` cover.
pub fn covered(ranges: &ChunkRanges, size: u64) -> u64 {
    let b = ranges.boundaries();
    b.chunks(2)
        .map(|pair| {
            let start = pair[0].to_bytes().min(size);
            let end = pair.get(1).map_or(size, |e| e.to_bytes().min(size));
            end - start
        })
        .sum()
}

/// A chunk range set as stored in a record (its boundaries).
pub fn to_row(ranges: &ChunkRanges) -> Vec<u64> {
    ranges.boundaries().iter().map(|c| c.0).collect()
}

pub fn from_row(row: &[u64]) -> ChunkRanges {
    row.chunks(2)
        .fold(ChunkRanges::empty(), |acc, pair| match pair {
            [a, b] if a < b => acc | ChunkRanges::from(ChunkNum(*a)..ChunkNum(*b)),
            _ => acc,
        })
}

/// Data bytes an encoding of `ranges` of a blob of `size` carries: the
/// ranges within the blob, and its last chunk when the ranges reach past
/// the end (how a size is proven).
pub fn payload(ranges: &ChunkRanges, size: u64) -> u64 {
    let all = all_chunks(size);
    let within = covered(&(ranges.clone() & all.clone()), size);
    let end = ChunkNum::chunks(size);
    let last = ChunkNum(end.0.saturating_sub(1));
    let past_end = !(ranges.clone() - all).is_empty();
    if size > 0 && past_end && (ranges.clone() & ChunkRanges::from(last..end)).is_empty() {
        within + (size - last.to_bytes())
    } else {
        within
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iroh_blobs::protocol::ChunkRangesExt;

    #[test]
    fn rows_round_trip_and_cover() {
        let r = ChunkRanges::from(ChunkNum(0)..ChunkNum(16))
            | ChunkRanges::from(ChunkNum(32)..ChunkNum(40));
        assert_eq!(from_row(&to_row(&r)), r);
        assert_eq!(covered(&r, 40 * 1024), 24 * 1024);
        // The last chunk is partial.
        assert_eq!(covered(&r, 39 * 1024 + 5), 23 * 1024 + 5);
        assert_eq!(covered(&all_chunks(0), 0), 0);
    }

    #[test]
    fn payload_counts_the_last_chunk_a_size_proof_asks_for() {
        let size = 2 * 1024 * 1024 + 100;
        let all = all_chunks(size);
        assert_eq!(payload(&ChunkRanges::all(), size), size);
        assert_eq!(payload(&all, size), size);
        assert_eq!(payload(&ChunkRanges::last_chunk(), size), 100);
        let first = ChunkRanges::from(ChunkNum(0)..ChunkNum(2));
        assert_eq!(payload(&first, size), 2048);
        assert_eq!(payload(&(first | ChunkRanges::last_chunk()), size), 2148);
        assert_eq!(payload(&ChunkRanges::last_chunk(), 2048), 1024);
        assert_eq!(payload(&ChunkRanges::all(), 0), 0);
    }
}
