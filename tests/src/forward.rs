//! The API server's loopback port, made reachable from a node's network namespace.
//!
//! The control plane of [`crate::apiserver`] listens on 127.0.0.1 of the test's own namespace; a CNI
//! plugin that calls the API itself (whereabouts) runs in a node's namespace, whose 127.0.0.1 is another
//! loopback. No interface may be added to the machine's own namespace, so the test process forwards: a
//! listening socket created inside the node's namespace (a socket stays in the namespace it was made in)
//! on the same port, each connection copied to and from 127.0.0.1 here. Only loopback traffic; the
//! forward stops when dropped. When the API server is stopped, a connection through the forward is
//! accepted and closed at once instead of refused: to the client it is the same failure.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use crate::netns::Netns;

/// A running forward; dropping it stops accepting (open connections end with their peers).
#[derive(Debug)]
pub struct Forward {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// Binds 127.0.0.1:`port` inside `ns`, on a thread of its own that enters the namespace and ends.
fn listen_in(ns: &Netns, port: u16) -> TcpListener {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|err| panic!("open {path}: {err}"));
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).unwrap_or_else(|err| panic!("enter {path}: {err}"));
        TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|err| panic!("bind 127.0.0.1:{port} in {path}: {err}"))
    })
    .join()
    .expect("bind thread")
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Forward {
    /// Forwards 127.0.0.1:`port` in `ns` to 127.0.0.1:`port` in the test's namespace.
    pub fn loopback_into(ns: &Netns, port: u16) -> Forward {
        let listener = listen_in(ns, port);
        listener.set_nonblocking(true).expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((inside, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = inside.set_nonblocking(false);
                let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let (Ok(inside2), Ok(outside2)) = (inside.try_clone(), outside.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || pump(inside, outside));
                std::thread::spawn(move || pump(outside2, inside2));
            }
        });
        Forward {
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
