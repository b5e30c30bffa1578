//! Measurement helpers for `roslan-bench`: timing plugin invocations with as little harness overhead
//! as possible, and the kernel's own link deletion for comparison.
//!
//! The benchmark process moves its main thread into the node namespace, so each plugin call is a
//! plain fork/exec of the plugin (no `ip netns exec`, which costs about 1 ms and would dilute the
//! comparison). Both plugins are timed by the same code, interleaved, on the same LAN.
//!
//! Peak memory is measured by a fresh measuring process per call ([`measure_exec`], the bench binary
//! run again with [`MEASURE_EXEC`]): its only child is the plugin, so `getrusage(RUSAGE_CHILDREN)` after
//! reaping it is the plugin's peak RSS, or that of a descendant the plugin reaped if larger (the
//! kernel folds a reaped child's high-water mark into its parent's children figure). A long-lived
//! process cannot do this with deltas: `ru_maxrss` is a high-water mark, not a sum. CPU time, which
//! is a sum, is taken as a delta ([`cpu_call`]); instructions are counted under callgrind
//! ([`count_instructions`]), each process of a call in its own log.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket};
use serde_json::Value;

use crate::netns::Netns;

/// Moves the calling thread into `ns` for good (the benchmark's main thread lives in the node).
pub fn enter(ns: &Netns) {
    let file = std::fs::File::open(ns.path()).expect("open netns");
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns into the node namespace");
}

/// One timed plugin call from the current thread's namespace.
pub fn time_call(plugin: &std::path::Path, env: &[(&str, &str)], stdin: &[u8]) -> (Duration, bool, Vec<u8>) {
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait plugin");
    (start.elapsed(), out.status.success(), out.stdout)
}

/// Deletes a link by name inside `ns` with one raw RTM_DELLINK and returns how long the kernel took
/// to answer: the floor any DEL implementation pays.
pub fn kernel_delete_link(ns: &Netns, ifname: &str) -> Duration {
    let path = ns.path();
    let name = ifname.to_string();
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).expect("open netns");
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
        let sock = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .expect("netlink socket");
        // nlmsghdr + ifinfomsg + IFLA_IFNAME.
        const RTM_DELLINK: u16 = 17;
        const NLM_F_REQUEST_ACK: u16 = 1 | 4;
        const IFLA_IFNAME: u16 = 3;
        let attr_len = 4 + name.len() + 1;
        let padded = (attr_len + 3) & !3;
        let total = 16 + 16 + padded;
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&RTM_DELLINK.to_ne_bytes());
        msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[0u8; 16]);
        msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        msg.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        msg.extend_from_slice(name.as_bytes());
        msg.resize(total, 0);
        let start = Instant::now();
        sendto(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            &msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .expect("send");
        let mut buf = [0u8; 4096];
        let n = recv(std::os::fd::AsRawFd::as_raw_fd(&sock), &mut buf, MsgFlags::empty()).expect("recv");
        let elapsed = start.elapsed();
        let errno = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        assert!(n >= 20 && errno == 0, "RTM_DELLINK {name} failed: errno {}", -errno);
        elapsed
    })
    .join()
    .expect("delete thread")
}

/// The argument that turns the bench binary into a measuring wrapper: `--measure-exec LABEL PROGRAM`.
pub const MEASURE_EXEC: &str = "--measure-exec";

/// The environment variable naming the file a measuring wrapper appends its record to.
pub const RSS_FILE_ENV: &str = "ROSLAN_BENCH_RSS";

/// The measuring wrapper: runs `program` with this process's stdin, stdout, stderr and environment,
/// reaps it, appends `LABEL MAXRSS_KIB` to the file named by [`RSS_FILE_ENV`],
/// and exits with the program's status. It prints nothing, so the program's stdout is passed through
/// untouched.
pub fn measure_exec(label: &str, program: &Path) -> ! {
    let code = match Command::new(program).status() {
        Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(err) => {
            eprintln!("measuring wrapper: cannot run {}: {err}", program.display());
            127
        }
    };
    let children = getrusage(UsageWho::RUSAGE_CHILDREN).map_or(-1, |u| u.max_rss());
    if let Some(path) = std::env::var_os(RSS_FILE_ENV) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{label} {children}\n").as_bytes()));
        if let Err(err) = written {
            eprintln!("measuring wrapper: cannot write {}: {err}", path.to_string_lossy());
            std::process::exit(125);
        }
    }
    std::process::exit(code)
}

