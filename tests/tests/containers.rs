//! The harness's containers (`roslan_tests::container`) are what the ROS 2 tests rely on to mean
//! anything: each container is PID 1 of its own PID namespace, shares its pod's network namespace, host
//! name and `/dev/shm` and nobody else's, has its own `/etc/machine-id`, and leaves no process, zombie or
//! mount behind. And real Fast DDS nodes in two pods with no network between them hear nothing, so shared
//! memory cannot stand in for the network under test.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use roslan_tests::container::Sandbox;
use roslan_tests::netns::Netns;
use roslan_tests::process::Peer;
use roslan_tests::root_test;
use roslan_tests::ros2::{Chat, Middleware, require_nodes};

/// What a probe container prints about itself, then it keeps a child and sleeps as PID 1 (which has no
/// SIGTERM handler: only a kill from outside its namespace ends it).
const PROBE: &str = "echo pid=$$; echo host=$(hostname); echo id=$(cat /etc/machine-id); \
     echo net=$(readlink /proc/self/ns/net); echo ipc=$(readlink /proc/self/ns/ipc); \
     echo procs=$(ls /proc | grep -c '^[0-9]'); touch /dev/shm/from-$0; sleep 100 & \
     while [ $(ls /dev/shm | wc -l) -lt $1 ]; do sleep 0.05; done; echo shm=$(ls /dev/shm | tr '\\n' ' '); \
     exec sleep 1000";

fn probe(pod: &Sandbox, name: &str, siblings: usize) -> Peer {
    let sh = std::path::Path::new("/bin/sh");
    pod.container(name, sh, &["-c", PROBE, name, &siblings.to_string()], &[])
}

fn field(peer: &Peer, key: &str) -> String {
    let prefix = format!("{key}=");
    peer.wait_line(|l| l.starts_with(&prefix), Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{} printed no {key}: {:?}", peer.label(), peer.lines()))
        .text[prefix.len()..]
        .trim()
        .to_string()
}

fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[root_test]
fn containers_share_only_their_pods_namespaces_and_leave_nothing_behind() {
    let (net_a, net_b) = (Netns::new("pod"), Netns::new("pod"));
    let pod_a = Sandbox::new(&net_a, "pa");
    let pod_b = Sandbox::new(&net_b, "pb");
    let c1 = probe(&pod_a, "c1", 2);
    let c2 = probe(&pod_a, "c2", 2);
    let c3 = probe(&pod_b, "c3", 1);
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap().trim().to_string();
    let net_inode = |ns: &Netns| std::fs::metadata(ns.path()).unwrap().ino();
    let mut ids = Vec::new();
    for (peer, pod, net) in [(&c1, &pod_a, &net_a), (&c2, &pod_a, &net_a), (&c3, &pod_b, &net_b)] {
        assert_eq!(
            field(peer, "pid"),
            "1",
            "{} is PID 1 of its own PID namespace",
            peer.label()
        );
        assert_eq!(field(peer, "host"), pod.name(), "the pod's host name");
        assert_eq!(
            field(peer, "net"),
            format!("net:[{}]", net_inode(net)),
            "the pod's network namespace"
        );
        let procs: usize = field(peer, "procs").parse().unwrap();
        assert!(
            procs < 10,
            "its /proc shows its own PID namespace only: {procs} processes"
        );
        let id = field(peer, "id");
        assert_eq!(id.len(), 32, "a machine-id: {id}");
        assert_ne!(id, machine_id, "not the machine's");
        ids.push(id);
    }
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2],
        "each container its own machine-id: {ids:?}"
    );
    assert_eq!(field(&c1, "ipc"), field(&c2, "ipc"), "one IPC namespace per pod");
    assert_ne!(field(&c1, "ipc"), field(&c3, "ipc"));
    assert_eq!(
        field(&c1, "shm"),
        "from-c1 from-c2",
        "the pod's containers share its /dev/shm"
    );
    assert_eq!(field(&c2, "shm"), "from-c1 from-c2");
    assert_eq!(field(&c3, "shm"), "from-c3", "another pod's /dev/shm is its own");
    assert_eq!(pod_a.shm_files(), ["from-c1", "from-c2"]);
    let machine_shm: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("from-c"))
        .collect();
    assert!(
        machine_shm.is_empty(),
        "nothing in the machine's /dev/shm: {machine_shm:?}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("roslan-pod-shm"),
        "no pod tmpfs in the machine's mount namespace"
    );
    let holder_mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", pod_a.holder_pid())).unwrap();
    assert!(
        holder_mounts
            .lines()
            .any(|l| l.contains(" /dev/shm ") && l.contains("roslan-pod-shm")),
        "the pod's tmpfs is on /dev/shm in its sandbox"
    );

    // Every process of every container, the sandboxes' holders, and nothing left of any after the drops.
    let mut pids = vec![pod_a.holder_pid(), pod_b.holder_pid()];
    for peer in [&c1, &c2, &c3] {
        let init = peer
            .program_pid(Duration::from_secs(2))
            .expect("PID 1 of the container");
        let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
        let child: u32 = children
            .split_whitespace()
            .next()
            .expect("the background sleep")
            .parse()
            .unwrap();
        pids.extend([peer.pid(), init, child]);
    }
    assert!(pids.iter().all(|&p| exists(p)));
    drop((c1, c2, c3));
    drop((pod_a, pod_b));
    let left: Vec<u32> = pids.iter().copied().filter(|&p| exists(p)).collect();
    assert!(left.is_empty(), "processes (or zombies) left: {left:?}");
}

#[root_test]
fn fast_dds_nodes_hear_each_other_in_one_pod_and_not_across_unconnected_pods() {
    // Pods with nothing but `lo`: whatever a listener hears from another pod could only have come
    // through shared memory, which the containers keep per pod. In one pod the talker is heard (through
    // the pod's /dev/shm or `lo`), as containers in one pod on containerd do.
    require_nodes();
    let (net_a, net_b) = (Netns::new("pod"), Netns::new("pod"));
    let pod_a = Sandbox::new(&net_a, "pa");
    let pod_b = Sandbox::new(&net_b, "pb");
    let same = Chat::new(Middleware::FastDds, (&pod_a, "l1"), vec![(&pod_a, "t1")]).run();
    eprintln!("{}", same.report());
    same.assert_heard(&["t1"], "talker and listener in one pod with only lo");
    let apart = Chat::new(Middleware::FastDds, (&pod_a, "l1"), vec![(&pod_b, "t2")]).run();
    apart.assert_heard(&[], "two pods with only lo, no link between them");
}
