//! Generated gRPC types and services of the ringdropd control API (`ringdrop.v1`).

/// Messages and services of package `ringdrop.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("ringdrop.v1");
}

/// Encoded `FileDescriptorSet` of all ringdrop protos, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ringdrop_descriptor.bin"));

pub mod clock;
pub mod handoff;
pub mod paths;
pub mod place;
pub mod secret;
pub mod state;
pub mod units;
