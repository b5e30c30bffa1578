//! Black-box test support for roslan: throwaway LANs in network namespaces ([`lan`], [`netns`]) and
//! a runner that calls a CNI plugin binary the way a runtime does ([`plugin`]).
//!
//! The integration tests in `tests/` and the `cni-conformance` runner are built on this; neither
//! links the plugin's code, they only run its binary.

pub mod bench;
pub mod conformance;
pub mod container;
pub mod dds;
pub mod lan;
pub mod layouts;
pub mod multus;
pub mod netns;
pub mod peer;
pub mod plugin;
pub mod ros2;
pub mod runtime;
pub mod traffic;

pub use lan::{Lan, MultiNodeLan, Pod};
pub use plugin::{Call, Reply, reference_bin, roslan_bin};
