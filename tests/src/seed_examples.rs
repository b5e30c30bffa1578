//! The seed's five examples (`manifests/examples/<n>`, see [`crate::layouts`] for the seed) on a real
//! [`OneNodeCluster`], applied with `kubectl apply -k` through an overlay that changes only what the issue allows:
//! the ROS 2 image (a kustomize `images:` entry for the offline image of `make ros-image`) and, for the
//! controls, the content of the `ros-lan` NetworkAttachmentDefinition the example carries (the seed's own,
//! reference macvlan + host-local, with or without the `224.0.0.0/4` route). Then [`Deployment::listen`]
//! reads `kubectl logs --timestamps` of the listener and the talkers until every talker was heard or a
//! window passed, and records who was heard when, measured from the `kubectl apply`.
//!
//! The same machinery runs the Cyclone DDS pod pair ([`Workload::cyclone_pair`]): a talker pod and a
//! listener pod running `tests/dds/chatter.py` from the ROS 2 image, which carries it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::layouts::{Layout, seed_network};
use crate::node::NIC;
use crate::one_node::OneNodeCluster;
use crate::ros2::{heard_summary, parse_heard};
use crate::runtime::repo;

/// The offline ROS 2 image's name (`make ros-image`).
pub const ROS_IMAGE: &str = "localhost/roslan/ros2:kilted";

/// What the pods' `ros-lan` NetworkAttachmentDefinition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Network {
    /// As shipped: roslan (`manifests/networks/single-node` or `node-ranges`).
    Roslan,
    /// The seed's own definition: `type: macvlan` + host-local, `isDefaultgateway`, no routes.
    Seed,
    /// The seed's definition plus host-local `routes: [{"dst": "224.0.0.0/4"}]`, the usual workaround.
    SeedWithRoute,
}

impl Network {
    /// For tables.
    pub fn label(self) -> &'static str {
        match self {
            Network::Roslan => "roslan",
            Network::Seed => "reference today",
            Network::SeedWithRoute => "reference + workaround",
        }
    }

    /// The configuration that replaces the example's (None: the example's own).
    fn replacement(self) -> Option<Value> {
        match self {
            Network::Roslan => None,
            Network::Seed => Some(seed_network(NIC, false)),
            Network::SeedWithRoute => Some(seed_network(NIC, true)),
        }
    }
}

/// Pods that run talkers and one listener, and where they come from.
#[derive(Clone, Debug)]
pub struct Workload {
    /// For tables and messages: `example 3`.
    pub label: String,
    /// The Kubernetes namespace its kustomization puts everything in.
    pub namespace: String,
    /// The kustomization directory (in the repository, or written by the test).
    pub source: PathBuf,
    /// Pods and their containers.
    pub pods: Vec<(String, Vec<String>)>,
    /// Whether its pods attach `ros-lan`.
    pub attaches: bool,
}

impl Workload {
    /// `manifests/examples/<number>`.
    pub fn example(number: u32) -> Workload {
        let layout = match number {
            1 => Layout::TalkerAndListener,
            2 => Layout::TwoTalkersAndListener,
            3 | 4 => Layout::ThreePods,
            5 => Layout::TalkerPodAndListenerPod,
            _ => panic!("the seed has five examples, not {number}"),
        };
        Workload {
            label: format!("example {number}"),
            namespace: format!("roslan-example-{number}"),
            source: repo().join(format!("manifests/examples/{number}")),
            pods: layout
                .pods()
                .iter()
                .map(|(pod, containers)| (pod.to_string(), containers.iter().map(|c| c.to_string()).collect()))
                .collect(),
            attaches: number >= 3,
        }
    }

