//! The block agent (`--lease-blocks`): per-node address blocks leased through the Kubernetes API, so
//! that one NetworkAttachmentDefinition on many nodes never hands one address to two pods, while no pod
//! start depends on the API server.
//!
//! Each look (every tick, 1 s) the agent counts what the node's pods hold in the blocks it has ([`local`])
//! and decides ([`plan`]) whether to lease another block or give one back. Leasing is a plain create of
//! the block's Lease ([`lease`], [`api`]): the API server lets exactly one of several racing nodes have
//! it. The node's blocks go to the blocks file, which ADD reads (`nodeBlocks.file`); the agent's state
//! goes to the status file next to it, which `roslan doctor` reads.
//!
//! Every `--interval` the agent also re-reads the cluster: the NetworkAttachmentDefinitions with
//! `nodeBlocks`, this node's Node object and its Leases, and reconciles them with the blocks file:
//! Leases it holds but the file lacks (a crash between create and write) are adopted; blocks the file
//! lists without a Lease are leased again, or dropped if another node has them or the Node object is
//! gone (the garbage collector freed them). When the API server does not answer, the node keeps
//! allocating from the blocks it has, the agent retries with backoff (1 s doubling to 30 s), logs each
//! failure and says so in the status file.

pub mod api;
pub mod lease;
pub mod local;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use roslan::config::{BuiltinIpam, IpamConf, NetConf};
use roslan::log::{info, warn};
use roslan_ipam_core::RangeSet;
use roslan_ipam_core::blocks::file::{AgentStatus, ApiState, NodeBlocks};
use roslan_ipam_core::blocks::{blocks as blocks_of, capacity_in};
use serde_json::Value;

use crate::hostpath::HostRoot;
use api::{ApiError, Cluster, Created, HeldLease};
use lease::NodeRef;
use local::NodeFiles;
use plan::{BlockUse, Decision, Policy};

/// The shortest and longest wait before retrying an API server that did not answer.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the status file is rewritten when nothing changed, so that a stale one means a dead agent.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Creates tried per look beyond the blocks wanted, when other nodes win the races.
const EXTRA_TRIES: usize = 8;

/// What the agent needs to know.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name (the holder of its Leases).
    pub node: String,
    /// The Leases' namespace.
    pub namespace: String,
    /// A kubeconfig, or the pod's service account.
    pub kubeconfig: Option<PathBuf>,
    /// The host root.
    pub host_root: PathBuf,
    /// The blocks file (host path).
    pub blocks_file: PathBuf,
    /// Between two reads of the cluster.
    pub resync: Duration,
    /// Between two looks at the node.
    pub tick: Duration,
}

/// Starts the agent on its own thread, with a current-thread runtime of its own: the installer's loop
/// stays synchronous, and a stuck API request never delays a binary check.
pub fn spawn(config: AgentConfig) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("block-agent".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                roslan::log::error!("blocks: cannot start the agent's runtime: {err}");
                return;
            }
        };
        runtime.block_on(async move {
            match Agent::new(config) {
                Ok(mut agent) => agent.run().await,
                Err(err) => roslan::log::error!("blocks: {err}"),
            }
        });
    })
}

/// A network the agent leases for.
#[derive(Clone, Debug)]
struct Network {
    /// Where it was defined (`namespace/name` of the NetworkAttachmentDefinition).
    source: String,
    ipam: BuiltinIpam,
    /// Its store, as a local path.
    store: PathBuf,
}

/// A block this node holds.
#[derive(Clone, Debug)]
struct Held {
    block: IpNetwork,
    uid: Option<String>,
    empty_since: Option<Instant>,
}

