//! A Multus-style driver: attaches a pod to its cluster network and then to additional networks the
//! way thin Multus 3.9 (MicroK8s' addon) does, through libcni's rules, so that roslan is exercised
//! as the delegate it is in production.
//!
//! What is reproduced (multus-cni v3.9 `pkg/multus`, libcni v0.8.1 `libcni/api.go`):
//! - delegates are added in order: the cluster network as `eth0`, then additional networks as
//!   `net1`, `net2`, ...; before each ADD the interface name must not exist in the pod
//!   (`validateIfName`);
//! - every delegate gets `CNI_ARGS=IgnoreUnknown=true;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;
//!   K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..` and `CNI_PATH=<multus binDir>:<runtime CNI_PATH>`;
//!   the plugin binary is the first `type` found along CNI_PATH;
//! - a configuration with `plugins` is a conflist (`AddNetworkList`: each plugin gets the list's
//!   `name` and `cniVersion` and, after the first, the previous result as `prevResult`); one with
//!   `type` is a single configuration (`AddNetwork`);
//! - each attachment's result is cached as libcni does, one file per attachment:
//!   `<cacheDir>/results/<network>-<containerID>-<ifname>` (`cniCacheV1`), and the pod's delegate
//!   list is saved under `<cacheDir>/<containerID>`;
//! - a failed ADD tears down the failed delegate and every earlier one, in reverse, ignoring errors;
//! - DEL reads the saved delegate list and deletes in reverse order; from cniVersion 0.4.0 on the
//!   cached result goes along as `prevResult` (libcni sends none for older versions), and the cache
//!   file is removed afterwards; CHECK (0.4.0 and later only) always sends the cached result.
//!
//! Plugins run in the node namespace, as the runtime (and so Multus) does.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::lan::Pod;
use crate::netns::Netns;
use crate::plugin::{Call, REFERENCE_DIR, Reply, roslan_bin};

/// Kubernetes' view of a pod: its sandbox (namespace and infra container ID) and its identity.
#[derive(Debug)]
pub struct PodRef<'a> {
    /// The sandbox.
    pub pod: &'a Pod,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

impl PodRef<'_> {
    /// The CNI_ARGS Multus builds for every delegate (`types.LoadCNIRuntimeConf`).
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.pod.id, self.uid
        )
    }
}

/// One attachment made by [`Multus::add`].
#[derive(Clone, Debug)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The pod's interface.
    pub ifname: String,
    /// The result the delegate printed (the last plugin's, for a conflist).
    pub result: Value,
}

/// Every plugin invocation, in order: for assertions and for failure messages.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// CNI_COMMAND.
    pub command: String,
    /// The plugin's `type`.
    pub plugin: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_ARGS.
    pub args: String,
    /// The configuration on stdin.
    pub stdin: Value,
    /// What the plugin answered.
    pub reply: Reply,
}

/// The driver: a Multus binDir (holding roslan), the runtime's CNI_PATH behind it, and a cache dir.
#[derive(Debug)]
pub struct Multus<'a> {
    node: &'a Netns,
    bin_dir: PathBuf,
    runtime_path: String,
    cache_dir: PathBuf,
    log: std::sync::Mutex<Vec<Invocation>>,
}

