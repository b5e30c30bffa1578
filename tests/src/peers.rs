//! The real peers `make peers` builds from the Go module proxy (tests/peers/): Multus 3.9 and 4, whereabouts,
//! the upstream reference plugins, Kubernetes 1.34 and crictl.
//!
//! They live in a cache outside the clone (`ROSLAN_PEERS_DIR`, default `/var/cache/roslan/peers`), so a
//! fresh clone reuses them; `manifest.json` there says which version directory each family's binaries are
//! in. A test that needs a peer that is not built fails with the command that builds it: a missing peer
//! is never a skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// The cache `make peers` fills when `ROSLAN_PEERS_DIR` is not set.
pub const DEFAULT_PEERS_DIR: &str = "/var/cache/roslan/peers";

/// One family of peers: one Go module at one version (`multus-v3`, `kubernetes`, `plugins`...).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The directory under tests/peers/ that pins it.
    pub family: String,
    /// The upstream module (`gopkg.in/k8snetworkplumbingwg/multus-cni.v3`).
    pub module: String,
    /// The pinned version (`v3.9.3`).
    pub version: String,
    /// Its version directory in the cache.
    pub dir: PathBuf,
    /// Binary name to path.
    pub bins: BTreeMap<String, PathBuf>,
    /// Files copied from the module (CRDs, deployment manifests): subdirectory name to path.
    pub files: BTreeMap<String, PathBuf>,
}

impl Peer {
    /// The directory holding this family's binaries (a CNI_PATH for the plugins).
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// A binary of this family; panics when it is not in the cache.
    pub fn bin(&self, name: &str) -> PathBuf {
        let path = self.bins.get(name).unwrap_or_else(|| {
            panic!(
                "peer family {} has no binary {name} (it has {:?})",
                self.family,
                self.bins.keys()
            )
        });
        assert!(path.exists(), "{} is missing: {RUN_MAKE_PEERS}", path.display());
        path.clone()
    }

    /// A directory of files copied from the module (for example whereabouts' `crds`).
    pub fn files(&self, subdir: &str) -> PathBuf {
        let path = self.files.get(subdir).unwrap_or_else(|| {
            panic!(
                "peer family {} copies no {subdir} (it has {:?})",
                self.family,
                self.files.keys()
            )
        });
        assert!(path.is_dir(), "{} is missing: {RUN_MAKE_PEERS}", path.display());
        path.clone()
    }
}

const RUN_MAKE_PEERS: &str = "run `make peers` (as root, or with ROSLAN_PEERS_DIR set) to build the test peers";

/// Where the peers are cached.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("ROSLAN_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PEERS_DIR))
}

fn manifest() -> &'static Result<BTreeMap<String, Peer>, String> {
    static MANIFEST: OnceLock<Result<BTreeMap<String, Peer>, String>> = OnceLock::new();
    MANIFEST.get_or_init(|| load(&peers_dir().join("manifest.json")))
}

fn load(path: &Path) -> Result<BTreeMap<String, Peer>, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let json: Value = serde_json::from_str(&text).map_err(|err| format!("{} is not JSON: {err}", path.display()))?;
    let families = json
        .as_object()
        .ok_or_else(|| format!("{} is not a JSON object", path.display()))?;
    let paths = |v: &Value| -> BTreeMap<String, PathBuf> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, p)| Some((k.clone(), PathBuf::from(p.as_str()?))))
                    .collect()
            })
            .unwrap_or_default()
    };
    let text_of = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    Ok(families
        .iter()
        .map(|(family, v)| {
            let peer = Peer {
                family: family.clone(),
                module: text_of(v, "module"),
                version: text_of(v, "version"),
                dir: PathBuf::from(text_of(v, "dir")),
                bins: paths(&v["bin"]),
                files: paths(&v["files"]),
            };
            (family.clone(), peer)
        })
        .collect())
}

/// A family of peers by its directory name under tests/peers/ (`multus-v3`, `multus-v4`, `whereabouts`,
/// `plugins`, `kubernetes`, `cri-tools`); panics with the command that builds it when it is absent.
pub fn peer(family: &str) -> Peer {
    let families = manifest()
        .as_ref()
        .unwrap_or_else(|err| panic!("{err}: {RUN_MAKE_PEERS}"));
    families
        .get(family)
        .cloned()
        .unwrap_or_else(|| panic!("no peer family {family} in the manifest: {RUN_MAKE_PEERS}"))
}

/// A peer binary: `family/name` (`multus-v3/multus`, `plugins/macvlan`), or a bare name that only one
/// family has (`kube-apiserver`, `crictl`, `multus-shim`). Panics with "run `make peers`" when it is not
/// built, and when a bare name is ambiguous (`multus` is in both Multus families).
pub fn peer_bin(name: &str) -> PathBuf {
    if let Some((family, bin)) = name.split_once('/') {
        return peer(family).bin(bin);
    }
    let families = manifest()
        .as_ref()
        .unwrap_or_else(|err| panic!("{err}: {RUN_MAKE_PEERS}"));
    let owners: Vec<&Peer> = families.values().filter(|p| p.bins.contains_key(name)).collect();
    match owners.as_slice() {
        [one] => one.bin(name),
        [] => panic!("no peer binary {name} in the manifest: {RUN_MAKE_PEERS}"),
        many => panic!(
            "peer binary {name} is in several families ({:?}): name it as family/{name}",
            many.iter().map(|p| &p.family).collect::<Vec<_>>()
        ),
    }
}
