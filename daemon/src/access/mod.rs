//! Who may reach what from the network: the policy every share is served
//! and listed by ([`policy`]) and the connection slots that keep
//! strangers from crowding out contacts ([`slots`]), and the ring owner's
//! signed roster by which members serve one another ([`roster`]). The
//! local side (who may call what on the control socket) is
//! `crate::authority`.

pub mod policy;
pub mod roster;
pub mod slots;