    /// The Cyclone DDS pair: pod `t1` runs the chatter's talker (tag `t1`), pod `l1` its listener, both from
    /// the ROS 2 image, attached to `ros-lan` from `manifests/networks/single-node` as it is (roslan's
    /// default `multicast.exclusive`, on), or with `"multicast": {"exclusive": false}` unless `exclusive`.
    /// Written into `dir`.
    pub fn cyclone_pair(dir: &Path, exclusive: bool) -> Workload {
        let namespace = "roslan-e2e-cyclone";
        std::fs::create_dir_all(dir).expect("create the Cyclone pair's directory");
        let pod = |name: &str, role: &str| {
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "annotations": {"k8s.v1.cni.cncf.io/networks": "ros-lan"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": name,
                        "image": "ros",
                        "args": ["python3", "/opt/roslan/scripts/chatter.py", role, "--tag", name,
                                 "--count", "1000000", "--timeout", "3600"],
                        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                    }],
                },
            })
        };
        let objects = [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            pod("t1", "talker"),
            pod("l1", "listener"),
        ];
        let docs: Vec<String> = objects.iter().map(Value::to_string).collect();
        std::fs::write(dir.join("pods.yaml"), docs.join("\n---\n")).expect("write the pods");
        let mut kustomization = json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": namespace,
            "resources": [relative(dir, &repo().join("manifests/networks/single-node")), "pods.yaml"],
        });
        if !exclusive {
            let mut config = single_node_config();
            config["multicast"] = json!({"exclusive": false});
            kustomization["patches"] = json!([nad_patch(&config)]);
        }
        write_kustomization(dir, &kustomization);
        Workload {
            label: format!("Cyclone pair{}", if exclusive { "" } else { " (exclusive: false)" }),
            namespace: namespace.to_string(),
            source: dir.to_path_buf(),
            pods: vec![("t1".into(), vec!["t1".into()]), ("l1".into(), vec!["l1".into()])],
            attaches: true,
        }
    }

    /// The listener: (pod, container); every workload has one, `l1`.
    pub fn listener(&self) -> (String, String) {
        self.containers()
            .into_iter()
            .find(|(_, c)| c.starts_with('l'))
            .expect("a listener")
    }

    /// The talkers: (pod, container), containers named `t*`.
    pub fn talkers(&self) -> Vec<(String, String)> {
        self.containers()
            .into_iter()
            .filter(|(_, c)| c.starts_with('t'))
            .collect()
    }

    fn containers(&self) -> Vec<(String, String)> {
        self.pods
            .iter()
            .flat_map(|(pod, cs)| cs.iter().map(move |c| (pod.clone(), c.clone())))
            .collect()
    }

    /// Writes the overlay that applies this workload with the ROS 2 image and `network` in `ros-lan`, in
    /// `dir`; returns `dir`.
    pub fn overlay(&self, dir: &Path, network: Network) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create the overlay's directory");
        let mut kustomization = json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [relative(dir, &self.source)],
            "images": [{"name": "ros", "newName": "localhost/roslan/ros2", "newTag": "kilted"}],
        });
        if let Some(config) = network.replacement() {
            assert!(self.attaches, "{} attaches no network to replace", self.label);
            kustomization["patches"] = json!([nad_patch(&config)]);
        }
        write_kustomization(dir, &kustomization);
        dir.to_path_buf()
    }
}

/// `manifests/networks/single-node`'s configuration, parsed from its YAML (the `config: |` block).
pub fn single_node_config() -> Value {
    let path = repo().join("manifests/networks/single-node/network.yaml");
    let text = std::fs::read_to_string(&path).expect("read single-node/network.yaml");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "config: |")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .collect();
    serde_json::from_str(&block.join("\n")).unwrap_or_else(|e| panic!("{}: config is not JSON: {e}", path.display()))
}

/// A kustomize patch replacing `ros-lan`'s `spec.config` with `config`.
pub fn nad_patch(config: &Value) -> Value {
    let patch = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "ros-lan"},
        "spec": {"config": serde_json::to_string_pretty(config).expect("JSON")},
    });
    json!({"target": {"kind": "NetworkAttachmentDefinition", "name": "ros-lan"}, "patch": patch.to_string()})
}

/// Writes `kustomization.yaml` (JSON is YAML).
pub fn write_kustomization(dir: &Path, kustomization: &Value) {
    std::fs::write(
        dir.join("kustomization.yaml"),
        serde_json::to_string_pretty(kustomization).expect("JSON"),
    )
    .expect("write kustomization.yaml");
}

/// `to` relative to `from` (kustomize refuses absolute resource paths).
pub fn relative(from: &Path, to: &Path) -> String {
    let up = from.components().count() - 1;
    format!(
        "{}{}",
        "../".repeat(up),
        to.strip_prefix("/").expect("an absolute path").display()
    )
}

/// A line of `kubectl logs --timestamps`: when containerd read it, and the text.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// containerd's timestamp.
    pub at: SystemTime,
    /// The line without it.
    pub text: String,
}

/// Parses `kubectl logs --timestamps` output (`2026-12-04T20:32:28.361234567Z text`).
pub fn parse_logs(out: &str) -> Vec<LogLine> {
    out.lines()
        .filter_map(|l| {
            let (stamp, text) = l.split_once(' ')?;
            Some(LogLine {
                at: parse_rfc3339(stamp)?,
                text: text.to_string(),
            })
        })
        .collect()
}

/// An RFC 3339 UTC time with optional fraction (`2026-12-04T20:32:28.361234567Z`), as kubectl prints it.
pub fn parse_rfc3339(stamp: &str) -> Option<SystemTime> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let nanos: u32 = format!("{frac:0<9}")[..9].parse().ok()?;
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + s;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// A workload applied to the cluster, until [`Deployment::delete`].
pub struct Deployment<'a> {
    cluster: &'a OneNodeCluster,
    /// What runs.
    pub workload: Workload,
    /// What `ros-lan` is.
    pub network: Network,
    overlay: PathBuf,
    /// Just before `kubectl apply`.
    pub applied: SystemTime,
    started: Instant,
    /// When every pod was Ready, since the apply.
    pub ready: Option<Duration>,
}

