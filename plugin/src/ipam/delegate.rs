//! Any other IPAM plugin (whereabouts, static, dhcp, ...), executed from CNI_PATH as the spec says:
//! the same environment with CNI_COMMAND set, the complete network configuration on stdin, its stdout
//! read as a result or a CNI error. Its stderr is passed through to roslan's.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::child::{ChildError, MAX_STDOUT, run_with_deadline};
use crate::cni::Request;
use crate::error::{Error, code};

/// How long a delegate may run. whereabouts waits for the API server; kubelet retries anyway.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Finds `plugin` in CNI_PATH. The name must be a plain file name: a `type` is never a path.
pub fn find(request: &Request, plugin: &str) -> Result<Option<PathBuf>, Error> {
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." || plugin.contains('\0') {
        return Err(Error::config(
            "ipam.type",
            format!("{plugin:?} is not a plugin name; it must be a file name found in CNI_PATH"),
        ));
    }
    Ok(request.path.iter().map(|dir| dir.join(plugin)).find(|p| p.is_file()))
}

/// Runs the delegate for `command` and returns its stdout as JSON (`None` when it printed nothing).
pub fn exec(request: &Request, plugin: &str, command: &str) -> Result<Option<Value>, Error> {
    let Some(binary) = find(request, plugin)? else {
        let dirs: Vec<String> = request.path.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Delegate {
            plugin: plugin.to_string(),
            code: code::DELEGATE,
            msg: format!(
                "failed to find plugin {plugin:?} in CNI_PATH [{}]; install it on the node or change ipam.type",
                dirs.join(", ")
            ),
            details: None,
        });
    };
    let path = std::env::join_paths(&request.path).unwrap_or_default();
    let mut delegate = Command::new(&binary);
    delegate
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &request.container_id)
        .env("CNI_IFNAME", &request.ifname)
        .env("CNI_ARGS", &request.args)
        .env("CNI_PATH", path);
    // A DEL without CNI_NETNS passes none on, rather than an empty one.
    match &request.netns {
        Some(netns) => delegate.env("CNI_NETNS", netns),
        None => delegate.env_remove("CNI_NETNS"),
    };
    let output = match run_with_deadline(&mut delegate, Some(&request.stdin), TIMEOUT) {
        Ok(output) => output,
        Err(ChildError::Spawn(source)) => {
            return Err(Error::Io {
                what: format!("run IPAM plugin {}", binary.display()),
                source,
            });
        }
        Err(ChildError::Wait(source)) => {
            return Err(Error::Io {
                what: format!("wait for IPAM plugin {plugin:?}"),
                source,
            });
        }
        Err(ChildError::Deadline(_)) => {
            return Err(Error::TryAgain(format!(
                "IPAM plugin {plugin:?} did not answer {command} within {}s",
                TIMEOUT.as_secs()
            )));
        }
    };
    let (status, stdout, stderr) = (output.status, output.stdout, output.stderr);
    let _ = std::io::stderr().write_all(&stderr);
    if output.stdout_cut {
        return Err(Error::Decode {
            what: "IPAM plugin output",
            detail: format!(
                "{plugin:?} printed more than {} MiB for {command}; a CNI result is never that large",
                MAX_STDOUT >> 20
            ),
        });
    }
    let text = String::from_utf8_lossy(&stdout);
    let json = if text.trim().is_empty() {
        None
    } else {
        serde_json::from_str::<Value>(text.trim()).ok()
    };
    if status.success() {
        if json.is_none() && !text.trim().is_empty() {
            return Err(Error::Decode {
                what: "IPAM plugin output",
                detail: format!("{plugin:?} printed something that is not JSON: {}", text.trim()),
            });
        }
        return Ok(json);
    }
    // A CNI error object on stdout keeps its code; otherwise stderr is the message (libcni's rule).
    let field = |key: &str| json.as_ref().and_then(|j| j.get(key));
    Err(Error::Delegate {
        plugin: plugin.to_string(),
        code: field("code")
            .and_then(Value::as_u64)
            .map_or(code::DELEGATE, |c| c as u32),
        msg: field("msg")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&stderr).trim().to_string()),
        details: field("details").and_then(Value::as_str).map(str::to_string),
    })
}
