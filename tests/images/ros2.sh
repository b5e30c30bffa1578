#!/bin/bash
# Builds the ROS 2 workload image offline, cached by a hash of its inputs (`make ros-image`):
#
#   tests/images/ros2.sh CACHE_DIR
#
# A Debian bookworm root filesystem (debootstrap, variant minbase, from Debian's own mirror) with python3,
# a venv at /opt/ros holding the pinned ROS 2 Kilted wheels (rclpy, std_msgs, rmw_fastrtps_cpp: every
# package pinned in tests/requirements-ros.txt) and PyPI cyclonedds (pinned in tests/requirements.txt),
# and the scripts: the seed's talker and listener (manifests/examples/scripts/) and the Cyclone chatter
# (tests/dds/chatter.py) in /opt/roslan/scripts/. One layer, written by install/image/oci_archive.py as
# CACHE_DIR/ros2-<key>/ros2.oci.tar and named localhost/roslan/ros2:kilted; CACHE_DIR/ros2.oci.tar links to
# the newest build.
#
# The examples run `python3 /scripts/publisher.py t1` as the container's args (no command): the image has
# no entrypoint and /opt/ros/bin first in PATH, so `python3` is the venv's and finds rclpy; the scripts come
# from the examples' ConfigMap, as with `ros:jazzy`. Point the examples at this image with a kustomize
# `images:` entry: `{name: ros, newName: localhost/roslan/ros2, newTag: kilted}`. Cyclone pods run
# `python3 /opt/roslan/scripts/chatter.py talker|listener`.
#
# No /etc/machine-id: every container must not look like one host to Fast DDS (which would then try its
# shared-memory transport between pods).
#
# The key is a sha256 over this script, oci_archive.py, the pins, the three scripts, the suite, mirror,
# variant, extra packages and architecture: any change builds a new image, the same inputs build nothing.
# The wheels are resolved by pip on the host (Python 3.11, as bookworm's) and installed in a chroot
# from that directory only (`--no-index`); nothing in the chroot reaches the network.
set -euo pipefail