/// Whether the API server answers, as the status file says it.
#[derive(Debug)]
struct Health {
    state: ApiState,
    since: u64,
    last_contact: Option<u64>,
    error: Option<String>,
    backoff: Duration,
    next_try: Instant,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct Agent {
    config: AgentConfig,
    files: NodeFiles,
    cluster: Option<Cluster>,
    networks: BTreeMap<String, Network>,
    held: BTreeMap<String, Vec<Held>>,
    node: Option<NodeRef>,
    health: Health,
    next_sync: Instant,
    /// Given back locally, Lease delete still to do: never adopted again.
    releasing: Vec<(String, IpNetwork, Option<String>)>,
    problems: BTreeMap<String, String>,
    last_status: (String, Instant),
    /// Sets whose range had no free block: not asked again before this instant (the next resync).
    cooldown: BTreeMap<String, Instant>,
}

impl Agent {
    fn new(config: AgentConfig) -> Result<Agent, crate::Error> {
        let host = HostRoot::new(&config.host_root)?;
        let files = NodeFiles::new(host, config.blocks_file.clone());
        let now = Instant::now();
        Ok(Agent {
            config,
            files,
            cluster: None,
            networks: BTreeMap::new(),
            held: BTreeMap::new(),
            node: None,
            health: Health {
                state: ApiState::Unreachable,
                since: unix_now(),
                last_contact: None,
                error: Some("not contacted yet".into()),
                backoff: BACKOFF_MIN,
                next_try: now,
            },
            next_sync: now,
            releasing: Vec::new(),
            problems: BTreeMap::new(),
            last_status: (String::new(), now),
            cooldown: BTreeMap::new(),
        })
    }

    async fn run(&mut self) {
        info!(
            "blocks: leasing address blocks for node {:?} in namespace {:?}; blocks file {}",
            self.config.node,
            self.config.namespace,
            self.files.blocks_file().display()
        );
        self.load();
        loop {
            let now = Instant::now();
            if now >= self.health.next_try && (now >= self.next_sync || self.health.state == ApiState::Unreachable) {
                self.sync().await;
            }
            self.look().await;
            self.write_status();
            tokio::time::sleep(self.config.tick).await;
        }
    }

    /// What the node held before this agent started (the blocks file on disk), so that a restart
    /// while the API server is down changes nothing for the node's pods.
    fn load(&mut self) {
        match self.files.read_blocks() {
            Ok(Some(blocks)) => {
                for (network, block) in blocks.blocks {
                    self.held.entry(network).or_default().push(Held {
                        block,
                        uid: None,
                        empty_since: None,
                    });
                }
            }
            Ok(None) => {}
            Err(err) => self.problem(
                "file",
                format!("cannot read the blocks file: {err}; it will be rewritten"),
            ),
        }
        let count: usize = self.held.values().map(Vec::len).sum();
        if count > 0 {
            info!("blocks: the blocks file lists {count} block(s); keeping them until the API server confirms them");
        }
    }

    fn problem(&mut self, key: &str, text: String) {
        if self.problems.get(key) != Some(&text) {
            warn!("blocks: {text}");
            self.problems.insert(key.to_string(), text);
        }
    }

    fn solved(&mut self, key: &str) {
        self.problems.remove(key);
    }

    fn api_ready(&self) -> bool {
        self.cluster.is_some() && self.health.state == ApiState::Reachable && Instant::now() >= self.health.next_try
    }

    /// Books the outcome of one request: `Some(value)` when it was answered.
    fn answered<T>(&mut self, what: &str, result: Result<T, ApiError>) -> Option<T> {
        match result {
            Ok(value) => {
                self.contact();
                Some(value)
            }
            Err(ApiError::Refused(text)) => {
                self.contact();
                self.problem(what, format!("{what}: {text}"));
                None
            }
            Err(ApiError::Unreachable(text)) => {
                self.unreachable(what, &text);
                None
            }
        }
    }

    fn contact(&mut self) {
        let now = unix_now();
        if self.health.state == ApiState::Unreachable {
            let was = now.saturating_sub(self.health.since);
            if self.health.last_contact.is_some() {
                info!("blocks: the API server answers again after {was} s; catching up");
            } else {
                info!("blocks: the API server answers");
            }
            self.health.state = ApiState::Reachable;
            self.health.since = now;
            self.health.error = None;
            self.next_sync = Instant::now();
            // What waited for the API server may go now, and a shortage blamed on it is looked at afresh.
            self.cooldown.clear();
            self.problems.retain(|key, _| !key.starts_with("short "));
        }
        self.health.backoff = BACKOFF_MIN;
        self.health.last_contact = Some(now);
    }

    fn unreachable(&mut self, what: &str, text: &str) {
        let delay = self.health.backoff;
        if self.health.state == ApiState::Reachable {
            self.health.state = ApiState::Unreachable;
            self.health.since = unix_now();
        }
        let held: usize = self.held.values().map(Vec::len).sum();
        warn!(
            "blocks: the API server does not answer ({what}: {text}); this node keeps allocating from the {held} block(s) \
             it holds; retrying in {} s",
            delay.as_secs()
        );
        self.health.error = Some(format!("{what}: {text}"));
        self.health.next_try = Instant::now() + delay;
        self.health.backoff = (delay * 2).min(BACKOFF_MAX);
    }