impl<'a> Deployment<'a> {
    /// `kubectl apply -k <overlay>` (written under `dir`), then waits (at most 120 s) until every pod is
    /// Ready.
    pub fn apply(cluster: &'a OneNodeCluster, workload: &Workload, network: Network, dir: &Path) -> Deployment<'a> {
        let overlay = workload.overlay(dir, network);
        let applied = SystemTime::now();
        let started = Instant::now();
        cluster.kubectl_ok(&["apply", "-k", overlay.to_str().expect("UTF-8")]);
        let mut deployment = Deployment {
            cluster,
            workload: workload.clone(),
            network,
            overlay,
            applied,
            started,
            ready: None,
        };
        let out = cluster.kubectl(&[
            "-n",
            &workload.namespace,
            "wait",
            "--for=condition=Ready",
            "pod",
            "--all",
            "--timeout=120s",
        ]);
        if out.status.success() {
            deployment.ready = Some(started.elapsed());
        }
        deployment
    }

    /// `kubectl logs --timestamps` of one container (empty when kubectl cannot get them yet).
    pub fn logs(&self, pod: &str, container: &str) -> Vec<LogLine> {
        let out = self.cluster.kubectl(&[
            "-n",
            &self.workload.namespace,
            "logs",
            pod,
            "-c",
            container,
            "--timestamps",
        ]);
        parse_logs(&String::from_utf8_lossy(&out.stdout))
    }

    /// Reads the listener's and the talkers' logs every second until the listener heard every talker
    /// twice, or `window` after every talker was up (`publishing`, or the chatter's `ready`), or 90 s
    /// after the apply.
    pub fn listen(&self, window: Duration) -> Outcome {
        let (lpod, lcontainer) = self.workload.listener();
        let talkers = self.workload.talkers();
        let deadline = self.started + Duration::from_secs(90);
        let mut notes = Vec::new();
        let mut ups: Vec<Option<SystemTime>> = vec![None; talkers.len()];
        loop {
            for (i, (pod, container)) in talkers.iter().enumerate() {
                if ups[i].is_none() {
                    ups[i] = self
                        .logs(pod, container)
                        .iter()
                        .find(|l| l.text.contains("]: publishing ") || l.text == "talker: ready")
                        .map(|l| l.at);
                }
            }
            let heard = heard(&self.logs(&lpod, &lcontainer));
            let twice = talkers
                .iter()
                .all(|(_, tag)| heard.iter().filter(|(t, _)| t == tag).count() >= 2);
            let last_up = ups
                .iter()
                .copied()
                .collect::<Option<Vec<_>>>()
                .and_then(|v| v.into_iter().max());
            let window_over =
                last_up.is_some_and(|up| SystemTime::now().duration_since(up).unwrap_or_default() > window);
            if twice || window_over {
                break;
            }
            if Instant::now() > deadline {
                notes.push("not every talker was up 90 s after the apply".to_string());
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let listener_log = self.logs(&lpod, &lcontainer);
        let heard = heard(&listener_log);
        let per_talker = talkers
            .iter()
            .zip(&ups)
            .map(|((_, tag), up)| {
                let mine: Vec<&(String, SystemTime)> = heard.iter().filter(|(t, _)| t == tag).collect();
                TalkerHeard {
                    tag: tag.clone(),
                    up: up.and_then(|u| u.duration_since(self.applied).ok()),
                    count: mine.len(),
                    first: mine.first().and_then(|(_, at)| at.duration_since(self.applied).ok()),
                }
            })
            .collect();
        let others = heard
            .iter()
            .filter(|(t, _)| !talkers.iter().any(|(_, tag)| tag == t))
            .map(|(t, _)| t.clone())
            .fold(Vec::new(), |mut acc, t| {
                if !acc.contains(&t) {
                    acc.push(t);
                }
                acc
            });
        Outcome {
            label: self.workload.label.clone(),
            network: self.network,
            ready: self.ready,
            talkers: per_talker,
            others,
            listener_log,
            notes,
        }
    }

    /// The pods' running sandboxes as the CRI reports them: (pod, sandbox id, network namespace path on the
    /// node). Stopped ones (of an earlier deployment in the same namespace, until kubelet removes them) are
    /// left out.
    pub fn sandboxes(&self) -> Vec<(String, String, String)> {
        let list: Value = serde_json::from_str(&self.cluster.crictl_ok(&[
            "pods",
            "--state",
            "ready",
            "--namespace",
            &self.workload.namespace,
            "-o",
            "json",
        ]))
        .expect("crictl pods JSON");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let id = item["id"].as_str().expect("a sandbox id").to_string();
                let pod = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let netns = self.cluster.sandbox_netns(&id);
                (pod, id, netns)
            })
            .collect()
    }

    /// `kubectl delete -k` of the overlay, waiting until everything (the namespace included) is gone.
    pub fn delete(self) -> Duration {
        let started = Instant::now();
        self.cluster.kubectl_ok(&[
            "delete",
            "-k",
            self.overlay.to_str().expect("UTF-8"),
            "--wait=true",
            "--timeout=120s",
        ]);
        started.elapsed()
    }
}

/// Every message a listener's log reports: (talker tag, when).
fn heard(log: &[LogLine]) -> Vec<(String, SystemTime)> {
    log.iter()
        .filter_map(|l| parse_heard(&l.text).map(|m| (m.tag, l.at)))
        .collect()
}

/// What a listener heard of one talker.
#[derive(Clone, Debug)]
pub struct TalkerHeard {
    /// The talker's tag.
    pub tag: String,
    /// When it first said it was up, since the apply.
    pub up: Option<Duration>,
    /// How many of its messages the listener logged.
    pub count: usize,
    /// When the listener logged the first one, since the apply.
    pub first: Option<Duration>,
}

/// The record of one [`Deployment::listen`].
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The workload's label.
    pub label: String,
    /// What `ros-lan` was.
    pub network: Network,
    /// When every pod was Ready, since the apply (None: not within 120 s).
    pub ready: Option<Duration>,
    /// Per talker, in the workload's order.
    pub talkers: Vec<TalkerHeard>,
    /// Tags the listener heard that are not the workload's (a LAN host's talker).
    pub others: Vec<String>,
    /// The listener's log.
    pub listener_log: Vec<LogLine>,
    /// Remarks from the run.
    pub notes: Vec<String>,
}

