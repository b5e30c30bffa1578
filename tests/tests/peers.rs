//! The real peers `make peers` builds (tests/peers/) run and answer as the versions pinned there, and a
//! control plane made of them (Debian's etcd, kube-apiserver and kube-controller-manager 1.34) serves the
//! peers' kubectl, `kubectl apply -k`, Multus' and whereabouts' CRDs, survives an API server restart, and
//! leaves no process or file behind.

use std::path::Path;
use std::process::Command;

use roslan_tests::apiserver::{ControlPlane, Options};
use roslan_tests::root_test;
use roslan_tests::{peer, peer_bin};
use serde_json::Value;

/// stdout and stderr of `bin args` (some of these print their version on stderr), and its exit code.
fn run_status(bin: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// stdout and stderr of `bin args`; panics if it fails.
fn run(bin: &Path, args: &[&str]) -> String {
    let (code, text) = run_status(bin, args);
    assert_eq!(code, Some(0), "{} {} failed: {text}", bin.display(), args.join(" "));
    text
}

/// The CNI VERSION reply of a plugin binary.
fn cni_version(bin: &Path) -> Value {
    use std::io::Write;
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", bin.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} VERSION failed", bin.display());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "{} VERSION: {err}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn supported(reply: &Value) -> Vec<&str> {
    reply["supportedVersions"]
        .as_array()
        .unwrap_or_else(|| panic!("no supportedVersions in {reply}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[root_test("needs the peers: run `make peers` and `make test` as root")]
fn peers_answer_with_their_pinned_versions() {
    let v3 = peer("multus-v3");
    assert!(v3.version.starts_with("v3.9."), "{v3:?}");
    let out = run(&v3.bin("multus"), &["-version"]);
    assert!(out.contains(&format!("version:{},", v3.version)), "{out}");
    // Thin Multus 3.9 speaks CNI up to 0.4.0 only: why MicroK8s runs it with --cni-version=0.3.1.
    assert_eq!(
        supported(&cni_version(&v3.bin("multus"))),
        ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"]
    );

    let v4 = peer("multus-v4");
    assert!(v4.version.starts_with("v4."), "{v4:?}");
    for bin in ["multus", "multus-shim"] {
        let out = run(&v4.bin(bin), &["-version"]);
        assert!(out.contains(&format!("version:{}", v4.version)), "{bin}: {out}");
    }
    // multus-daemon exits 4 after printing its version (upstream's choice).
    let (code, out) = run_status(&v4.bin("multus-daemon"), &["-version"]);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains(&format!("multus-daemon: version:{}", v4.version)), "{out}");
    assert!(supported(&cni_version(&v4.bin("multus"))).contains(&"1.1.0"));

    let plugins = peer("plugins");
    for bin in [
        "macvlan",
        "ipvlan",
        "bridge",
        "ptp",
        "loopback",
        "host-local",
        "static",
        "tuning",
    ] {
        let reply = cni_version(&plugins.bin(bin));
        assert!(supported(&reply).contains(&"1.1.0"), "{bin}: {reply}");
        assert!(supported(&reply).contains(&"0.3.1"), "{bin}: {reply}");
    }

    let whereabouts = peer("whereabouts");
    assert!(supported(&cni_version(&whereabouts.bin("whereabouts"))).contains(&"1.0.0"));
    let out = run(&whereabouts.bin("whereabouts"), &["-version"]);
    assert!(out.contains(&whereabouts.version), "{out}");

    let crictl = peer("cri-tools");
    assert_eq!(
        run(&crictl.bin("crictl"), &["--version"]).trim(),
        format!("crictl version {}", crictl.version)
    );

    let k8s = peer("kubernetes");
    assert!(k8s.version.starts_with("v1.34."), "{k8s:?}");
    for bin in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"] {
        assert_eq!(
            run(&k8s.bin(bin), &["--version"]).trim(),
            format!("Kubernetes {}", k8s.version),
            "{bin}"
        );
    }
    let out = run(&peer_bin("kubectl"), &["version", "--client"]);
    assert!(out.contains(&format!("Client Version: {}", k8s.version)), "{out}");
    assert!(
        out.contains("Kustomize Version"),
        "kubectl without kustomize cannot `apply -k`: {out}"
    );
}

#[root_test("needs the peers and etcd-server: run `make peers` and `make test` as root")]
fn control_plane_serves_kubectl_and_leaves_nothing_behind() {
    let mut cp = ControlPlane::start_with(Options {
        controller_manager: true,
        scheduler: false,
    });
    let namespaces = cp.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    for ns in ["namespace/default", "namespace/kube-system"] {
        assert!(namespaces.lines().any(|l| l == ns), "{namespaces}");
    }
    let version: Value = serde_json::from_str(&cp.kubectl_ok(&["get", "--raw", "/version"])).unwrap();
    assert_eq!(version["gitVersion"], peer("kubernetes").version.as_str());

    cp.install_nad_crd("multus-v3");
    let crds = peer("whereabouts").files("crds");
    for crd in ["ippools", "overlappingrangeipreservations", "nodeslicepools"] {
        let file = crds.join(format!("whereabouts.cni.cncf.io_{crd}.yaml"));
        cp.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    }
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=30s",
        "crd/ippools.whereabouts.cni.cncf.io",
    ]);

    // What the Multus tests create: a NAD and a pod that asks for it, bound to a node no kubelet serves.
    let kustomization = cp.dir().join("kustomize");
    std::fs::create_dir(&kustomization).unwrap();
    std::fs::write(
        kustomization.join("kustomization.yaml"),
        "resources: [nad.yaml, pod.yaml]\nnamespace: default\n",
    )
    .unwrap();
    std::fs::write(
        kustomization.join("nad.yaml"),
        r#"apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: ros-lan}
spec:
  config: '{"cniVersion": "0.3.1", "name": "ros-lan", "type": "roslan", "master": "lan0"}'
"#,
    )
    .unwrap();
    std::fs::write(
        kustomization.join("pod.yaml"),
        r#"apiVersion: v1
kind: Pod
metadata:
  name: talker
  annotations: {k8s.v1.cni.cncf.io/networks: ros-lan}
spec:
  nodeName: node-a
  containers: [{name: talker, image: t.local/ros2:1}]
"#,
    )
    .unwrap();
    cp.kubectl_ok(&["apply", "-k", kustomization.to_str().unwrap()]);
    let pod: Value =
        serde_json::from_str(&cp.kubectl_ok(&["-n", "default", "get", "pod", "talker", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["nodeName"], "node-a");
    assert_eq!(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"], "ros-lan");
    assert_eq!(
        pod["spec"]["serviceAccountName"], "default",
        "the controller manager made the service account"
    );

    // State is etcd's: the API server can go away (a robot losing its control plane) and come back.
    cp.stop_apiserver();
    assert!(
        !cp.kubectl(&["get", "--raw", "/readyz"]).status.success(),
        "the API server is stopped"
    );
    cp.start_apiserver();
    let nad: Value =
        serde_json::from_str(&cp.kubectl_ok(&["-n", "default", "get", "net-attach-def", "ros-lan", "-o", "json"]))
            .unwrap();
    let config: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["type"], "roslan");

    let pids = cp.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver", "kube-controller-manager"]);
    let dir = cp.dir().to_path_buf();
    drop(cp);
    for (name, pid) in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} ({pid}) still runs"
        );
    }
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