    /// Reads the cluster and reconciles it with the blocks file.
    async fn sync(&mut self) {
        if self.cluster.is_none() {
            let connected = Cluster::connect(self.config.kubeconfig.as_deref(), &self.config.namespace).await;
            match connected {
                Ok(cluster) => {
                    self.solved("client");
                    self.cluster = Some(cluster);
                }
                Err(err) => {
                    self.problem("client", format!("cannot make an API client: {err}"));
                    self.health.next_try = Instant::now() + BACKOFF_MAX;
                    return;
                }
            }
        }
        let Some(cluster) = self.cluster.clone() else { return };
        let Some(configs) = self.answered("list NetworkAttachmentDefinitions", cluster.network_configs().await) else {
            return;
        };
        self.solved("list NetworkAttachmentDefinitions");
        self.read_networks(configs);
        self.report_orphans();
        let Some(node) = self.answered("get Node", cluster.node(&self.config.node).await) else {
            return;
        };
        self.solved("get Node");
        let selector = format!("{}={}", lease::NODE_LABEL, lease::node_label(&self.config.node));
        let Some(leases) = self.answered("list Leases", cluster.block_leases(&selector).await) else {
            return;
        };
        self.solved("list Leases");
        let mine: Vec<HeldLease> = leases.into_iter().filter(|l| l.holder == self.config.node).collect();
        match node {
            None => self.node_gone(),
            Some(node) => {
                self.solved("node");
                self.node = Some(node);
                self.reconcile(&cluster, mine).await;
            }
        }
        self.next_sync = Instant::now() + self.config.resync;
    }

    fn read_networks(&mut self, configs: Vec<(String, String)>) {
        let mut networks = BTreeMap::new();
        for (source, text) in configs {
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            // A .conflist's roslan entry, or the plain configuration.
            let entry = value
                .get("plugins")
                .and_then(Value::as_array)
                .and_then(|plugins| plugins.iter().find(|p| p.pointer("/ipam/nodeBlocks").is_some()))
                .cloned()
                .map(|mut entry| {
                    // The list's name and version are the entry's, as the runtime passes them.
                    for key in ["name", "cniVersion"] {
                        if let (Some(obj), Some(top)) = (entry.as_object_mut(), value.get(key)) {
                            obj.entry(key).or_insert_with(|| top.clone());
                        }
                    }
                    entry
                })
                .unwrap_or(value);
            if entry.pointer("/ipam/nodeBlocks").is_none() {
                continue;
            }
            let (conf, problems) = match NetConf::parse(&entry) {
                Ok(parsed) => parsed,
                Err(err) => {
                    self.problem(&format!("nad {source}"), format!("{source}: {err}"));
                    continue;
                }
            };
            let IpamConf::Builtin(ipam) = conf.ipam else { continue };
            if !problems.is_empty() {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                self.problem(
                    &format!("nad {source}"),
                    format!(
                        "{source} is not a valid roslan configuration, so no blocks are leased for it: {}",
                        list.join("; ")
                    ),
                );
                continue;
            }
            let Some(blocks) = &ipam.node_blocks else { continue };
            if blocks.file != self.config.blocks_file {
                self.problem(
                    &format!("nad {source}"),
                    format!(
                        "{source} names nodeBlocks.file {}, but this agent writes {}: set one to the other \
                         (--blocks-file / ROSLAN_BLOCKS_FILE)",
                        blocks.file.display(),
                        self.config.blocks_file.display()
                    ),
                );
                continue;
            }
            if let Some(first) = networks.get(&conf.name).map(|n: &Network| n.source.clone()) {
                self.problem(
                    &format!("nad {source}"),
                    format!(
                        "{source} and {first} both define network {:?}: blocks follow {first} (a network name is one \
                         store on every node, so it must be one configuration)",
                        conf.name
                    ),
                );
                continue;
            }
            let store = match self.files.store_dir(&ipam.data_dir) {
                Ok(store) => store,
                Err(err) => {
                    self.problem(&format!("nad {source}"), format!("{source}: {err}"));
                    continue;
                }
            };
            self.problems.remove(&format!("nad {source}"));
            networks.insert(conf.name.clone(), Network { source, ipam, store });
        }
        let added: Vec<&String> = networks.keys().filter(|n| !self.networks.contains_key(*n)).collect();
        for name in added {
            info!("blocks: network {name:?} ({}) uses nodeBlocks", networks[name].source);
        }
        self.networks = networks;
    }

