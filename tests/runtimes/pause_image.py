#!/usr/bin/env python3
"""Builds a pause image as a named OCI archive, with no registry, no podman and no network.

    pause_image.py OUT.tar NAME:TAG [BUSYBOX]

The image has one layer: a statically linked busybox (default /bin/busybox from Debian's
busybox-static), `/bin/sh` pointing at it, and `/pause`, a shell loop that exits on SIGTERM/SIGINT
(as PID 1 of the sandbox's PID namespace it would otherwise ignore them). `ctr images import` (and so
`microk8s images import`) loads the archive under NAME:TAG; containerd's CRI uses it as `sandbox_image`,
so kubelet needs no registry for its sandboxes. `make pause-image` builds it as
registry.k8s.io/pause:3.10.1, the sandbox image of Kubernetes 1.34.

Only the standard library is used (and install/image/oci_archive.py, which writes the archive); the archive
is deterministic (fixed owners and times), so its digests are the same on every run.
"""

import io
import os
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "install", "image"))
import oci_archive  # noqa: E402

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
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        layer_tar = os.path.join(tmp, "layer.tar")
        with open(layer_tar, "wb") as f:
            f.write(layer(busybox))
        diff_id, blob = oci_archive.gzip_layer(layer_tar, tmp)
        config = oci_archive.image_config(
            [diff_id], {"Entrypoint": ["/pause"], "WorkingDir": "/"}, "tests/runtimes/pause_image.py"
        )
        digest = oci_archive.write(out, name, config, [blob])
    print(f"{name} {digest} {out}")


if __name__ == "__main__":
    main()
