//! The plugin binaries: which ones, and proving that an installed one works.

use std::path::Path;
use std::time::Duration;

use roslan::child::{ChildError, ask_version};

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
    let answer = ask_version(path, VERIFY_TIMEOUT).map_err(|err| {
        fail(match err {
            ChildError::Spawn(err) => format!("cannot run it: {err}"),
            ChildError::Wait(err) => format!("cannot wait for it: {err}"),
            ChildError::Deadline(limit) => format!("no answer within {}s", limit.as_secs()),
        })
    })?;
    let stdout = answer.stdout_text();
    let stderr = String::from_utf8_lossy(&answer.output.stderr);
    let excerpt = |text: &str| text.trim().chars().take(300).collect::<String>();
    if !answer.output.status.success() {
        return Err(fail(format!(
            "{}; stdout: {:?}; stderr: {:?}",
            answer.output.status,
            excerpt(&stdout),
            excerpt(&stderr)
        )));
    }
    if let Err(err) = &answer.reply {
        return Err(fail(format!("its reply is not JSON ({err}): {:?}", excerpt(&stdout))));
    }
    let versions = answer.supported();
    if versions.is_empty() {
        return Err(fail(format!(
            "its reply lists no supportedVersions: {:?}",
            excerpt(&stdout)
        )));
    }
    Ok(versions)
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
