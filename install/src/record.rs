//! What this installer put on the node, kept on the node.
//!
//! --uninstall must remove exactly what was installed and nothing else: the CNI bin dir is shared
//! with Calico, Multus and the reference plugins, and a sysctl is only to be restored if the
//! installer raised it. Guessing from names would get both wrong, so every change is recorded as it
//! is made, in a small JSON file next to the node-name file (host path
//! `/var/lib/roslan/installed.json`), written atomically like everything else.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::files;
use crate::hostpath::HostRoot;

/// The record's host path.
pub const RECORD_PATH: &str = "/var/lib/roslan/installed.json";

/// The current format.
const FORMAT: u32 = 1;

/// Everything installed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Format version, for a future installer reading an old record.
    #[serde(default)]
    pub format: u32,
    /// Binaries written.
    #[serde(default)]
    pub binaries: Vec<BinaryRecord>,
    /// The node-name file written (host path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name_file: Option<PathBuf>,
    /// Sysctls raised.
    #[serde(default)]
    pub sysctls: Vec<SysctlRecord>,
    /// The host shim created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim: Option<ShimRecord>,
}

/// One binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryRecord {
    /// Host path.
    pub path: PathBuf,
    /// [`files::fingerprint`] of the bytes written.
    pub fingerprint: String,
    /// Size in bytes.
    pub size: u64,
}

/// One raised sysctl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SysctlRecord {
    /// Dotted key.
    pub key: String,
    /// The value before the installer first raised it.
    pub previous: u64,
    /// The value the installer set.
    pub set: u64,
}

/// The host shim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimRecord {
    /// Interface name.
    pub name: String,
    /// Its master.
    pub master: String,
    /// Its address.
    pub address: String,
    /// Routes through it.
    pub routes: Vec<String>,
}

impl Record {
    /// Reads the record; a missing one is an empty record.
    pub fn load(host: &HostRoot) -> Result<Record, Error> {
        let local = host.resolve(Path::new(RECORD_PATH))?;
        let bad = |detail: String| Error::Record {
            path: RECORD_PATH.into(),
            detail,
        };
        match fs::read(&local) {
            Ok(bytes) => {
                let record: Record =
                    serde_json::from_slice(&bytes).map_err(|err| bad(format!("not a valid record: {err}")))?;
                if record.format > FORMAT {
                    return Err(bad(format!(
                        "written by a newer roslan-install (format {}, this one reads {FORMAT}); use that version",
                        record.format
                    )));
                }
                Ok(record)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Record::default()),
            Err(err) => Err(bad(format!("cannot read it: {err}"))),
        }
    }

    /// Writes the record atomically; an empty record removes the file.
    pub fn save(&self, host: &HostRoot) -> Result<(), Error> {
        let local = host.resolve_parent(Path::new(RECORD_PATH))?;
        if self.is_empty() {
            files::remove(&local)?;
            return Ok(());
        }
        let dir = local.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        let mut record = self.clone();
        record.format = FORMAT;
        let mut text = serde_json::to_string_pretty(&record).map_err(|err| Error::Record {
            path: RECORD_PATH.into(),
            detail: format!("cannot encode it: {err}"),
        })?;
        text.push('\n');
        let name = local.file_name().and_then(|n| n.to_str()).unwrap_or("installed.json");
        files::replace(dir, name, text.as_bytes(), 0o644, |_| Ok(()))
    }

    /// True if nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.binaries.is_empty() && self.node_name_file.is_none() && self.sysctls.is_empty() && self.shim.is_none()
    }

    /// Records a binary written at `path`, replacing an older entry for the same path.
    pub fn put_binary(&mut self, entry: BinaryRecord) {
        self.binaries.retain(|b| b.path != entry.path);
        self.binaries.push(entry);
    }

    /// The entry for a sysctl, if the installer raised it.
    pub fn sysctl(&self, key: &str) -> Option<&SysctlRecord> {
        self.sysctls.iter().find(|s| s.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_empty_means_no_file() {
        let dir = std::env::temp_dir().join(format!("roslan-install-unit-record-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let host = HostRoot::new(&dir).unwrap();
        assert_eq!(Record::load(&host).unwrap(), Record::default());
        let mut record = Record::default();
        record.put_binary(BinaryRecord {
            path: "/opt/cni/bin/roslan".into(),
            fingerprint: "00".into(),
            size: 1,
        });
        record.put_binary(BinaryRecord {
            path: "/opt/cni/bin/roslan".into(),
            fingerprint: "01".into(),
            size: 2,
        });
        record.sysctls.push(SysctlRecord {
            key: "net.core.rmem_max".into(),
            previous: 212_992,
            set: 4_194_304,
        });
        record.save(&host).unwrap();
        let loaded = Record::load(&host).unwrap();
        assert_eq!(loaded.binaries.len(), 1);
        assert_eq!(loaded.binaries[0].fingerprint, "01");
        assert_eq!(loaded.format, FORMAT);
        assert_eq!(loaded.sysctl("net.core.rmem_max").unwrap().previous, 212_992);
        Record::default().save(&host).unwrap();
        assert!(!dir.join("var/lib/roslan/installed.json").exists());
        fs::write(dir.join("var/lib/roslan/installed.json"), "{not json").unwrap();
        let err = Record::load(&host).unwrap_err().to_string();
        assert!(err.contains("move it away"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
