//! Black-box test support for roslan: throwaway LANs in network namespaces ([`lan`], [`netns`]), a
//! runner that calls a CNI plugin binary the way a runtime does ([`plugin`]), and the real peers built
//! by `make peers` ([`peers`]) with a control plane made of them ([`apiserver`]), and a cluster of several
//! nodes with their block agents on one LAN ([`cluster`]).
//!
//! The integration tests in `tests/` and the `cni-conformance` runner are built on this; neither
//! links the plugin's code, they only run its binary.

pub use roslan_root_test::root_test;

pub mod apiserver;
pub mod bench;
pub mod cluster;
pub mod conformance;
pub mod container;
pub mod daemon;
pub mod dds;
pub mod forward;
pub mod lan;
pub mod layouts;
pub mod multus;
pub mod netns;
pub mod node;
pub mod one_node;
pub mod peers;
pub mod pki;
pub mod plugin;
pub mod process;
pub mod ros2;
pub mod runtime;
pub mod seed_examples;
pub mod traffic;

pub use lan::{Lan, MultiNodeLan, Pod};
pub use peers::{peer, peer_bin};
pub use plugin::{Call, Reply, reference_bin, roslan_bin};