/// One record of a measuring wrapper.
#[derive(Clone, Debug)]
pub struct RssRecord {
    /// The label the wrapper was given.
    pub label: String,
    /// Peak RSS of the wrapped program or of the largest descendant it reaped, KiB.
    pub max_rss_kib: u64,
}

/// Runs `command` as a runtime runs a plugin: only `env` in its environment (plus what the caller set
/// on `command`), `stdin` written to it, stdout captured, stderr dropped.
fn run_with_stdin(command: &mut Command, env: &[(&str, &str)], stdin: &[u8], what: &str) -> std::process::Output {
    // env_clear() drops what the caller set too, so keep those and put them back after the clear.
    let set: Vec<_> = command
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect();
    let mut child = command
        .env_clear()
        .envs(env.iter().copied())
        .envs(set)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {what}: {err}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .unwrap_or_else(|err| panic!("write the stdin of {what}: {err}"));
    child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("wait for {what}: {err}"))
}

/// One plugin call through the measuring wrapper `bench` (the bench binary itself), from the current
/// thread's namespace, with `env` plus [`RSS_FILE_ENV`]. Returns success, stdout and every record
/// written during the call: the outer wrapper's (labelled `top`) and any from wrappers the plugin ran.
///
/// A child's `ru_maxrss` starts from the memory it shares with its parent until it execs (Linux
/// records the outgoing address space's high-water mark at exec, and posix_spawn shares the parent's
/// until then), so the wrapper's own small footprint (about 1 MiB, static) is the lowest figure this
/// method can report: measure `/bin/true` the same way to know it.
pub fn measured_call(
    bench: &Path,
    plugin: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
    report: &Path,
) -> (bool, Vec<u8>, Vec<RssRecord>) {
    let _ = std::fs::remove_file(report);
    let mut wrapper = Command::new(bench);
    wrapper
        .arg(MEASURE_EXEC)
        .arg("top")
        .arg(plugin)
        .env(RSS_FILE_ENV, report);
    let out = run_with_stdin(&mut wrapper, env, stdin, "the measuring wrapper");
    let records = std::fs::read_to_string(report)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(RssRecord {
                label: fields.next()?.to_string(),
                max_rss_kib: fields.next()?.parse().ok()?,
            })
        })
        .collect();
    (out.status.success(), out.stdout, records)
}

/// Whether an ELF executable asks for a dynamic loader (has a PT_INTERP program header); `None` when
/// the file is not a 64-bit little-endian ELF.
pub fn elf_is_dynamic(path: &Path) -> Option<bool> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(bytes.get(0x20..0x28)?.try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    const PT_INTERP: u32 = 3;
    let mut dynamic = false;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        dynamic |= u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) == PT_INTERP;
    }
    Some(dynamic)
}

/// Summary statistics: milliseconds for durations, the samples' own unit for [`Stats::of_values`].
#[derive(Clone, Debug)]
pub struct Stats {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
}

impl Stats {
    /// Summarises durations (in milliseconds).
    pub fn of(samples: &[Duration]) -> Stats {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Stats::of_values(&ms)
    }

    /// Summarises plain numbers (any unit).
    pub fn of_values(samples: &[f64]) -> Stats {
        let mut ms = samples.to_vec();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let at = |q: f64| {
            ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Stats {
            n: ms.len(),
            median: at(0.5),
            p10: at(0.1),
            p90: at(0.9),
        }
    }

    /// As JSON, in milliseconds.
    pub fn json(&self) -> Value {
        self.json_in("ms")
    }

    /// As JSON, with `unit` in the key names (`median_<unit>`, `p10_<unit>`, `p90_<unit>`).
    pub fn json_in(&self, unit: &str) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("n".into(), self.n.into());
        out.insert(format!("median_{unit}"), round(self.median).into());
        out.insert(format!("p10_{unit}"), round(self.p10).into());
        out.insert(format!("p90_{unit}"), round(self.p90).into());
        Value::Object(out)
    }
}

