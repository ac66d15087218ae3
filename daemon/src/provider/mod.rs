//! The serving side: our protocol handler on the blobs ALPN and the gate
//! that decides every request against the registry.

mod gate;
mod handler;
mod serve;
mod uploads;

pub use gate::{spawn_gate, within_offsets, GateStats};
pub use handler::BlobsGate;
pub use serve::Sources;
pub use uploads::{Upload, Uploads};