    /// Blocks of networks that no NetworkAttachmentDefinition with `nodeBlocks` names any more: kept
    /// (pods attached before may still use them, and their DEL needs nothing from the agent), and said.
    fn report_orphans(&mut self) {
        let orphans: Vec<(String, usize)> = self
            .held
            .iter()
            .filter(|(network, blocks)| !blocks.is_empty() && !self.networks.contains_key(*network))
            .map(|(network, blocks)| (network.clone(), blocks.len()))
            .collect();
        self.problems
            .retain(|key, _| !key.starts_with("orphan ") || orphans.iter().any(|(n, _)| *key == format!("orphan {n}")));
        for (network, count) in orphans {
            self.problem(
                &format!("orphan {network}"),
                format!(
                    "network {network:?} has no NetworkAttachmentDefinition with nodeBlocks any more; its {count} \
                     block(s) stay leased for this node: once no pod uses it, kubectl -n {} delete leases -l {}={}",
                    self.config.namespace,
                    lease::NETWORK_LABEL,
                    lease::network_label(&network)
                ),
            );
        }
    }

    /// The Node object is gone: the garbage collector deletes this node's Leases, and other nodes may
    /// lease the blocks, so this node must stop handing out addresses from them.
    fn node_gone(&mut self) {
        self.node = None;
        let count: usize = self.held.values().map(Vec::len).sum();
        self.problem(
            "node",
            format!(
                "the Node object {:?} does not exist: a block's Lease is owned by its Node, so nothing can be leased, \
                 and the garbage collector frees this node's blocks; ADD on this node gets no address until the node \
                 is registered again",
                self.config.node
            ),
        );
        if count > 0 {
            warn!("blocks: dropping this node's {count} block(s): its Node object is gone");
            self.held.clear();
            self.commit(&[]);
        }
    }

    /// Makes the blocks file and the API agree (see the module documentation).
    async fn reconcile(&mut self, cluster: &Cluster, mine: Vec<HeldLease>) {
        let Some(node) = self.node.clone() else { return };
        self.releasing
            .retain(|(network, block, _)| mine.iter().any(|l| l.network == *network && l.block == *block));
        let mut changed = false;
        // Leases the file lacks: adopt them (a crash between a create and the file's write).
        for lease in &mine {
            let releasing = self
                .releasing
                .iter()
                .any(|(n, b, _)| *n == lease.network && *b == lease.block);
            let held = self.held.entry(lease.network.clone()).or_default();
            match held.iter_mut().find(|h| h.block == lease.block) {
                Some(h) => h.uid = lease.uid.clone(),
                None if !releasing => {
                    info!(
                        "blocks: adopting block {} of network {:?}: its Lease names this node, the blocks file did not",
                        lease.block, lease.network
                    );
                    held.push(Held {
                        block: lease.block,
                        uid: lease.uid.clone(),
                        empty_since: None,
                    });
                    changed = true;
                }
                None => {}
            }
        }
        // Blocks the file lists without a Lease: lease them again, unless another node has them.
        let unconfirmed: Vec<(String, IpNetwork)> = self
            .held
            .iter()
            .flat_map(|(n, blocks)| blocks.iter().map(move |h| (n.clone(), h.block)))
            .filter(|(n, b)| !mine.iter().any(|l| l.network == *n && l.block == *b))
            .collect();
        let mut dropped = Vec::new();
        for (network, block) in unconfirmed {
            let result = cluster.create(&network, block, &node).await;
            match self.answered("create Lease", result) {
                Some(Created::Leased(lease)) => {
                    info!(
                        "blocks: leased block {block} of network {network:?} again (the blocks file listed it, the API had no Lease)"
                    );
                    if let Some(h) = self.held_mut(&network, block) {
                        h.uid = lease.uid;
                    }
                }
                Some(Created::Taken) => {
                    self.problem(
                        &format!("taken {network} {block}"),
                        format!(
                            "block {block} of network {network:?} is leased by another node, though this node's blocks \
                             file listed it (was the Node deleted and registered again?): this node hands out no more \
                             addresses from it; pods here that hold one should be restarted"
                        ),
                    );
                    dropped.push((network, block));
                }
                None => return,
            }
        }
        for (network, block) in &dropped {
            if let Some(blocks) = self.held.get_mut(network) {
                blocks.retain(|h| h.block != *block);
            }
        }
        if changed || !dropped.is_empty() {
            self.commit(&[]);
        }
    }

