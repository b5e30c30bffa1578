//! `roslan-install`, the entrypoint of roslan's DaemonSet: it puts the CNI plugin on every node and
//! keeps it there.
//!
//! A CNI plugin is a file on the host that the container runtime (or Multus) executes; Kubernetes
//! has no way to ship one except a pod that writes it into the host's CNI bin dir through a hostPath
//! volume. This program is that pod's process:
//!
//! 1. finds the bin dir under the host-root mount ([`hostpath`]: MicroK8s' snap path or
//!    `/opt/cni/bin`, symbolic links followed *inside* the host root);
//! 2. installs `roslan` (and `roslan-ipam`) atomically, never truncating a file a runtime might be
//!    executing, skipping identical copies, and proving each new copy answers CNI VERSION
//!    ([`files`], [`binaries`]);
//! 3. writes the node-name file that the `nodeRanges` IPAM option reads ([`nodename`]);
//! 4. optionally raises the host-global socket-buffer sysctls DDS needs ([`sysctl`]) and creates the
//!    host shim through which the node reaches its own macvlan pods ([`shim`]);
//! 5. records every change ([`record`]) so that `--uninstall` removes exactly that;
//! 6. re-checks every `--interval` seconds (a MicroK8s snap refresh switches `current` to a new
//!    revision whose bin dir lacks roslan) until SIGTERM, on which it exits 0 at once ([`signals`]).
//!
//! Each step logs one line per action to stderr, saying what and why. The installer is
//! single-threaded and has no async runtime of its own; netlink requests for the shim run on
//! roslan's current-thread runtime.

pub mod binaries;
pub mod blocks;
pub mod cli;
pub mod error;
pub mod files;
pub mod hostpath;
pub mod nodename;
pub mod record;
pub mod shim;
pub mod signals;
pub mod sysctl;

use std::path::{Path, PathBuf};
use std::time::Duration;

use roslan::log::{info, warn};

pub use cli::Args;
pub use error::Error;
use hostpath::HostRoot;
use record::{BinaryRecord, Record, ShimRecord, SysctlRecord};
use shim::ShimSpec;
use signals::Signals;

/// Exit code for a pass or an uninstall that failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code for options that cannot work (clap uses the same for its own errors).
pub const EXIT_USAGE: i32 = 2;

