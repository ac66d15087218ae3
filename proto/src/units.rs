//! Sizes as people write them, shared by the daemon's config and the client.

/// Parses a byte count or rate: `1048576`, `512K`, `100M`, `1.5G`
/// (K/M/G/T are powers of 1024; a trailing `B`, `iB` or `/s` is allowed).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown unit in {s:?}: use K, M, G or T")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 1048576, 512K, 100M, 1.5G)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?} must be a positive size"));
    }
    Ok((n * mult as f64) as u64)
}

/// Parses a rate limit as [`parse_bytes`] does, or `0`, `none` or
/// `unlimited` for no limit (`None`).
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    match s.trim() {
        "0" | "none" | "unlimited" => Ok(None),
        r => parse_bytes(r).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, parse_rate};

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("10M"), Ok(Some(10 << 20)));
        assert_eq!(parse_rate("unlimited"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512K"), Ok(512 << 10));
        assert_eq!(parse_bytes("100M"), Ok(100 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("10MB/s"), Ok(10 << 20));
        assert!(parse_bytes("fast").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-5M").is_err());
        assert!(parse_bytes("5X").is_err());
    }
}