impl<'a> Multus<'a> {
    /// A driver running plugins in `node`, with its binDir and cache under `dir` (which must belong
    /// to the test): `dir/multus-bin` holds `roslan` (a symbolic link to the built binary), the
    /// runtime's CNI_PATH is Debian's reference plugins, and `dir/multus-cache` stands for
    /// `/var/lib/cni/multus`.
    pub fn new(node: &'a Netns, dir: &Path) -> Multus<'a> {
        let bin_dir = dir.join("multus-bin");
        std::fs::create_dir_all(&bin_dir).expect("create multus bin dir");
        let link = bin_dir.join("roslan");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(roslan_bin(), &link).expect("link roslan into the multus bin dir");
        let cache_dir = dir.join("multus-cache");
        std::fs::create_dir_all(cache_dir.join("results")).expect("create cache dir");
        Multus {
            node,
            bin_dir,
            runtime_path: REFERENCE_DIR.to_string(),
            cache_dir,
            log: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// CNI_PATH as Multus passes it: its binDir first.
    pub fn cni_path(&self) -> String {
        format!("{}:{}", self.bin_dir.display(), self.runtime_path)
    }

    /// The cache directory (Multus' `cniDir`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// libcni's cache file of one attachment.
    pub fn result_file(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Every file in the cache (results and delegate lists), relative names.
    pub fn cached_files(&self) -> Vec<String> {
        let mut names = Vec::new();
        for dir in [self.cache_dir.clone(), self.cache_dir.join("results")] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_file()) {
                        names.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
        names.sort();
        names
    }

    /// Every plugin invocation so far.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The plugin binary for `type`: the first match along CNI_PATH (libcni's `FindInPath`).
    fn find(&self, plugin: &str) -> Result<PathBuf, String> {
        assert!(
            !plugin.is_empty() && !plugin.contains('/'),
            "a plugin type is a name: {plugin:?}"
        );
        self.cni_path()
            .split(':')
            .map(|dir| Path::new(dir).join(plugin))
            .find(|p| p.exists())
            .ok_or_else(|| format!("failed to find plugin {plugin:?} in path [{}]", self.cni_path()))
    }

    fn invoke(&self, command: &str, pod: &PodRef<'_>, ifname: &str, conf: &Value) -> Result<Option<Value>, String> {
        let plugin = conf["type"].as_str().unwrap_or_default().to_string();
        let binary = self.find(&plugin)?;
        let mut call = Call::new(binary, command, &pod.pod.id, &pod.pod.path(), ifname, conf).args(&pod.cni_args());
        call.cni_path = self.cni_path();
        let reply = call.run_in(self.node);
        let ok = reply.status == 0;
        let result = reply.json.clone();
        let message = format!("{command} {plugin} {ifname}: {reply}");
        if let Ok(mut log) = self.log.lock() {
            log.push(Invocation {
                command: command.to_string(),
                plugin,
                ifname: ifname.to_string(),
                args: pod.cni_args(),
                stdin: conf.clone(),
                reply,
            });
        }
        if ok { Ok(result) } else { Err(message) }
    }

    /// The configurations libcni hands each plugin of a delegate, in order (`buildOneConfig`).
    fn plugin_confs(delegate: &Value) -> Vec<Value> {
        match delegate.get("plugins").and_then(Value::as_array) {
            Some(plugins) => plugins
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    p["name"] = delegate["name"].clone();
                    p["cniVersion"] = delegate["cniVersion"].clone();
                    p
                })
                .collect(),
            None => vec![delegate.clone()],
        }
    }

    fn version_at_least_0_4(delegate: &Value) -> bool {
        let version = delegate["cniVersion"].as_str().unwrap_or("0.1.0");
        let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
        parts >= vec![0, 4, 0]
    }

    /// ADD of one delegate (AddNetwork or AddNetworkList), caching its result.
    fn add_delegate(&self, pod: &PodRef<'_>, delegate: &Value, ifname: &str) -> Result<Value, String> {
        let mut prev: Option<Value> = None;
        for mut conf in Self::plugin_confs(delegate) {
            if let Some(prev) = &prev {
                conf["prevResult"] = prev.clone();
            }
            let result = self
                .invoke("ADD", pod, ifname, &conf)?
                .ok_or_else(|| format!("ADD {ifname}: the plugin printed no result"))?;
            prev = Some(result);
        }
        let result = prev.unwrap_or(Value::Null);
        let network = delegate["name"].as_str().unwrap_or_default();
        let cached = json!({
            "kind": "cniCacheV1",
            "containerId": pod.pod.id,
            "config": base64(&serde_json::to_vec(delegate).expect("serialise")),
            "ifName": ifname,
            "networkName": network,
            "cniArgs": pod.cni_args().split(';').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "result": result,
        });
        std::fs::write(
            self.result_file(network, &pod.pod.id, ifname),
            serde_json::to_vec(&cached).expect("serialise"),
        )
        .map_err(|e| format!("cache the result: {e}"))?;
        Ok(result)
    }

    fn cached_result(&self, pod: &PodRef<'_>, delegate: &Value, ifname: &str) -> Option<Value> {
        let network = delegate["name"].as_str().unwrap_or_default();
        let text = std::fs::read(self.result_file(network, &pod.pod.id, ifname)).ok()?;
        let cached: Value = serde_json::from_slice(&text).ok()?;
        cached.get("result").cloned()
    }

    /// DEL of one delegate (DelNetwork or DelNetworkList), plugins in reverse, then the cache file.
    fn del_delegate(&self, pod: &PodRef<'_>, delegate: &Value, ifname: &str) -> Result<(), String> {
        let prev = if Self::version_at_least_0_4(delegate) {
            self.cached_result(pod, delegate, ifname)
        } else {
            None
        };
        for mut conf in Self::plugin_confs(delegate).into_iter().rev() {
            if let Some(prev) = &prev {
                conf["prevResult"] = prev.clone();
            }
            self.invoke("DEL", pod, ifname, &conf)?;
        }
        let network = delegate["name"].as_str().unwrap_or_default();
        let _ = std::fs::remove_file(self.result_file(network, &pod.pod.id, ifname));
        Ok(())
    }

    fn delegates_file(&self, pod: &PodRef<'_>) -> PathBuf {
        self.cache_dir.join(&pod.pod.id)
    }

    /// Attaches `pod` to `cluster` as eth0 and to each of `networks` as net1, net2, ... Returns the
    /// attachments, or the failing delegate's error after tearing down what was added.
    pub fn add(&self, pod: &PodRef<'_>, cluster: &Value, networks: &[&Value]) -> Result<Vec<Attachment>, String> {
        let mut delegates = vec![(cluster.clone(), "eth0".to_string())];
        for (i, net) in networks.iter().enumerate() {
            delegates.push(((*net).clone(), format!("net{}", i + 1)));
        }
        let saved: Vec<Value> = delegates
            .iter()
            .map(|(conf, ifname)| json!({"conf": conf, "ifName": ifname}))
            .collect();
        std::fs::write(self.delegates_file(pod), serde_json::to_vec(&saved).expect("serialise"))
            .map_err(|e| format!("save delegates: {e}"))?;
        let mut attachments = Vec::new();
        for (idx, (delegate, ifname)) in delegates.iter().enumerate() {
            let outcome = if pod.pod.ns.has_link(ifname) {
                Err(format!("validateIfName: interface name {ifname} already exists"))
            } else {
                self.add_delegate(pod, delegate, ifname)
            };
            match outcome {
                Ok(result) => attachments.push(Attachment {
                    network: delegate["name"].as_str().unwrap_or_default().to_string(),
                    ifname: ifname.clone(),
                    result,
                }),
                Err(err) => {
                    for (delegate, ifname) in delegates[..=idx].iter().rev() {
                        let _ = self.del_delegate(pod, delegate, ifname);
                    }
                    let _ = std::fs::remove_file(self.delegates_file(pod));
                    return Err(err);
                }
            }
        }
        Ok(attachments)
    }

    fn saved_delegates(&self, pod: &PodRef<'_>) -> Result<Vec<(Value, String)>, String> {
        let text = std::fs::read(self.delegates_file(pod)).map_err(|e| format!("read delegates: {e}"))?;
        let saved: Vec<Value> = serde_json::from_slice(&text).map_err(|e| format!("parse delegates: {e}"))?;
        Ok(saved
            .into_iter()
            .map(|d| (d["conf"].clone(), d["ifName"].as_str().unwrap_or_default().to_string()))
            .collect())
    }

    /// CHECK of every attachment with its cached result (libcni refuses CHECK before 0.4.0).
    pub fn check(&self, pod: &PodRef<'_>) -> Result<(), String> {
        for (delegate, ifname) in self.saved_delegates(pod)? {
            if !Self::version_at_least_0_4(&delegate) {
                return Err(format!(
                    "configuration version {} does not support the CHECK command",
                    delegate["cniVersion"]
                ));
            }
            let prev = self
                .cached_result(pod, &delegate, &ifname)
                .ok_or_else(|| format!("no cached result for {ifname}"))?;
            for mut conf in Self::plugin_confs(&delegate) {
                conf["prevResult"] = prev.clone();
                self.invoke("CHECK", pod, &ifname, &conf)?;
            }
        }
        Ok(())
    }

    /// Detaches `pod` from every network, in reverse order of attachment. Every delegate is
    /// deleted even if an earlier one fails; the first error is returned (Multus then fails the
    /// pod's teardown).
    pub fn del(&self, pod: &PodRef<'_>) -> Result<(), String> {
        let mut first_error = None;
        for (delegate, ifname) in self.saved_delegates(pod)?.iter().rev() {
            if let Err(err) = self.del_delegate(pod, delegate, ifname) {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            None => {
                let _ = std::fs::remove_file(self.delegates_file(pod));
                Ok(())
            }
            Some(err) => Err(err),
        }
    }
}

/// Standard base64 with padding (libcni stores the configuration's bytes as Go's `[]byte` in JSON).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), expected);
        }
    }
}
