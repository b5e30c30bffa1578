//! Pure address allocation and the host-local-compatible reservation store behind roslan's IPAM.
//!
//! This crate knows nothing about netlink, network namespaces or the CNI environment: it turns range
//! configuration into canonical [`RangeSet`]s ([`range`]), walks them in host-local's round-robin order
//! and reserves addresses ([`allocator`]) in a directory laid out exactly like host-local's
//! ([`store`]). Every file it reads is opened through [`file`], which never blocks on a FIFO and never
//! reads past a bound. Keeping it pure is what lets the same code serve the `roslan` plugin in-process, the
//! standalone `roslan-ipam` binary, and property tests that run without root.

pub mod allocator;
pub mod blocks;
mod error;
pub mod file;
pub mod fnv;
pub mod range;
pub mod store;

#[cfg(test)]
mod proptests;

pub use allocator::{Allocation, allocate, check_disjoint};
pub use error::IpamError;
pub use range::{Range, RangeSet, RangeSpec};
pub use store::{Entry, Free, LockedStore, Owner, PodRef, Store};