/// The validated options.
#[derive(Clone, Debug)]
pub struct Config {
    /// The raw options.
    pub args: Args,
    /// The host shim, when all of its options are given.
    pub shim: Option<ShimSpec>,
    /// Sysctl floors: (dotted key, minimum).
    pub floors: Vec<(&'static str, u64)>,
}

impl Config {
    /// Checks what clap cannot: options that only make sense together.
    pub fn new(args: Args) -> Result<Config, Error> {
        if let Some(name) = &args.node_name {
            nodename::validate(name)?;
        }
        let shim = match (&args.shim_master, &args.shim_address, args.shim_routes.is_empty()) {
            (None, None, true) => None,
            (Some(master), Some(address), false) => Some(ShimSpec {
                name: args.shim_name.clone(),
                master: master.clone(),
                address: *address,
                routes: args.shim_routes.clone(),
            }),
            (master, address, no_routes) => {
                let missing: Vec<&str> = [
                    (master.is_none(), "--shim-master (ROSLAN_SHIM_MASTER)"),
                    (address.is_none(), "--shim-address (ROSLAN_SHIM_ADDRESS)"),
                    (no_routes, "--shim-route (ROSLAN_SHIM_ROUTES)"),
                ]
                .into_iter()
                .filter_map(|(absent, name)| absent.then_some(name))
                .collect();
                return Err(Error::Usage(format!(
                    "the host shim needs all of --shim-master, --shim-address and --shim-route; missing: {}",
                    missing.join(", ")
                )));
            }
        };
        if let Some(shim) = &shim {
            if shim.name == shim.master {
                return Err(Error::Usage(format!(
                    "--shim-name {} is the master's own name; choose another",
                    shim.name
                )));
            }
            if let Some(route) = shim.routes.iter().find(|r| r.contains(shim.address.ip())) {
                return Err(Error::Usage(format!(
                    "the shim address {} lies inside the pod range {route}: pick a LAN address outside every --shim-route (and outside the IPAM range)",
                    shim.address.ip()
                )));
            }
        }
        if args.lease_blocks && !args.uninstall {
            if args.node_name.is_none() {
                return Err(Error::Usage(
                    "--lease-blocks needs --node-name (ROSLAN_NODE_NAME, from spec.nodeName): Leases are held by the node"
                        .into(),
                ));
            }
            if args.once {
                return Err(Error::Usage(
                    "--lease-blocks keeps the node's headroom while it runs; it cannot be combined with --once".into(),
                ));
            }
            if !args.blocks_file.is_absolute() {
                return Err(Error::Usage(format!(
                    "--blocks-file {} must be an absolute host path",
                    args.blocks_file.display()
                )));
            }
        }
        let floors = [(sysctl::RMEM_MAX, args.rmem_max), (sysctl::WMEM_MAX, args.wmem_max)]
            .into_iter()
            .filter_map(|(key, floor)| floor.map(|f| (key, f)))
            .collect();
        Ok(Config { args, shim, floors })
    }
}

/// The installer's state between passes.
pub struct Installer {
    config: Config,
    host: HostRoot,
    /// The CNI bin dir, a host path.
    bin_dir: PathBuf,
    record: Record,
}

impl Installer {
    /// Opens the host root, picks the bin dir, reads the record and clears temporary files an
    /// interrupted run left.
    pub fn new(config: Config) -> Result<Installer, Error> {
        let host = HostRoot::new(&config.args.host_root)?;
        let (bin_dir, why) = host.cni_bin_dir(config.args.cni_bin_dir.as_deref())?;
        info!(
            "CNI bin dir: {} ({why}; host root {})",
            bin_dir.display(),
            host.root().display()
        );
        let record = Record::load(&host)?;
        let dirs = [
            Some(host.resolve(&bin_dir)?),
            parent(&host.resolve_parent(&config.args.node_name_file)?),
            parent(&host.resolve_parent(Path::new(record::RECORD_PATH))?),
        ];
        for dir in dirs.into_iter().flatten() {
            for temp in files::remove_stale_temps(&dir) {
                info!("removed {} (a temporary file an interrupted run left)", temp.display());
            }
        }
        Ok(Installer {
            config,
            host,
            bin_dir,
            record,
        })
    }

    /// One check of everything. `announce` also logs what needed no change (the first pass does, so
    /// that the log of every start shows the whole state; later passes log only actions). Every
    /// step runs even if an earlier one failed; the error lists the failures.
    pub fn pass(&mut self, announce: bool) -> Result<(), Error> {
        let before = self.record.clone();
        let mut failures = Vec::new();
        let mut step = |result: Result<(), Error>| {
            if let Err(err) = result {
                roslan::log::error!("{err}");
                failures.push(err.to_string());
            }
        };
        for (name, required) in binaries::BINARIES {
            step(self.ensure_binary(name, required, announce));
        }
        step(self.ensure_node_name(announce));
        step(self.ensure_sysctls(announce));
        step(self.ensure_shim(announce));
        if self.record != before {
            step(self.record.save(&self.host));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Steps(failures))
        }
    }