/// Rounds to two decimals.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One plugin call from the current thread's namespace, with the CPU time (user + system) of the
/// plugin and every descendant it reaped, from the growth of `getrusage(RUSAGE_CHILDREN)` across
/// the call. Only meaningful while no other thread of this process reaps a child: the sections that
/// use it run their calls one at a time.
pub fn cpu_call(plugin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> (Duration, Duration, bool, Vec<u8>) {
    let before = children_cpu();
    let (took, ok, stdout) = time_call(plugin, env, stdin);
    (took, children_cpu().saturating_sub(before), ok, stdout)
}

/// User + system time of every reaped child of this process so far.
pub fn children_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let of = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    of(usage.user_time()) + of(usage.system_time())
}

/// The environment variable every instruction-counting run gets: Go's runtime otherwise preempts
/// goroutines with SIGURG every 10 ms, signals that valgrind serialises and callgrind must track.
pub const GO_UNDER_VALGRIND: (&str, &str) = ("GODEBUG", "asyncpreemptoff=1");

/// The instructions one process executed under callgrind.
#[derive(Clone, Debug)]
pub struct ProcessCount {
    /// The program, as valgrind's `Command:` line names it.
    pub program: String,
    /// Guest instructions executed (callgrind's `Ir`), all threads together.
    pub instructions: u64,
}

/// Why a counting run gave no figure.
#[derive(Clone, Debug)]
pub enum CountFailure {
    /// valgrind itself gave up (its own assertion or crash) in the named programs: the run says nothing
    /// about the plugin, so it may be retried.
    Valgrind(String),
    /// The plugin ran and failed: its stdout.
    Plugin(String),
}

/// Runs `plugin` once under `valgrind --tool=callgrind --trace-children=yes` from the current
/// thread's namespace and returns the instruction count of every process of the tree (the plugin and
/// whatever it executed, e.g. the reference macvlan's host-local), read from each process's own log
/// file in `scratch` (valgrind's messages stay apart from the plugin's stdout and stderr).
///
/// `--separate-threads=yes` keeps callgrind's per-thread state apart, which Go's many threads need;
/// the figure is still the process's total over its threads.
pub fn count_instructions(
    scratch: &Path,
    plugin: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<Vec<ProcessCount>, CountFailure> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).expect("valgrind scratch directory");
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg("--trace-children=yes")
        .arg("--separate-threads=yes")
        .arg("--callgrind-out-file=/dev/null")
        .arg(format!("--log-file={}/vg.%p", scratch.display()))
        .arg(plugin)
        .env(GO_UNDER_VALGRIND.0, GO_UNDER_VALGRIND.1);
    let out = run_with_stdin(
        &mut valgrind,
        env,
        stdin,
        "valgrind (apt-get install valgrind; make deps does)",
    );
    let mut counts = Vec::new();
    let mut broken = Vec::new();
    let mut logs: Vec<_> = std::fs::read_dir(scratch)
        .expect("read valgrind logs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let field = |key: &str| {
            text.lines()
                .find_map(|line| {
                    line.split_once("== ")
                        .and_then(|(_, rest)| rest.trim_start().strip_prefix(key))
                })
                .map(|v| v.trim().to_string())
        };
        let program = field("Command:").unwrap_or_else(|| log.display().to_string());
        match field("Collected :").and_then(|n| n.parse().ok()) {
            Some(instructions) => counts.push(ProcessCount { program, instructions }),
            None => {
                // A process valgrind could not finish; which of valgrind's own checks failed says why.
                let why = text
                    .lines()
                    .find(|l| l.contains("Assertion") || l.contains("valgrind: the 'impossible' happened"))
                    .unwrap_or("no instruction count in its log")
                    .trim()
                    .to_string();
                broken.push(format!("{program}: {why}"));
            }
        }
    }
    if !broken.is_empty() {
        return Err(CountFailure::Valgrind(broken.join("; ")));
    }
    if !out.status.success() {
        return Err(CountFailure::Plugin(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    Ok(counts)
}
