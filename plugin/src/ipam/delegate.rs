//! Any other IPAM plugin (whereabouts, static, dhcp, ...), executed from CNI_PATH as the spec says:
//! the same environment with CNI_COMMAND set, the complete network configuration on stdin, its stdout
//! read as a result or a CNI error. Its stderr is passed through to roslan's.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::cni::Request;
use crate::error::{Error, code};

/// How long a delegate may run. whereabouts waits for the API server; kubelet retries anyway.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a delegate's stdout kept: a result, like a configuration, is a few KiB.
const MAX_STDOUT: u64 = crate::cni::env::MAX_STDIN as u64;
/// The most of its stderr passed on to roslan's.
const MAX_STDERR: u64 = 1 << 20;

/// Reads `pipe` to its end and keeps the first `limit` bytes; `true` when more came.
fn keep_first(pipe: impl Read, limit: u64) -> (Vec<u8>, bool) {
    let mut pipe = pipe;
    let mut kept = Vec::new();
    let _ = (&mut pipe).take(limit).read_to_end(&mut kept);
    let rest = std::io::copy(&mut pipe, &mut std::io::sink()).unwrap_or(0);
    (kept, rest > 0)
}

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
    let mut child = Command::new(&binary)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &request.container_id)
        .env("CNI_NETNS", &request.netns)
        .env("CNI_IFNAME", &request.ifname)
        .env("CNI_ARGS", &request.args)
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Io {
            what: format!("run IPAM plugin {}", binary.display()),
            source,
        })?;
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&request.stdin);
    }
    let (tx, rx) = mpsc::channel();
    // Both pipes are drained to the end, so a chatty delegate cannot block on a full pipe, but only the
    // first MAX_STDOUT / MAX_STDERR bytes are kept: a delegate printing without end must not grow
    // roslan without end.
    let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
    std::thread::spawn(move || {
        let stderr = std::thread::spawn(move || err_pipe.map(|p| keep_first(p, MAX_STDERR)).unwrap_or_default());
        let stdout = out_pipe.map(|p| keep_first(p, MAX_STDOUT)).unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let _ = tx.send(child.wait().map(|status| (status, stdout, stderr)));
    });
    let Ok(output) = rx.recv_timeout(TIMEOUT) else {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        return Err(Error::TryAgain(format!(
            "IPAM plugin {plugin:?} did not answer {command} within {}s",
            TIMEOUT.as_secs()
        )));
    };
    let output = output.map_err(|source| Error::Io {
        what: format!("wait for IPAM plugin {plugin:?}"),
        source,
    })?;
    let (status, (stdout, stdout_cut), (stderr, _)) = output;
    let _ = std::io::stderr().write_all(&stderr);
    if stdout_cut {
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