    fn held_mut(&mut self, network: &str, block: IpNetwork) -> Option<&mut Held> {
        self.held.get_mut(network)?.iter_mut().find(|h| h.block == block)
    }

    /// Writes the blocks file under the affected stores' locks; with `must_be_empty`, only if those
    /// blocks hold no reservation. Returns whether it was written.
    fn commit(&mut self, must_be_empty: &[(String, IpNetwork)]) -> bool {
        let blocks = NodeBlocks {
            node: self.config.node.clone(),
            blocks: self
                .held
                .iter()
                .flat_map(|(n, blocks)| blocks.iter().map(move |h| (n.clone(), h.block)))
                .collect(),
        };
        let stores: BTreeMap<String, PathBuf> = self
            .networks
            .iter()
            .map(|(name, n)| (name.clone(), n.store.clone()))
            .collect();
        match local::write_locked(&self.files, &blocks, &stores, must_be_empty) {
            Ok(written) => {
                self.solved("file");
                written
            }
            Err(err) => {
                self.problem("file", format!("cannot write the blocks file: {err}"));
                false
            }
        }
    }

    /// One look at the node: headroom and give-back for every set of every network.
    async fn look(&mut self) {
        if self.api_ready() && !self.releasing.is_empty() {
            self.finish_releases().await;
        }
        let names: Vec<String> = self.networks.keys().cloned().collect();
        for name in names {
            let network = self.networks[&name].clone();
            let addresses = match local::reserved(&network.store, &name) {
                Ok(addresses) => addresses,
                Err(err) => {
                    self.problem(
                        &format!("store {name}"),
                        format!("cannot read the store of {name:?}: {err}"),
                    );
                    continue;
                }
            };
            let Some(conf) = &network.ipam.node_blocks else {
                continue;
            };
            let now = Instant::now();
            for (index, set) in network.ipam.sets.iter().enumerate() {
                let policy = Policy {
                    prefix: conf.size.of(set),
                    ipv4: set.is_ipv4(),
                    min_free: conf.min_free,
                    release_after: Duration::from_secs(conf.release_after),
                };
                let uses: Vec<BlockUse> = self
                    .held
                    .entry(name.clone())
                    .or_default()
                    .iter_mut()
                    .filter(|h| capacity_in(set, h.block) > 0)
                    .map(|h| {
                        let used = local::used_in(&addresses, h.block);
                        if used > 0 {
                            h.empty_since = None;
                        } else if h.empty_since.is_none() {
                            h.empty_since = Some(now);
                        }
                        BlockUse {
                            block: h.block,
                            capacity: capacity_in(set, h.block),
                            used,
                            empty_since: h.empty_since,
                        }
                    })
                    .collect();
                match plan::decide(&uses, &policy, now) {
                    Decision::Keep => self.solved(&format!("short {name} {index}")),
                    Decision::Lease(count) => self.lease(&name, index, set, policy.prefix, count).await,
                    Decision::GiveBack(block) => self.give_back(&name, block).await,
                }
            }
        }
    }