cache=${1:?usage: tests/images/ros2.sh CACHE_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
name=localhost/roslan/ros2:kilted
suite=bookworm
mirror=${ROSLAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
variant=minbase
packages=python3,python3-venv
arch=$(dpkg --print-architecture)

[ "$(id -u)" = 0 ] || { echo "tests/images/ros2.sh needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install --no-install-recommends debootstrap (make deps)" >&2; exit 1; }

# The wheels: every ROS package as tests/requirements-ros.txt pins it, and cyclonedds as
# tests/requirements.txt does (one source of truth with the test venv).
[ -f "$repo/tests/requirements-ros.txt" ] || { echo "tests/requirements-ros.txt is missing" >&2; exit 1; }
cyclonedds=$(grep -E '^cyclonedds==' "$repo/tests/requirements.txt") || {
    echo "tests/requirements.txt pins no cyclonedds" >&2; exit 1; }
requirements=$(grep -vE '^\s*(#|$)' "$repo/tests/requirements-ros.txt"; echo "$cyclonedds")
scripts=("$repo/manifests/examples/scripts/publisher.py" "$repo/manifests/examples/scripts/subscriber.py" "$repo/tests/dds/chatter.py")

key=$({
    sha256sum "$0" "$repo/install/image/oci_archive.py" "${scripts[@]}" | awk '{print $1}'
    printf '%s\n' "$requirements" "$suite" "$mirror" "$variant" "$packages" "$arch"
} | sha256sum | cut -c1-16)
dir=$cache/ros2-$key
out=$dir/ros2.oci.tar

report() { echo "ros2 $name $1 $out"; }
if [ -f "$out" ]; then
    ln -sfn "ros2-$key/ros2.oci.tar" "$cache/ros2.oci.tar"
    report cached
    exit 0
fi

mkdir -p "$cache"
# A build killed before its trap ran leaves its directory (a whole root filesystem) behind, named after
# its process: remove those whose process is gone.
for stale in "$cache"/.build-ros2-*; do
    [ -d "$stale" ] && ! kill -0 "${stale##*.}" 2>/dev/null && rm -rf "$stale"
done
work=$cache/.build-ros2-$key.$$
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
start=$(date +%s)

echo "ros2: wheels" >&2
printf '%s\n' "$requirements" >"$work/requirements.txt"
# `pip wheel`, not `pip download`: empy comes as an sdist and is built into a wheel here, so that the
# chroot installs wheels only. A throwaway venv's pip: the machine needs python3-venv, not python3-pip.
python3 -m venv "$work/pip"
"$work/pip/bin/pip" wheel -q --disable-pip-version-check -w "$work/wheels" -r "$work/requirements.txt"

echo "ros2: debootstrap $suite ($variant, $packages) from $mirror" >&2
debootstrap --variant="$variant" --include="$packages" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2; exit 1; }

echo "ros2: venv /opt/ros" >&2
mkdir -p "$rootfs/tmp/wheels"
cp "$work/wheels/"*.whl "$rootfs/tmp/wheels/"
cp "$work/requirements.txt" "$rootfs/tmp/requirements.txt"
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$rootfs" "$@"; }
in_root python3 -m venv /opt/ros
in_root /opt/ros/bin/pip install -q --disable-pip-version-check --no-index --find-links /tmp/wheels \
    -r /tmp/requirements.txt
in_root /opt/ros/bin/pip freeze --all >"$work/requirements.lock"
cp "$work/requirements.lock" "$rootfs/opt/ros/requirements.lock"
# The image's own check: the modules the scripts import load in it.
in_root /opt/ros/bin/python3 -c 'import rclpy, rclpy.executors, rclpy.node, std_msgs.msg, cyclonedds.domain, cyclonedds.idl'

install -D -m 0755 -t "$rootfs/opt/roslan/scripts" "${scripts[@]}"

# What must not be in an image: the build machine's name and resolver, a machine ID, caches and logs.
rm -rf "$rootfs/tmp/"* "$rootfs/var/tmp/"* "$rootfs/var/cache/apt/"*.bin "$rootfs/var/cache/apt/archives/"*.deb \
    "$rootfs/var/lib/apt/lists/"* "$rootfs/var/log/"* "$rootfs/root/.cache" "$rootfs/debootstrap"
rm -f "$rootfs/etc/machine-id" "$rootfs/var/lib/dbus/machine-id" "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"

versions=$(grep -E '^(ros-rclpy|ros-std-msgs|ros-rmw-fastrtps-cpp|ros-fastdds|cyclonedds)==' "$work/requirements.lock" | tr '\n' ' ')
python3 - "$work/config.json" "$key" "$versions" <<'EOF'
import json, sys
out, key, versions = sys.argv[1:]
json.dump({
    "Env": [
        "PATH=/opt/ros/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
        # Log lines reach `kubectl logs` as they are written.
        "PYTHONUNBUFFERED=1",
    ],
    "Cmd": ["python3"],
    "WorkingDir": "/",
    "Labels": {
        "org.opencontainers.image.title": "roslan ROS 2 workload",
        "org.opencontainers.image.description": "Debian bookworm, ROS 2 Kilted rclpy/std_msgs/Fast DDS and Cyclone DDS from PyPI, roslan's example talker, listener and Cyclone chatter",
        "org.opencontainers.image.source": "https://github.com/roslan/roslan",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "io.roslan.inputs": key,
        "io.roslan.packages": versions.strip(),
    },
}, open(out, "w"), sort_keys=True)
EOF

echo "ros2: archive" >&2
mkdir -p "$dir"
python3 "$repo/install/image/oci_archive.py" rootfs "$rootfs" "$work/ros2.oci.tar" "$name" "$work/config.json" >/dev/null
cp "$work/requirements.lock" "$dir/requirements.lock"
mv "$work/ros2.oci.tar" "$out"
ln -sfn "ros2-$key/ros2.oci.tar" "$cache/ros2.oci.tar"
echo "ros2: built in $(( $(date +%s) - start )) s, $(du -m "$out" | cut -f1) MB" >&2
report built
