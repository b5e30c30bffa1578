#!/usr/bin/env python3
"""Builds a pause image as a docker-archive tarball, with no registry, no podman and no network.

    pause_image.py OUT.tar NAME:TAG [BUSYBOX]

The image has one layer: a statically linked busybox (default /bin/busybox from Debian's
busybox-static), `/bin/sh` pointing at it, and `/pause`, a shell loop that exits on SIGTERM/SIGINT
(as PID 1 of the sandbox's PID namespace it would otherwise ignore them). `ctr image import` loads the
archive; containerd's CRI uses it as `sandbox_image`.

Only the standard library is used; the archive is deterministic (fixed owners and times), so its
digests are the same on every run.
"""

import hashlib
import io
import json
import os
import sys
import tarfile

# uname -m -> the OCI/Go architecture name containerd matches against its own platform.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}

PAUSE = b"""#!/bin/sh
trap "exit 0" TERM INT
while :; do sleep 3600 & wait $!; done
"""


def entry(name, kind=tarfile.REGTYPE, mode=0o755, data=None, target=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if target is not None:
        info.linkname = target
    if data is not None:
        info.size = len(data)
    return info, (io.BytesIO(data) if data is not None else None)


def layer(busybox):
    with open(busybox, "rb") as f:
        binary = f.read()
    if b"ld-linux" in binary[:4096]:
        sys.exit(f"{busybox} is dynamically linked: install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "run"]:
            tar.addfile(*entry(d, tarfile.DIRTYPE))
        tar.addfile(*entry("bin/busybox", data=binary))
        for applet in ["sh", "sleep"]:
            tar.addfile(*entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, target="busybox"))
        tar.addfile(*entry("pause", data=PAUSE))
    return buf.getvalue()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    out, name = sys.argv[1], sys.argv[2]
    busybox = sys.argv[3] if len(sys.argv) == 4 else "/bin/busybox"
    rootfs = layer(busybox)
    diff_id = hashlib.sha256(rootfs).hexdigest()
    config = json.dumps(
        {
            "architecture": GOARCH.get(os.uname().machine, os.uname().machine),
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created_by": "tests/runtimes/pause_image.py"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [name], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    with tarfile.open(out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(*entry(diff_id, tarfile.DIRTYPE))
        tar.addfile(*entry(f"{diff_id}/layer.tar", mode=0o644, data=rootfs))
        tar.addfile(*entry(config_name, mode=0o644, data=config))
        tar.addfile(*entry("manifest.json", mode=0o644, data=manifest))
    print(f"{name} sha256:{diff_id}")


if __name__ == "__main__":
    main()
