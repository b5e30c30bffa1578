//! Sticky addresses: which address a pod had last on this network, on this node, so that a restarted
//! pod (a StatefulSet's above all) gets it back when it is free. `ROS_STATIC_PEERS`, Fast DDS
//! discovery-server locators and Cyclone peer lists name addresses; a new one on every restart breaks
//! them.
//!
//! The memory lives in roslan's own area, `<dataDir>/.roslan/<network>/sticky/`, which host-local never
//! reads, so the store stays host-local's byte for byte. Two maps, each a directory of small files:
//! - `pods/<pod key>`: the pod (`namespace/name/interface`) on the first line, then its addresses;
//! - `addresses/<address>`: the key of the pod that had it last.
//!
//! The second map bounds the first: when an address goes to another pod, the previous pod's memory of it
//! is dropped, so there are never more entries than addresses in the range, however many pods come and
//! go. The memory is only a preference: the address must still be free and inside what this node may
//! hand out, and the reservation is the usual exclusive create. Losing it (deleting `.roslan/`) costs
//! stickiness, never correctness; a write that fails is reported and the ADD goes on.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{LockedStore, overwrite, parse_address, read_small, refuse_symlink};
use crate::IpamError;
use crate::fnv::fnv64;

/// A pod's attachment: what Multus and the kubelet pass in CNI_ARGS (`K8S_POD_NAMESPACE`,
/// `K8S_POD_NAME`) and the interface name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// CNI_IFNAME: a pod with two attachments to one network has a memory for each.
    pub ifname: String,
}

impl PodRef {
    /// The first line of its memory file, which also tells apart two pods whose keys hash alike.
    fn label(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.name, self.ifname)
    }

    /// Its file name: readable for Kubernetes names (neither a namespace nor a pod name can hold `_`),
    /// a hash for anything else, so that no value from CNI_ARGS can name a path outside the directory.
    fn key(&self) -> String {
        let dns = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
        };
        let ifname = !self.ifname.is_empty()
            && self
                .ifname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        let readable = format!("{}_{}@{}", self.namespace, self.name, self.ifname);
        if dns(&self.namespace) && dns(&self.name) && ifname && readable.len() < 240 {
            readable
        } else {
            format!("h-{:016x}", fnv64(self.label().as_bytes()))
        }
    }
}

impl LockedStore<'_> {
    fn sticky_dir(&self, map: &str) -> PathBuf {
        self.store
            .data_dir
            .join(".roslan")
            .join(&self.store.network)
            .join("sticky")
            .join(map)
    }

    /// Creates the memory's directories, refusing a link anywhere on the way.
    fn sticky_dirs(&self) -> Result<(PathBuf, PathBuf), IpamError> {
        let root = self.store.data_dir.join(".roslan");
        let network = root.join(&self.store.network);
        let sticky = network.join("sticky");
        let (pods, addresses) = (self.sticky_dir("pods"), self.sticky_dir("addresses"));
        for dir in [&root, &network, &sticky, &pods, &addresses] {
            refuse_symlink(dir)?;
            fs::create_dir_all(dir).map_err(IpamError::io("create directory", dir))?;
        }
        Ok((pods, addresses))
    }

    /// The addresses `pod` had last on this network, on this node (none if it never ran here, or its
    /// addresses went to other pods since).
    pub fn remembered(&self, pod: &PodRef) -> Vec<IpAddr> {
        let Some(text) = read_small(&self.sticky_dir("pods").join(pod.key())) else {
            return Vec::new();
        };
        let mut lines = text.lines();
        if lines.next() != Some(pod.label().as_str()) {
            return Vec::new();
        }
        lines.filter_map(|l| parse_address(l.trim())).collect()
    }

    /// Records that `pod` now has `ips`: its memory is replaced, and any other pod's memory of these
    /// addresses is dropped.
    pub fn remember(&self, pod: &PodRef, ips: &[IpAddr]) -> Result<(), IpamError> {
        if ips.is_empty() {
            return Ok(());
        }
        let (pods, addresses) = self.sticky_dirs()?;
        let key = pod.key();
        for &ip in ips {
            let by_address = addresses.join(ip.to_string());
            if let Some(previous) = read_small(&by_address).map(|t| t.trim().to_string())
                && previous != key
            {
                forget(&pods.join(&previous), ip);
            }
            overwrite(&by_address, format!("{key}\n").as_bytes()).map_err(IpamError::io("write", &by_address))?;
        }
        // Addresses this pod had before and has no longer are no longer its.
        for old in self.remembered(pod).into_iter().filter(|ip| !ips.contains(ip)) {
            let by_address = addresses.join(old.to_string());
            if read_small(&by_address).is_some_and(|t| t.trim() == key) {
                let _ = fs::remove_file(&by_address);
            }
        }
        let mut text = pod.label();
        text.push('\n');
        for ip in ips {
            text.push_str(&format!("{ip}\n"));
        }
        let path = pods.join(&key);
        overwrite(&path, text.as_bytes()).map_err(IpamError::io("write", &path))
    }
}

/// Drops `ip` from the memory file at `path` (the file goes when nothing is left in it).
fn forget(path: &Path, ip: IpAddr) {
    let Some(text) = read_small(path) else { return };
    let mut lines = text.lines();
    let Some(label) = lines.next() else {
        let _ = fs::remove_file(path);
        return;
    };
    let rest: Vec<&str> = lines.filter(|l| parse_address(l.trim()) != Some(ip)).collect();
    if rest.is_empty() {
        let _ = fs::remove_file(path);
    } else {
        let _ = overwrite(path, format!("{label}\n{}\n", rest.join("\n")).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Owner, Store};

    fn pod(name: &str) -> PodRef {
        PodRef {
            namespace: "ros".into(),
            name: name.into(),
            ifname: "net1".into(),
        }
    }

    #[test]
    fn memory_follows_the_address_and_stays_bounded() {
        let data = std::env::temp_dir().join(format!("roslan-sticky-{}", std::process::id()));
        let _ = fs::remove_dir_all(&data);
        let store = Store::open(&data, "net").unwrap();
        let locked = store.lock().unwrap();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        assert!(locked.remembered(&pod("talker-0")).is_empty());
        locked.remember(&pod("talker-0"), &[a]).unwrap();
        assert_eq!(locked.remembered(&pod("talker-0")), [a]);
        // The address goes to another pod: the first forgets it.
        locked.remember(&pod("listener-0"), &[a]).unwrap();
        assert!(locked.remembered(&pod("talker-0")).is_empty());
        assert_eq!(locked.remembered(&pod("listener-0")), [a]);
        // A pod that moves to another address releases its claim on the old one.
        locked.remember(&pod("listener-0"), &[b]).unwrap();
        assert!(!data.join(".roslan/net/sticky/addresses/10.0.0.5").exists());
        let files = fs::read_dir(data.join(".roslan/net/sticky/pods")).unwrap().count();
        assert_eq!(files, 1);
        // Hostile names are hashed, never paths.
        let odd = PodRef {
            namespace: "../..".into(),
            name: "x/y".into(),
            ifname: "net1".into(),
        };
        assert!(odd.key().starts_with("h-"));
        locked.remember(&odd, &[a]).unwrap();
        assert_eq!(locked.remembered(&odd), [a]);
        // The store itself is untouched: host-local's directory holds no memory.
        assert!(
            fs::read_dir(data.join("net"))
                .unwrap()
                .all(|e| e.unwrap().file_name() == "lock")
        );
        let _ = locked.find(&Owner::new("c", "net1"));
        drop(locked);
        fs::remove_dir_all(&data).unwrap();
    }
}
