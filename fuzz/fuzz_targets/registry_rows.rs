//! Registry rows: corrupt bytes in the database are an error, never a
//! panic; a row that decodes re-encodes to bytes that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringdropd::registry::{decode_row, encode_row, PeerRecord, ShareRecord, TransferRecord};
use serde::{de::DeserializeOwned, Serialize};

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(row: &[u8]) {
    let Ok(rec) = decode_row::<T>(row) else {
        return;
    };
    let bytes = encode_row(&rec).expect("a decoded row re-encodes");
    let back: T = decode_row(&bytes).expect("a re-encoded row decodes");
    assert_eq!(back, rec);
}

fuzz_target!(|data: &[u8]| {
    let Some((&table, row)) = data.split_first() else {
        return;
    };
    match table % 3 {
        0 => check::<ShareRecord>(row),
        1 => check::<TransferRecord>(row),
        _ => check::<PeerRecord>(row),
    }
});
