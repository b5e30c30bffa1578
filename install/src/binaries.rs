//! The plugin binaries: which ones, and proving that an installed one works.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::Error;

/// The binaries the image may ship, and whether the image must have it. `roslan-ipam` is optional
/// so that one installer serves images built before and after it exists.
pub const BINARIES: [(&str, bool); 2] = [("roslan", true), ("roslan-ipam", false)];

/// The mode of an installed plugin: a runtime runs it as root; others may run `roslan validate`.
pub const MODE: u32 = 0o755;

/// A plugin answers VERSION in about a millisecond; this only bounds a binary that hangs.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `path` as a runtime would for CNI VERSION and returns the versions it supports.
///
/// This is the check that matters to a runtime: the file is executable from this mount (not
/// noexec), built for this CPU, fully static (the node may lack its libraries), and a CNI plugin.
pub fn verify(path: &Path) -> Result<Vec<String>, Error> {
    let fail = |detail: String| Error::Verify {
        path: path.into(),
        detail,
    };
    let mut child = spawn_version(path).map_err(|err| fail(format!("cannot run it: {err}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin may exit without reading stdin; the resulting EPIPE is not a failure.
        let _ = stdin.write_all(br#"{"cniVersion":"1.0.0"}"#);
    }
    let deadline = Instant::now() + VERIFY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer within {}s", VERIFY_TIMEOUT.as_secs())));
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(err) => return Err(fail(format!("cannot wait for it: {err}"))),
        }
    };
    // The reply is a few hundred bytes, far below a pipe's buffer, so the child never blocked on it.
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let excerpt = |text: &str| text.trim().chars().take(300).collect::<String>();
    if !status.success() {
        return Err(fail(format!(
            "{status}; stdout: {:?}; stderr: {:?}",
            excerpt(&stdout),
            excerpt(&stderr)
        )));
    }
    let reply: Value = serde_json::from_str(stdout.trim())
        .map_err(|err| fail(format!("its reply is not JSON ({err}): {:?}", excerpt(&stdout))))?;
    let versions: Vec<String> = reply
        .get("supportedVersions")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if versions.is_empty() {
        return Err(fail(format!(
            "its reply lists no supportedVersions: {:?}",
            excerpt(&stdout)
        )));
    }
    Ok(versions)
}

/// Starts `path` with a runtime's VERSION environment. ETXTBSY is retried briefly: a file that was
/// just written can still be open for writing in a child that another thread forked before the
/// writer closed it (that child closes it at its own exec, microseconds later).
fn spawn_version(path: &Path) -> std::io::Result<std::process::Child> {
    const ETXTBSY: i32 = nix::errno::Errno::ETXTBSY as i32;
    let mut attempts = 0;
    loop {
        let spawned = Command::new(path)
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Err(err) if err.raw_os_error() == Some(ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn verify_accepts_a_plugin_and_explains_everything_else() {
        let dir = std::env::temp_dir().join(format!("roslan-install-unit-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = script(
            &dir,
            "good",
            r#"[ "$CNI_COMMAND" = VERSION ] || exit 3; read -r line; case "$line" in *1.0.0*) ;; *) exit 4;; esac
echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","1.0.0"]}'"#,
        );
        assert_eq!(verify(&good).unwrap(), ["0.3.1", "1.0.0"]);
        let err = verify(&script(&dir, "noversions", "echo '{}'"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no supportedVersions"), "{err}");
        let err = verify(&script(&dir, "fails", "echo boom >&2; exit 1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("boom"), "{err}");
        let err = verify(&dir.join("absent")).unwrap_err().to_string();
        assert!(err.contains("cannot run it"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
