//! The request as the runtime hands it over: CNI_* environment variables plus stdin.
//!
//! Validation follows the Go reference (`skel`) so that roslan refuses exactly what other plugins refuse,
//! with one deliberate difference: CNI_PATH is only required when a delegate has to be found in it, as
//! the spec says, because roslan serves its IPAM in-process.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;

use crate::error::Error;

/// Largest stdin accepted: configurations with a prevResult are a few KiB; anything near this is hostile.
pub const MAX_STDIN: usize = 4 << 20;
/// Longest container ID accepted. Runtimes use 64 hex digits; the cap keeps derived names bounded.
pub const MAX_CONTAINER_ID: usize = 1024;
/// IFNAMSIZ - 1.
pub const MAX_IFNAME: usize = 15;

/// CNI_COMMAND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach, best-effort.
    Del,
    /// Verify an attachment against its ADD result.
    Check,
    /// Report supported versions.
    Version,
    /// Can ADD be served?
    Status,
    /// Release what no listed attachment uses.
    Gc,
}

impl Command {
    /// Parses CNI_COMMAND.
    pub fn parse(text: &str) -> Option<Command> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    /// DEL and GC tear down what a configuration created, possibly since edited badly or written for a
    /// newer roslan: they must work with whatever still identifies the reservations.
    pub fn is_cleanup(self) -> bool {
        matches!(self, Command::Del | Command::Gc)
    }

    /// The command's name as the spec spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// One plugin invocation.
#[derive(Clone, Debug)]
pub struct Request {
    /// CNI_COMMAND.
    pub command: Command,
    /// CNI_CONTAINERID (validated when present).
    pub container_id: String,
    /// CNI_NETNS, the pod's network namespace: `None` when absent or empty, which only DEL allows (the
    /// namespace may be gone); ADD and CHECK are refused without it, so [`Request::pod_netns`] is theirs.
    pub netns: Option<String>,
    /// CNI_IFNAME (validated when present).
    pub ifname: String,
    /// CNI_ARGS, unparsed: ADD parses it strictly, DEL leniently.
    pub args: String,
    /// CNI_PATH, split on ':'.
    pub path: Vec<PathBuf>,
    /// stdin.
    pub stdin: Vec<u8>,
    /// Whether CNI_NETNS may be the plugin's own namespace (CNI_NETNS_OVERRIDE, as in the Go library).
    pub netns_override: bool,
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the spec's pattern for container IDs and network names.
pub fn is_valid_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Names the kernel uses for itself under `/proc/sys/net/*/conf/` and `neigh/`: a link called `all`
/// or `default` would have its sysctls confused with the namespace-wide ones, and the kernel refuses
/// the rename late (after the link was created and addressed).
pub const RESERVED_IFNAMES: &[&str] = &["all", "default"];

/// The Go reference's interface name rules, plus the names the kernel reserves in sysctl paths.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "{name:?} is longer than {MAX_IFNAME} bytes (the kernel's IFNAMSIZ)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a valid interface name: \".\" and \"..\" name directories in /sys/class/net and /proc/sys/net"
        ));
    }
    if RESERVED_IFNAMES.contains(&name) {
        return Err(format!(
            "{name:?} is reserved: /proc/sys/net/ipv4/conf/{name} holds the namespace-wide settings, so the kernel gives no link that name"
        ));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(format!("{name:?} contains '/', ':', whitespace or NUL"));
    }
    Ok(())
}

/// The environment variables roslan reads, for [`Request::read`].
const VARS: [&str; 7] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "CNI_NETNS_OVERRIDE",
];

