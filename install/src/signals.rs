//! SIGTERM and SIGINT as readable events instead of asynchronous interruptions.
//!
//! The kubelet stops the pod with SIGTERM and waits `terminationGracePeriodSeconds` before SIGKILL;
//! the installer must exit 0 at once, also in the middle of a long wait. The signals are blocked and
//! read from a signalfd, which the wait between checks polls: no handler runs at an arbitrary point,
//! so there is nothing async-signal-unsafe to get wrong and no `unsafe` code. A signal that arrives
//! during a check is kept pending and ends the next wait immediately, so a check is never cut in the
//! middle of a rename.
//!
//! A blocked mask is inherited across fork and exec, but the standard library's process spawning
//! resets the child's mask, so the plugins the installer runs for verification still die on SIGTERM.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::Error;

/// The stop signals, readable.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks SIGTERM and SIGINT for the calling thread and routes them to a signalfd. Call it
    /// before any other thread exists (threads inherit the mask; a thread without it would take the
    /// signal and die with its default action).
    pub fn install() -> Result<Signals, Error> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block().map_err(Error::Signals)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(Error::Signals)?;
        Ok(Signals { fd })
    }

    /// Waits up to `timeout` (`None`: for ever) and returns the stop signal if one came.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<Signal>, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(signal) = self.pending()? {
                return Ok(Some(signal));
            }
            let poll_timeout = match deadline {
                None => PollTimeout::NONE,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Round up: a 0 ms poll that returns at once would spin until the deadline.
                    let millis = left.as_millis().saturating_add(1).min(i32::MAX as u128);
                    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, poll_timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(Error::Signals(errno)),
            }
        }
    }

    /// A stop signal that has arrived, without waiting.
    pub fn pending(&self) -> Result<Option<Signal>, Error> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Ok(Signal::try_from(info.ssi_signo as i32).ok().or(Some(Signal::SIGTERM))),
            Ok(None) => Ok(None),
            Err(errno) => Err(Error::Signals(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The installer relies on spawned children not inheriting its blocked SIGTERM.
    #[test]
    fn children_start_with_an_empty_signal_mask() {
        // Blocking in this test's own thread only: the harness runs each test on its own thread.
        let signals = Signals::install().unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", "grep '^SigBlk:' /proc/self/status"])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let mask = u64::from_str_radix(line.trim().trim_start_matches("SigBlk:").trim(), 16).unwrap();
        let term = 1u64 << (Signal::SIGTERM as i32 - 1);
        assert_eq!(mask & term, 0, "child inherited a blocked SIGTERM: {line}");
        assert_eq!(signals.wait(Some(Duration::from_millis(20))).unwrap(), None);
    }
}
