//! Rings: named groups of peers, and the invites that make members. The
//! rows are the registry's; creating, listing and membership are the
//! facade's (`daemon/access.rs`); the invite protocol is [`invites`].

pub mod invites;
