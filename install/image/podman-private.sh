#!/bin/bash
# Runs podman with everything it keeps under DIR, so that building or loading an image changes nothing
# of the machine's own container state:
#
#   install/image/podman-private.sh DIR PODMAN-ARGS...
#
# - configuration: DIR/containers.conf is the only containers.conf read (CONTAINERS_CONF), its network
#   configuration directory is DIR/net.d (not /etc/cni/net.d, where podman would create a lock file), the storage
#   (vfs: layers and container roots are plain directories, no mounts to leave behind) is DIR/storage and
#   DIR/run, the registries file is empty (no search registries: nothing is pulled by a short name), HOME
#   and TMPDIR are under DIR;
# - /var/lib: podman's image library keeps a blob-info cache at /var/lib/containers/cache for root whatever
#   its storage root is (containers/image has no option for it). As root, podman therefore runs in a
#   private mount namespace in which /var/lib is an overlay whose upper layer is DIR/var-lib: the cache,
#   and anything else written below /var/lib, lands in DIR. The machine's /var/lib is only read.
#
# Used by install/image/roslan.sh (make image) and tests/tests/image.rs. The caller removes DIR (after
# `podman system reset --force` through this script, which also removes the containers' state).
set -euo pipefail

dir=${1:?usage: install/image/podman-private.sh DIR PODMAN-ARGS...}
shift
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mkdir -p "$dir/storage" "$dir/run" "$dir/tmp" "$dir/home" "$dir/net.d" "$dir/cni-bin" "$dir/var-lib/upper" "$dir/var-lib/work"
if [ ! -e "$dir/containers.conf" ]; then
    # runc, because crun 1.8 refuses this machine's hybrid cgroup layout; cgroupfs, because there is no
    # systemd; ulimits within the hard limits of a process without CAP_SYS_RESOURCE; file locks, so that
    # podman does not create /dev/shm/libpod_lock; network directories of its own, or podman's CNI backend
    # puts its cni.lock into /etc/cni/net.d (containers run with --network none here).
    cat >"$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[network]
network_backend = "cni"
network_config_dir = "$dir/net.d"
cni_plugin_dirs = ["$dir/cni-bin"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/tmp/events.log"
runtime = "runc"
tmp_dir = "$dir/tmp"
lock_type = "file"
EOF
    cat >"$dir/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
    : >"$dir/registries.conf"
fi

run=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$dir/home" TMPDIR="$dir/tmp"
    CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
    CONTAINERS_REGISTRIES_CONF="$dir/registries.conf"
    ${SOURCE_DATE_EPOCH:+SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH"} podman "$@")
if [ "$(id -u)" = 0 ]; then
    exec unshare --mount --propagation private -- /bin/sh -c \
        'mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$0/var-lib/upper,workdir=$0/var-lib/work" /var/lib && exec "$@"' \
        "$dir" "${run[@]}"
fi
exec "${run[@]}"
