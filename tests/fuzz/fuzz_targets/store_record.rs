//! Any content in a reservation file (files in the data directory may have been written by anything):
//! the store lists, finds and releases without panicking, and only releases what matches.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use roslan_ipam_core::{Owner, Store};

fn data_dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("roslan-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let content = String::from_utf8_lossy(data);
    if let Some(owner) = Owner::parse(&content) {
        assert!(owner.matches(&owner.record()), "a parsed owner matches its own record");
    }
    let store = Store::open(data_dir(), "net").expect("open store");
    std::fs::write(store.dir().join("10.0.0.7"), data).expect("write record");
    let mut locked = store.lock().expect("lock");
    let entries = locked.entries().expect("list");
    let stranger = Owner::new("fuzz-stranger", "net9");
    // Files from before CNI 0.8 hold only a container ID and match any interface of that container.
    if !entries.iter().any(|e| e.owner.container_id == stranger.container_id) {
        assert!(locked.release_owner(&stranger).expect("release").is_empty(), "only matching records are released");
    }
    for entry in entries {
        let _ = locked.find(&entry.owner).expect("find");
        let _ = locked.release(entry.ip, &entry.owner).expect("release");
    }
    drop(locked);
    let _ = std::fs::remove_file(store.dir().join("10.0.0.7"));
});
