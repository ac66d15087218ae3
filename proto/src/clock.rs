//! The one wall clock of ringdrop: unix seconds, as every row, ticket and
//! expiry records them (0 if the system clock is before 1970).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix seconds.
pub fn now() -> i64 {
    unix_secs(SystemTime::now())
}

/// `t` in unix seconds.
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now, in unix milliseconds (for validity shorter than seconds can say).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
