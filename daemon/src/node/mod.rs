//! The iroh side of the node: identity, endpoint and the port kept across restarts.

mod endpoint;

pub use endpoint::{bind_endpoint, NodeError};
