//! The Kubernetes manifests under `manifests/`, checked offline (issue 5, item 4): every kustomization
//! renders and references only existing files, every built-in object passes `kubernetes-validate
//! --strict`, every NetworkAttachmentDefinition matches the Multus CRD schema, carries a cniVersion
//! MicroK8s' Multus 3.9 can read, and is accepted by `roslan validate`.
//!
//! The checks live in `tests/manifests/validate.py`, run with the project's virtual environment
//! (`make venv`). Needs no root; a missing interpreter or binary fails the test rather than skipping it.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn manifests_are_valid() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root");
    let python = repo.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make venv` (it creates .venv from tests/requirements.txt; `make test` does it)",
        python.display()
    );
    let roslan = roslan_tests::plugin::workspace_bin("roslan");
    let script = repo.join("tests/manifests/validate.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg("--repo")
        .arg(&repo)
        .env("ROSLAN_BIN", &roslan)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {} {}: {err}", python.display(), script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        output.status.success(),
        "manifest validation failed ({}):\n{stdout}{stderr}",
        output.status
    );
}