    fn ensure_binary(&mut self, name: &str, required: bool, announce: bool) -> Result<(), Error> {
        let source = self.config.args.source_dir.join(name);
        let bytes = match std::fs::read(&source) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
                if announce {
                    info!(
                        "{name}: not in {}, skipped (this image does not ship it)",
                        source.display()
                    );
                }
                return Ok(());
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::SourceMissing { path: source });
            }
            Err(err) => return Err(Error::io("read", &source)(err)),
        };
        let local_dir = self.host.resolve(&self.bin_dir)?;
        if !local_dir.is_dir() {
            return Err(Error::BinDir {
                host: self.bin_dir.clone(),
                local: local_dir,
            });
        }
        let host_path = self.bin_dir.join(name);
        let local = local_dir.join(name);
        let why = match files::compare(&local, &bytes, binaries::MODE)? {
            files::State::Current => {
                if announce {
                    let versions = binaries::verify(&local)?;
                    info!(
                        "{}: up to date (identical to {}, mode 0755, answers CNI VERSION with {}); not rewritten",
                        host_path.display(),
                        source.display(),
                        versions.join(",")
                    );
                }
                return Ok(());
            }
            files::State::Missing if self.record.binaries.iter().any(|b| b.path == host_path) => {
                "it vanished since it was installed".to_string()
            }
            files::State::Missing => "it was missing".to_string(),
            files::State::Differs(what) => format!("{what} from {}", source.display()),
        };
        // The check runs on the complete temporary file, which the rename then makes the installed
        // file (same directory, bytes, mode and inode): a copy that cannot answer CNI VERSION never
        // replaces one that can.
        let mut versions = Vec::new();
        files::replace(&local_dir, name, &bytes, binaries::MODE, |temp| {
            versions = binaries::verify(temp).map_err(|err| Error::Rejected {
                path: host_path.clone(),
                reason: Box::new(err),
            })?;
            Ok(())
        })?;
        self.record.put_binary(BinaryRecord {
            path: host_path.clone(),
            fingerprint: files::fingerprint(&bytes),
            size: bytes.len() as u64,
        });
        info!(
            "installed {} ({why}; {} bytes from {}, written beside it and renamed into place; answers CNI VERSION with {})",
            host_path.display(),
            bytes.len(),
            source.display(),
            versions.join(",")
        );
        Ok(())
    }

    fn ensure_node_name(&mut self, announce: bool) -> Result<(), Error> {
        let wanted = self.config.args.node_name_file.clone();
        if let Some(old) = self.record.node_name_file.clone().filter(|old| *old != wanted) {
            let local = self.host.resolve_parent(&old)?;
            files::remove(&local)?;
            self.record.node_name_file = None;
            info!(
                "removed {} (the node-name file moved to {})",
                old.display(),
                wanted.display()
            );
        }
        let Some(name) = &self.config.args.node_name else {
            if announce {
                info!(
                    "no --node-name: {} not written (roslan's nodeRanges IPAM needs it; set ROSLAN_NODE_NAME from spec.nodeName)",
                    wanted.display()
                );
            }
            return Ok(());
        };
        let local = self.host.resolve_parent(&wanted)?;
        let content = format!("{name}\n");
        let why = match files::compare(&local, content.as_bytes(), nodename::MODE)? {
            files::State::Current => {
                if announce {
                    info!("{}: already says {name:?}; not rewritten", wanted.display());
                }
                return Ok(());
            }
            files::State::Missing => "it was missing".to_string(),
            files::State::Differs(what) => what,
        };
        let dir = parent(&local).unwrap_or_else(|| PathBuf::from("/"));
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let file_name = wanted.file_name().and_then(|n| n.to_str()).unwrap_or("node-name");
        files::replace(&dir, file_name, content.as_bytes(), nodename::MODE, |_| Ok(()))?;
        self.record.node_name_file = Some(wanted.clone());
        info!(
            "wrote node name {name:?} to {} ({why}; roslan's nodeRanges IPAM reads it)",
            wanted.display()
        );
        Ok(())
    }

    fn ensure_sysctls(&mut self, announce: bool) -> Result<(), Error> {
        let proc_sys = self.config.args.proc_sys.clone();
        let mut failures = Vec::new();
        for &(key, floor) in &self.config.floors {
            match sysctl::ensure_floor(&proc_sys, key, floor) {
                Ok(sysctl::Floor::Unchanged(value)) => {
                    if announce {
                        info!("{key} is {value}, at or above the floor {floor}; unchanged");
                    }
                }
                Ok(sysctl::Floor::Raised(current, set)) => {
                    // Keep the value from before the *first* raise: that is what uninstall restores.
                    let previous = self.record.sysctl(key).map_or(current, |r| r.previous);
                    self.record.sysctls.retain(|r| r.key != key);
                    self.record.sysctls.push(SysctlRecord {
                        key: key.into(),
                        previous,
                        set,
                    });
                    info!(
                        "raised {key} from {current} to {set} (the configured floor: DDS needs large socket buffers; uninstall restores {previous})"
                    );
                }
                Err(err) => failures.push(err),
            }
        }
        // Floors no longer asked for: put the old values back, as --uninstall would.
        let dropped: Vec<SysctlRecord> = self
            .record
            .sysctls
            .iter()
            .filter(|r| !self.config.floors.iter().any(|(key, _)| *key == r.key))
            .cloned()
            .collect();
        for raised in dropped {
            match self.restore_sysctl(&raised, "its floor is no longer configured") {
                Ok(()) => self.record.sysctls.retain(|r| r.key != raised.key),
                Err(err) => failures.push(err),
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(Error::Steps(failures.iter().map(ToString::to_string).collect())),
        }
    }

    fn restore_sysctl(&self, raised: &SysctlRecord, why: &str) -> Result<(), Error> {
        let proc_sys = &self.config.args.proc_sys;
        match sysctl::restore(proc_sys, &raised.key, raised.previous, raised.set)? {
            sysctl::Restore::Restored => info!(
                "restored {} from {} to {} ({why})",
                raised.key, raised.set, raised.previous
            ),
            sysctl::Restore::LeftAlone(now) => warn!(
                "left {} at {now}: it changed since roslan-install set it to {}, so the later change wins ({why})",
                raised.key, raised.set
            ),
        }
        Ok(())
    }

    fn ensure_shim(&mut self, announce: bool) -> Result<(), Error> {
        let wanted = self.config.shim.clone();
        if let Some(old) = self.record.shim.clone()
            && wanted.as_ref().is_none_or(|w| w.name != old.name)
        {
            let what = shim::remove(&old.name)?;
            info!("{what}: the host shim is no longer configured under that name");
            self.record.shim = None;
        }
        let Some(spec) = wanted else {
            return Ok(());
        };
        let actions = shim::ensure(&spec)?;
        if actions.is_empty() {
            if announce {
                info!("host shim {}: up to date; unchanged", spec.describe());
            }
        } else {
            for action in &actions {
                info!("{action}");
            }
        }
        let entry = ShimRecord {
            name: spec.name.clone(),
            master: spec.master.clone(),
            address: spec.address.to_string(),
            routes: spec.routes.iter().map(ToString::to_string).collect(),
        };
        self.record.shim = Some(entry);
        Ok(())
    }

    /// Removes everything the record lists. What fails stays recorded, so a retry finishes the job.
    pub fn uninstall(&mut self) -> Result<(), Error> {
        let mut failures = Vec::new();
        if self.record.is_empty() {
            info!("nothing recorded in {}: nothing to remove", record::RECORD_PATH);
        }
        for entry in self.record.binaries.clone() {
            match self.remove_binary(&entry) {
                Ok(()) => self.record.binaries.retain(|b| b.path != entry.path),
                Err(err) => failures.push(err),
            }
        }
        if let Some(path) = self.record.node_name_file.clone() {
            let removed = self.host.resolve_parent(&path).and_then(|local| files::remove(&local));
            match removed {
                Ok(true) => {
                    info!("removed {}", path.display());
                    self.record.node_name_file = None;
                }
                Ok(false) => {
                    info!("{} is already gone", path.display());
                    self.record.node_name_file = None;
                }
                Err(err) => failures.push(err),
            }
        }
        if self.config.args.lease_blocks {
            let files = blocks::local::NodeFiles::new(self.host.clone(), self.config.args.blocks_file.clone());
            match files.remove() {
                Ok(removed) => {
                    for path in removed {
                        info!(
                            "removed {} (the block agent's file; the node's Leases stay until its Node is deleted)",
                            path.display()
                        );
                    }
                }
                Err(err) => failures.push(err),
            }
        }
        for raised in self.record.sysctls.clone() {
            match self.restore_sysctl(&raised, "uninstall") {
                Ok(()) => self.record.sysctls.retain(|r| r.key != raised.key),
                Err(err) => failures.push(err),
            }
        }
        if let Some(old) = self.record.shim.clone() {
            match shim::remove(&old.name) {
                Ok(what) => {
                    info!("{what}");
                    self.record.shim = None;
                }
                Err(err) => failures.push(err),
            }
        }
        if let Err(err) = self.record.save(&self.host) {
            failures.push(err);
        }
        for err in &failures {
            roslan::log::error!("{err}");
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Steps(failures.iter().map(ToString::to_string).collect()))
        }
    }

    fn remove_binary(&self, entry: &BinaryRecord) -> Result<(), Error> {
        let local = self.host.resolve_parent(&entry.path)?;
        let path = entry.path.display();
        if let Some(dir) = entry
            .path
            .parent()
            .filter(|_| !local.parent().is_some_and(Path::is_dir))
        {
            // Not "already gone": the directory itself is not visible, so nothing can be known.
            return Err(Error::BinDir {
                host: dir.into(),
                local: local.parent().unwrap_or(&local).into(),
            });
        }
        let bytes = match std::fs::read(&local) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                info!("{path} is already gone");
                return Ok(());
            }
            Err(err) => return Err(Error::io("read", &local)(err)),
        };
        if files::fingerprint(&bytes) != entry.fingerprint || bytes.len() as u64 != entry.size {
            warn!("left {path} in place: it changed since roslan-install wrote it, so it is someone else's now");
            return Ok(());
        }
        files::remove(&local)?;
        info!("removed {path} (installed by roslan-install)");
        Ok(())
    }
}