impl Outcome {
    /// The workload's talkers the listener heard, in order.
    pub fn heard(&self) -> Vec<&str> {
        self.talkers
            .iter()
            .filter(|t| t.count > 0)
            .map(|t| t.tag.as_str())
            .collect()
    }

    /// Whether every pod was Ready and every talker was up: only then does silence mean the network.
    pub fn all_up(&self) -> bool {
        self.ready.is_some() && self.talkers.iter().all(|t| t.up.is_some())
    }

    /// `t1 4.1 s, t2 4.3 s` (time from the apply to the first message heard), or `none`.
    pub fn summary(&self) -> String {
        let mut text = heard_summary(self.talkers.iter().map(|t| (t.tag.as_str(), t.first)));
        if !self.all_up() {
            text.push_str(" (a pod or talker did not come up)");
        }
        text
    }

    /// Everything about the run, for failure messages.
    pub fn report(&self) -> String {
        let mut text = format!("{} on {}: ready {:?}\n", self.label, self.network.label(), self.ready);
        for note in &self.notes {
            let _ = writeln!(text, "note: {note}");
        }
        for t in &self.talkers {
            let _ = writeln!(
                text,
                "talker {}: up {:?}, heard {} times, first {:?}",
                t.tag, t.up, t.count, t.first
            );
        }
        let _ = writeln!(text, "others heard: {:?}\nlistener log:", self.others);
        for l in self.listener_log.iter().take(40) {
            let _ = writeln!(text, "  {}", l.text);
        }
        text
    }

    /// Panics with the report unless every pod and talker came up and the listener heard exactly `want`.
    pub fn assert_heard(&self, want: &[&str], why: &str) {
        assert!(
            self.all_up() && self.heard() == want,
            "{} on {}: expected the listener to hear {want:?} ({why}), it heard {:?}\n{}",
            self.label,
            self.network.label(),
            self.heard(),
            self.report()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_timestamps_parse() {
        let lines = parse_logs("2026-12-04T20:32:28.361234567Z [INFO] [1.0] [listener_l1]: l1:l1:1: \"t1:t1:1: 3\"\n");
        assert_eq!(lines.len(), 1);
        let secs = lines[0].at.duration_since(UNIX_EPOCH).unwrap();
        // date -u -d 2026-12-04T20:32:28Z +%s
        assert_eq!(secs.as_secs(), 1_796_416_348);
        assert_eq!(secs.subsec_nanos(), 361_234_567);
        assert_eq!(parse_heard(&lines[0].text).unwrap().tag, "t1");
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z")
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            951_868_800
        );
    }

    #[test]
    fn relative_paths_climb_to_the_root() {
        assert_eq!(relative(Path::new("/tmp/a/b"), Path::new("/work/x")), "../../../work/x");
    }
}
