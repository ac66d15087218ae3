//! The shape of our small protocols over QUIC: one bounded request, one
//! answer ([`exchange`]).

pub mod exchange;