/// A variable's value as text. Variables that name the attachment or steer the command must be
/// UTF-8 (code 4 otherwise, naming the variable): guessing at them would act on the wrong pod.
/// CNI_ARGS and CNI_PATH are replaced lossily on DEL and GC, which must not fail on input only ADD
/// needs; everywhere else a non-UTF-8 byte there would silently drop a requested `IP=`.
fn text_of(name: &'static str, value: OsString, lossy: bool) -> Result<String, Error> {
    match value.into_string() {
        Ok(text) => Ok(text),
        Err(raw) if lossy && matches!(name, "CNI_ARGS" | "CNI_PATH") => Ok(raw.to_string_lossy().into_owned()),
        Err(raw) => Err(Error::env(
            name,
            format!(
                "is not valid UTF-8 ({:?}); runtimes pass CNI variables as UTF-8 text",
                raw.to_string_lossy()
            ),
        )),
    }
}

impl Request {
    /// Reads the request from an environment lookup and a stdin reader.
    ///
    /// `Ok(None)` means CNI_COMMAND is unset: the caller prints the version banner.
    pub fn read(env: impl Fn(&str) -> Option<OsString>, stdin: impl Read) -> Result<Option<Request>, Error> {
        let Some(command_raw) = env("CNI_COMMAND") else {
            return Ok(None);
        };
        let command_text = command_raw.into_string().map_err(|raw| {
            Error::env(
                "CNI_COMMAND",
                format!(
                    "unknown CNI_COMMAND {:?}: it is not valid UTF-8; expected ADD, DEL, CHECK, VERSION, STATUS or GC",
                    raw.to_string_lossy()
                ),
            )
        })?;
        let command = Command::parse(&command_text).ok_or_else(|| {
            Error::env(
                "CNI_COMMAND",
                format!("unknown CNI_COMMAND {command_text:?}; expected ADD, DEL, CHECK, VERSION, STATUS or GC"),
            )
        })?;
        let mut values = std::collections::HashMap::new();
        for name in VARS {
            if let Some(raw) = env(name) {
                values.insert(name, text_of(name, raw, command.is_cleanup())?);
            }
        }
        let get = |name: &str| values.get(name).cloned().unwrap_or_default();
        let mut request = Request {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: Some(get("CNI_NETNS")).filter(|path| !path.is_empty()),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH")
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            stdin: read_stdin(stdin)?,
            netns_override: matches!(get("CNI_NETNS_OVERRIDE").as_str(), "1" | "true"),
        };
        request.validate()?;
        request.forget_unused();
        Ok(Some(request))
    }

    /// The pod's namespace for the commands that require one (ADD, CHECK): their requests are refused
    /// without CNI_NETNS when read, so this fails only if called for another command.
    pub fn pod_netns(&self) -> Result<&str, Error> {
        self.netns.as_deref().ok_or_else(|| {
            Error::env(
                "CNI_NETNS",
                format!(
                    "required environment variables missing for {}: CNI_NETNS",
                    self.command.as_str()
                ),
            )
        })
    }

