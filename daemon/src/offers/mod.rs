//! Offers: files sent to a peer's inbox, and the receipts that come back.
//! The wire side (what two daemons say to each other) is [`protocol`];
//! sending, the inbox, trust and the offers loop are the facade's
//! (`daemon/offers.rs`).

pub mod protocol;