fn parent(path: &Path) -> Option<PathBuf> {
    path.parent().map(Path::to_path_buf)
}

/// The whole program; returns the exit code.
pub fn run(args: Args) -> i32 {
    // Without a log file there is nothing configure could refuse.
    let _ = roslan::log::configure(roslan::log::Level::Info, None, "install: ".into());
    // First, before anything could start a thread: see `signals`.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(err) => {
            roslan::log::error!("{err}");
            return EXIT_FAILED;
        }
    };
    let interval = Duration::from_secs(args.interval);
    let (once, uninstall) = (args.once, args.uninstall);
    let agent = (args.lease_blocks && !uninstall).then(|| blocks::AgentConfig {
        node: args.node_name.clone().unwrap_or_default(),
        namespace: args.lease_namespace.clone(),
        kubeconfig: args.kubeconfig.clone(),
        host_root: args.host_root.clone(),
        blocks_file: args.blocks_file.clone(),
        resync: interval,
        tick: Duration::from_millis(args.blocks_tick_ms),
    });
    let config = match Config::new(args) {
        Ok(config) => config,
        Err(err) => {
            roslan::log::error!("{err}");
            return EXIT_USAGE;
        }
    };
    let mut installer = match Installer::new(config) {
        Ok(installer) => installer,
        Err(err) => {
            roslan::log::error!("{err}");
            return EXIT_FAILED;
        }
    };
    if uninstall {
        let code = match installer.uninstall() {
            Ok(()) => {
                info!("uninstalled everything roslan-install had recorded");
                0
            }
            Err(_) => EXIT_FAILED,
        };
        if once || code != 0 {
            return code;
        }
        // In a DaemonSet an exit would only restart the pod (and log the same again); stay idle.
        info!("idle until SIGTERM (pass --once to exit right away)");
        return wait_for_stop(&signals, None).unwrap_or(0);
    }
    if installer.pass(true).is_err() {
        // Exiting makes the failure visible (CrashLoopBackOff with this log) instead of a Running
        // pod that installed nothing; the kubelet's restart is the retry.
        roslan::log::error!("the first check failed; exiting so that the pod's restarts retry it");
        return EXIT_FAILED;
    }
    if once {
        return 0;
    }
    if let Some(agent) = agent
        && let Err(err) = blocks::spawn(agent)
    {
        roslan::log::error!("cannot start the block agent: {err}");
        return EXIT_FAILED;
    }
    info!("checking again every {}s; SIGTERM or SIGINT stops", interval.as_secs());
    loop {
        if let Some(code) = wait_for_stop(&signals, Some(interval)) {
            return code;
        }
        // Failures are logged by the pass; the next interval retries.
        let _ = installer.pass(false);
    }
}

/// Waits for SIGTERM/SIGINT; `Some(exit code)` if one came (or waiting failed).
fn wait_for_stop(signals: &Signals, timeout: Option<Duration>) -> Option<i32> {
    match signals.wait(timeout) {
        Ok(Some(signal)) => {
            info!("{signal}: exiting; installed files stay in place for the pods that use them");
            Some(0)
        }
        Ok(None) => None,
        Err(err) => {
            roslan::log::error!("{err}");
            Some(EXIT_FAILED)
        }
    }
}
