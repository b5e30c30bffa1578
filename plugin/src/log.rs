//! Logging to stderr and, when `logFile` is set, to that file. Never to stdout: stdout is the protocol.
//!
//! A plugin process lives for a millisecond, so this is a line writer, not a framework: each line is
//! formatted once and written with one `write` per sink, which keeps lines from concurrent plugin
//! processes whole in a shared log file (O_APPEND).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use roslan_ipam_core::file::kind_of;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Every netlink step.
    Debug,
    /// What was configured.
    Info,
    /// Something the operator should fix.
    Warn,
    /// A failed command.
    Error,
}

impl Level {
    /// Parses a `logLevel` value.
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

struct Sinks {
    level: Level,
    file: Option<File>,
    context: String,
}

fn sinks() -> &'static Mutex<Sinks> {
    static SINKS: OnceLock<Mutex<Sinks>> = OnceLock::new();
    SINKS.get_or_init(|| {
        Mutex::new(Sinks {
            level: Level::Info,
            file: None,
            context: String::new(),
        })
    })
}

/// Sets the level, the optional log file and a context prefix (command, container, interface).
///
/// The log file gets the data directory's rules: an absolute path (checked with the configuration), no
/// symbolic link as its last component (so a configuration cannot make roslan append to a file of its
/// choosing), a regular file (never a FIFO, which would block, or a device such as a terminal), and
/// never the file stdout is, because stdout carries the result. Breaking one of these returns the
/// problem for the caller to report under `logFile`, and nothing is logged to the file. A file that
/// merely cannot be opened (a missing permission) is reported on stderr and otherwise ignored:
/// logging must never be the reason an attachment fails.
pub fn configure(level: Level, file: Option<&Path>, context: String) -> Result<(), String> {
    let opened = match file {
        Some(path) => open_log_file(path)?,
        None => None,
    };
    if let Ok(mut sinks) = sinks().lock() {
        sinks.level = level;
        sinks.file = opened;
        sinks.context = context;
    }
    Ok(())
}

fn open_log_file(path: &Path) -> Result<Option<File>, String> {
    if !path.is_absolute() {
        // Reported by the configuration check; never resolved against the runtime's directory.
        return Ok(None);
    }
    let refuse = |what: String| format!("{what}; use a regular file such as /var/log/roslan.log");
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refuse(format!(
                "{} is a symbolic link, which roslan does not follow",
                path.display()
            )));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(refuse(format!("{} is {}", path.display(), kind_of(meta.file_type()))));
        }
        _ => {}
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // O_NONBLOCK: a FIFO swapped in after the check must not block the open.
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let file = match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            return Err(refuse(format!(
                "{} is a symbolic link, which roslan does not follow",
                path.display()
            )));
        }
        Err(err) => {
            eprintln!("roslan: cannot open logFile {}: {err}", path.display());
            return Ok(None);
        }
    };
    let meta = file.metadata().map_err(|err| format!("{}: {err}", path.display()))?;
    if !meta.is_file() {
        return Err(refuse(format!("{} is {}", path.display(), kind_of(meta.file_type()))));
    }
    let stdout = nix::sys::stat::fstat(std::io::stdout().as_fd());
    if stdout.is_ok_and(|out| out.st_dev == meta.dev() && out.st_ino == meta.ino()) {
        return Err(refuse(format!(
            "{} is the file stdout goes to, and stdout carries only the CNI result",
            path.display()
        )));
    }
    Ok(Some(file))
}

/// Civil UTC time from the Unix epoch (Howard Hinnant's algorithm), to avoid a date crate.
fn timestamp() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Writes one line at `level` if the configured level lets it through.
pub fn write(level: Level, message: std::fmt::Arguments<'_>) {
    let Ok(mut sinks) = sinks().lock() else { return };
    if level < sinks.level {
        return;
    }
    let line = format!(
        "{} roslan {} {}{}\n",
        timestamp(),
        level.as_str(),
        sinks.context,
        message
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(file) = sinks.file.as_mut() {
        let _ = file.write_all(line.as_bytes());
    }
}

// The macros are exported under private names and re-exported here, so that they are reached as
// `log::debug!` (or imported from `crate::log`): an `error!` at the crate root would share its name with the
// `error` module, and every user of a macro would depend on `log` without the import saying so.

/// Logs at debug level.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) } }
/// Logs at info level.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) } }
/// Logs at warn level.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) } }
/// Logs at error level.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) } }

/// Logs at debug level: `log::debug!("...")`.
pub use crate::__log_debug as debug;
/// Logs at error level: `log::error!("...")`.
pub use crate::__log_error as error;
/// Logs at info level: `log::info!("...")`.
pub use crate::__log_info as info;
/// Logs at warn level: `log::warn!("...")`.
pub use crate::__log_warn as warn;

/// Phase timings of one command, logged at debug level so an operator can see where a slow ADD went.
pub struct Stopwatch {
    start: std::time::Instant,
    last: std::time::Instant,
    phases: Vec<(&'static str, std::time::Duration)>,
}

impl Default for Stopwatch {
    fn default() -> Self {
        let now = std::time::Instant::now();
        Stopwatch {
            start: now,
            last: now,
            phases: Vec::new(),
        }
    }
}

impl Stopwatch {
    /// Ends the current phase under `name`.
    pub fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }

    /// One line: total and per-phase microseconds.
    pub fn summary(&self) -> String {
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(n, d)| format!("{n}={}us", d.as_micros()))
            .collect();
        format!("took {}us: {}", self.start.elapsed().as_micros(), phases.join(" "))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let ts = super::timestamp();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.starts_with("20"), "{ts}");
    }
}
