//! Ticket decoding: whatever a user pastes is an error value or a ticket
//! that re-encodes to itself, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringdropd::ticket::Ticket;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Even modes: the input is the pasted text. Odd modes: the input is the
    // postcard body, so the fuzzer reaches the decoder without having to
    // discover base32 first.
    let text = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(s) => s.to_string(),
            Err(_) => return,
        }
    } else {
        format!(
            "rdrop{}",
            data_encoding::BASE32_NOPAD
                .encode(rest)
                .to_ascii_lowercase()
        )
    };
    let Ok(ticket) = text.parse::<Ticket>() else {
        return;
    };
    let again = ticket.to_string();
    let back: Ticket = match again.parse() {
        Ok(t) => t,
        Err(e) => panic!("decoded ticket re-encodes to {again:?}, which fails: {e}"),
    };
    assert_eq!(back, ticket, "decode(encode(t)) != t");
});
