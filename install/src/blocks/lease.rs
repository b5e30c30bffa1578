//! One `coordination.k8s.io/v1` Lease per block: its name, labels and object.
//!
//! The name is derived from the network and the block alone, so every node that wants a block asks to
//! create the *same* object: the API server lets exactly one create succeed (409 Conflict for the rest),
//! which is the whole race protocol. The holder is the node name; the owner reference is the Node
//! object, so Kubernetes' garbage collector deletes a deleted node's Leases and its blocks become free
//! for the others. There is no lease duration and no renewal: a robot cut off from the control plane
//! keeps its pods and their addresses, so its blocks must not expire under it.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use roslan_ipam_core::fnv::fnv64;

/// Label: the network (its name made label-safe).
pub const NETWORK_LABEL: &str = "roslan.io/network";
/// Label: the block (`10-77-1-16-28`).
pub const BLOCK_LABEL: &str = "roslan.io/block";
/// Label: the holding node, so that one list finds a node's Leases.
pub const NODE_LABEL: &str = "roslan.io/node";
/// Annotation: the network's exact name (labels cannot hold every name).
pub const NETWORK_ANNOTATION: &str = "roslan.io/network";
/// Annotation: the block in CIDR form.
pub const BLOCK_ANNOTATION: &str = "roslan.io/block";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "roslan-install");

/// `text` as a DNS label-ish token of at most `max` characters: lower case, `-` for anything else,
/// and a hash suffix whenever that changed the text, so two different names never meet.
fn safe(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = out.trim_matches('-').to_string();
    if trimmed != text || trimmed.len() > max || trimmed.is_empty() {
        out = trimmed;
        out.truncate(max.saturating_sub(17));
        let hash = format!("{:016x}", fnv64(text.as_bytes()));
        out = if out.is_empty() {
            hash
        } else {
            format!("{}-{hash}", out.trim_matches('-'))
        };
    }
    out
}

/// The block as a name token: `10.77.1.16/28` is `10-77-1-16-28`, `fd00::10/124` is `fd00--10-124`.
pub fn block_token(block: IpNetwork) -> String {
    block
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// The network as a label value (at most 63 characters).
pub fn network_label(network: &str) -> String {
    safe(network, 63)
}

/// The node as a label value (node names may be 253 characters, label values 63).
pub fn node_label(node: &str) -> String {
    if node.len() <= 63 && node.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        node.to_string()
    } else {
        safe(node, 63)
    }
}

/// The Lease's name: `<network>.<block>`, a valid object name for any network name.
pub fn lease_name(network: &str, block: IpNetwork) -> String {
    format!("{}.{}", safe(network, 150), block_token(block))
}

/// The Node the Lease belongs to (its name and uid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// The node name, which is also the holder identity.
    pub name: String,
    /// Its uid: an owner reference must name the object, not just a name that a new node may reuse.
    pub uid: String,
}

/// A new Lease of `block` of `network` for `node`.
pub fn new_lease(namespace: &str, network: &str, block: IpNetwork, node: &NodeRef, now: MicroTime) -> Lease {
    let labels = BTreeMap::from([
        (NETWORK_LABEL.to_string(), network_label(network)),
        (BLOCK_LABEL.to_string(), block_token(block)),
        (NODE_LABEL.to_string(), node_label(&node.name)),
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
    ]);
    let annotations = BTreeMap::from([
        (NETWORK_ANNOTATION.to_string(), network.to_string()),
        (BLOCK_ANNOTATION.to_string(), block.to_string()),
    ]);
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(network, block)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.name.clone(),
                uid: node.uid.clone(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            acquire_time: Some(now),
            ..LeaseSpec::default()
        }),
    }
}

/// What a Lease read back from the API says: (network, block, holder), when it is one of ours.
pub fn read_lease(lease: &Lease) -> Option<(String, IpNetwork, String)> {
    let annotations = lease.metadata.annotations.as_ref()?;
    let network = annotations.get(NETWORK_ANNOTATION)?.clone();
    let block: IpNetwork = annotations.get(BLOCK_ANNOTATION)?.parse().ok()?;
    let holder = lease.spec.as_ref()?.holder_identity.clone()?;
    // A Lease whose name does not match its annotations was not made by an agent: not a block.
    (lease.metadata.name.as_deref() == Some(lease_name(&network, block).as_str())).then_some((network, block, holder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct() {
        let block: IpNetwork = "10.77.1.16/28".parse().unwrap();
        assert_eq!(lease_name("ros-lan", block), "ros-lan.10-77-1-16-28");
        assert_eq!(block_token("fd00::10/124".parse().unwrap()), "fd00--10-124");
        let odd = lease_name("ROS_LAN", block);
        assert!(odd.starts_with("ros-lan-"), "{odd}");
        assert_ne!(odd, lease_name("ros-lan", block));
        assert_ne!(lease_name("ros lan", block), lease_name("ros_lan", block));
        let long = lease_name(&"n".repeat(300), block);
        assert!(long.len() <= 253, "{}", long.len());
        for name in [odd, long, lease_name("-", block)] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c)),
                "{name}"
            );
            assert!(name.chars().next().unwrap().is_ascii_alphanumeric(), "{name}");
        }
        assert_eq!(node_label("robot-1"), "robot-1");
        assert!(node_label(&format!("{}.example.com", "a".repeat(70))).len() <= 63);
    }

    #[test]
    fn a_new_lease_reads_back() {
        let block: IpNetwork = "10.77.1.16/28".parse().unwrap();
        let node = NodeRef {
            name: "robot-1".into(),
            uid: "u-1".into(),
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let lease = new_lease("roslan", "ros-lan", block, &node, now);
        assert_eq!(read_lease(&lease), Some(("ros-lan".into(), block, "robot-1".into())));
        let owner = &lease.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "u-1"));
        assert_eq!(lease.metadata.labels.as_ref().unwrap()[NODE_LABEL], "robot-1");
    }
}