    async fn lease(&mut self, network: &str, index: usize, set: &RangeSet, prefix: u8, count: usize) {
        let key = format!("short {network} {index}");
        let (Some(cluster), Some(node)) = (self.cluster.clone(), self.node.clone()) else {
            if self.health.state == ApiState::Unreachable {
                self.problem(&key, format!("range set {index} of network {network:?} needs another block, and the API server does not answer"));
            }
            return;
        };
        if !self.api_ready() {
            self.problem(
                &key,
                format!(
                    "range set {index} of network {network:?} needs another block, and the API server does not answer"
                ),
            );
            return;
        }
        if self.cooldown.get(&key).is_some_and(|until| Instant::now() < *until) {
            return;
        }
        let selector = format!("{}={}", lease::NETWORK_LABEL, lease::network_label(network));
        // A refusal (RBAC, an invalid object) would be refused again at the next look: wait for the resync.
        self.cooldown.insert(key.clone(), Instant::now() + self.config.resync);
        let Some(all) = self.answered("list Leases", cluster.block_leases(&selector).await) else {
            return;
        };
        let taken: BTreeSet<IpNetwork> = all.iter().filter(|l| l.network == network).map(|l| l.block).collect();
        let mut leased = 0;
        // At most the blocks wanted plus a few lost races per look.
        let candidates: Vec<IpNetwork> = blocks_of(set, prefix)
            .filter(|b| !taken.contains(b))
            .take(count + EXTRA_TRIES)
            .collect();
        for block in candidates {
            if leased == count {
                break;
            }
            match self.answered("create Lease", cluster.create(network, block, &node).await) {
                Some(Created::Leased(lease)) => {
                    self.held.entry(network.to_string()).or_default().push(Held {
                        block,
                        uid: lease.uid,
                        empty_since: None,
                    });
                    // The file first, then the next create: a crash loses at most an adoption.
                    self.commit(&[]);
                    info!(
                        "blocks: leased block {block} of network {network:?} ({} addresses) for node {}",
                        capacity_in(set, block),
                        node.name
                    );
                    leased += 1;
                }
                Some(Created::Taken) => {}
                None => return,
            }
        }
        // Answered: the next look may lease again at once if still short.
        self.cooldown.remove(&key);
        if leased == 0 {
            let mut holders: BTreeMap<&str, usize> = BTreeMap::new();
            for l in all.iter().filter(|l| l.network == network) {
                *holders.entry(l.holder.as_str()).or_default() += 1;
            }
            let by: Vec<String> = holders.iter().map(|(n, c)| format!("{n} ({c})")).collect();
            self.cooldown.insert(key.clone(), Instant::now() + self.config.resync);
            self.problem(
                &key,
                format!(
                    "range set {index} ({set}) of network {network:?} has no free block left: {} leased, by {}; widen \
                     the range, or delete the Node objects of nodes that are gone (their Leases go with them)",
                    taken.len(),
                    by.join(", ")
                ),
            );
        } else {
            self.solved(&key);
        }
    }

    async fn give_back(&mut self, network: &str, block: IpNetwork) {
        if !self.api_ready() {
            return;
        }
        let Some(blocks) = self.held.get_mut(network) else {
            return;
        };
        let Some(pos) = blocks.iter().position(|h| h.block == block) else {
            return;
        };
        let held = blocks.remove(pos);
        if !self.commit(&[(network.to_string(), block)]) {
            // An ADD took an address in it meanwhile (or the file could not be written): keep it.
            self.held.entry(network.to_string()).or_default().push(Held {
                empty_since: None,
                ..held
            });
            return;
        }
        info!(
            "blocks: giving back block {block} of network {network:?}: empty for its grace time and not needed for headroom"
        );
        self.releasing.push((network.to_string(), block, held.uid));
        self.finish_releases().await;
    }

    async fn finish_releases(&mut self) {
        let Some(cluster) = self.cluster.clone() else { return };
        while let Some((network, block, uid)) = self.releasing.first().cloned() {
            match cluster.delete(&network, block, uid.as_deref()).await {
                Ok(()) => {
                    self.contact();
                    self.releasing.remove(0);
                }
                // Not this agent's to delete any more (another object by that name): nothing to give back.
                Err(ApiError::Refused(text)) => {
                    self.contact();
                    warn!("blocks: the Lease of block {block} of network {network:?} was not deleted: {text}");
                    self.releasing.remove(0);
                }
                Err(ApiError::Unreachable(text)) => {
                    self.unreachable("delete Lease", &text);
                    return;
                }
            }
        }
    }

    fn write_status(&mut self) {
        let status = AgentStatus {
            updated: 0,
            node: self.config.node.clone(),
            api: self.health.state,
            since: self.health.since,
            last_contact: self.health.last_contact,
            error: self.health.error.clone(),
            retry_in: (self.health.state == ApiState::Unreachable)
                .then(|| self.health.next_try.saturating_duration_since(Instant::now()).as_secs()),
            problems: self.problems.values().cloned().collect(),
        };
        let text = status.render();
        let (last, at) = &self.last_status;
        if *last == text && at.elapsed() < HEARTBEAT {
            return;
        }
        let dated = AgentStatus {
            updated: unix_now(),
            ..status
        };
        if let Err(err) = self.files.write_status(&dated) {
            warn!("blocks: cannot write the status file: {err}");
        }
        self.last_status = (text, Instant::now());
    }
}