    /// VERSION, STATUS and GC concern no attachment, so CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME are not
    /// validated for them; whatever a caller sets there anyway is dropped, so that no unvalidated name
    /// can reach a path or a link name later (found by the `environment` fuzz target).
    fn forget_unused(&mut self) {
        if matches!(self.command, Command::Version | Command::Status | Command::Gc) {
            self.container_id.clear();
            self.netns = None;
            self.ifname.clear();
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let (needs_container, needs_netns, needs_ifname) = match self.command {
            Command::Add | Command::Check => (true, true, true),
            Command::Del => (true, false, true),
            Command::Version | Command::Status | Command::Gc => (false, false, false),
        };
        let missing: Vec<&str> = [
            (needs_container && self.container_id.is_empty(), "CNI_CONTAINERID"),
            (needs_netns && self.netns.is_none(), "CNI_NETNS"),
            (needs_ifname && self.ifname.is_empty(), "CNI_IFNAME"),
        ]
        .into_iter()
        .filter_map(|(gone, name)| gone.then_some(name))
        .collect();
        if let Some(first) = missing.first() {
            return Err(Error::env(
                first,
                format!(
                    "required environment variables missing for {}: {}",
                    self.command.as_str(),
                    missing.join(", ")
                ),
            ));
        }
        if needs_container {
            if self.container_id.len() > MAX_CONTAINER_ID {
                return Err(Error::env(
                    "CNI_CONTAINERID",
                    format!("is longer than {MAX_CONTAINER_ID} bytes"),
                ));
            }
            if !is_valid_identifier(&self.container_id) {
                return Err(Error::env(
                    "CNI_CONTAINERID",
                    format!(
                        "invalid characters in containerID {:?}: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$",
                        self.container_id
                    ),
                ));
            }
        }
        if needs_ifname {
            check_ifname(&self.ifname)
                .map_err(|problem| Error::env("CNI_IFNAME", format!("interface name {problem}")))?;
        }
        Ok(())
    }
}

fn read_stdin(stdin: impl Read) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    stdin
        .take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|source| Error::Io {
            what: "reading the network configuration from stdin".into(),
            source,
        })?;
    if data.len() > MAX_STDIN {
        return Err(Error::Decode {
            what: "network configuration on stdin",
            detail: format!(
                "larger than {} MiB; a CNI configuration is never that large",
                MAX_STDIN >> 20
            ),
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn request(vars: &[(&str, &str)]) -> Result<Option<Request>, Error> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Request::read(|k| map.get(k).cloned(), &b"{}"[..])
    }

    #[test]
    fn non_utf8_values_are_named() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(b"AD\xffD".to_vec());
        let with = |name: &str, command: &str| {
            let mut map: HashMap<&str, OsString> = [
                ("CNI_COMMAND", OsString::from(command)),
                ("CNI_CONTAINERID", OsString::from("c")),
                ("CNI_NETNS", OsString::from("/run/netns/x")),
                ("CNI_IFNAME", OsString::from("net1")),
            ]
            .into_iter()
            .collect();
            map.insert(name, bad());
            Request::read(|k| map.get(k).cloned(), &b"{}"[..])
        };
        // Every variable but CNI_NETNS_OVERRIDE, a flag.
        for name in &VARS[..6] {
            let err = with(name, "ADD").unwrap_err();
            assert_eq!(err.code(), 4, "{name}: {err}");
            assert!(
                err.to_string().contains(name) && err.to_string().contains("UTF-8"),
                "{err}"
            );
        }
        // DEL must not fail on what only ADD uses.
        assert!(with("CNI_ARGS", "DEL").unwrap().is_some());
        assert_eq!(with("CNI_CONTAINERID", "DEL").unwrap_err().code(), 4);
    }

    #[test]
    fn identifiers() {
        assert!(is_valid_identifier("abc-1.2_x"));
        assert!(!is_valid_identifier("-abc"));
        assert!(!is_valid_identifier("../etc"));
        assert!(!is_valid_identifier("a\nb"));
        assert!(!is_valid_identifier(""));
    }

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("net1").is_ok());
        assert!(check_ifname("a23456789012345").is_ok());
        assert!(check_ifname("a234567890123456").is_err());
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\nb", "all", "default"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_rules() {
        assert!(request(&[]).unwrap().is_none());
        assert_eq!(request(&[("CNI_COMMAND", "BOGUS")]).unwrap_err().code(), 4);
        let err = request(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")]).unwrap_err();
        assert!(err.to_string().contains("CNI_NETNS, CNI_IFNAME"), "{err}");
        assert!(request(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "net1")]).is_ok());
        assert!(request(&[("CNI_COMMAND", "VERSION")]).unwrap().is_some());
        let bad = request(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "../x"),
            ("CNI_IFNAME", "net1"),
        ]);
        assert_eq!(bad.unwrap_err().code(), 4);
    }

    #[test]
    fn commands_without_an_attachment_drop_its_names() {
        for command in ["GC", "STATUS", "VERSION"] {
            let request = request(&[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", "../../x"),
                ("CNI_NETNS", "/etc"),
                ("CNI_IFNAME", "a/b:c\n"),
            ])
            .unwrap()
            .unwrap();
            assert!(request.container_id.is_empty() && request.netns.is_none() && request.ifname.is_empty());
        }
    }
}
