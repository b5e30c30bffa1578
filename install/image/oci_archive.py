#!/usr/bin/env python3
"""OCI image archives that keep their name through `ctr images import`, `microk8s images import` and
`podman load`, written byte for byte the same from the same inputs.

    oci_archive.py repack LAYOUT_DIR OUT.tar NAME          # an OCI layout directory (podman push ... oci:DIR)
    oci_archive.py rootfs ROOT OUT.tar NAME CONFIG.json    # a root filesystem as a one-layer image
    oci_archive.py names OUT.tar                           # the names an archive carries, one per line

CONFIG.json is the image's runtime configuration (Env, Cmd, Entrypoint, WorkingDir, Labels). `repack` is
what install/image/roslan.sh does with podman's output, `rootfs` what tests/images/ros2.sh does with its debootstrap
tree; tests/runtimes/pause_image.py uses the module.

The name goes into both annotations a reader may take it from, in full: `io.containerd.image.name`, which
containerd's importer (`ctr images import`, and so `microk8s images import`, which runs
`ctr image import -`) and podman's `load` read first, and `org.opencontainers.image.ref.name`, which both
fall back to (and which `podman save` writes). Measured with Debian's containerd 1.6.20 and podman 4.3.1:
with either annotation holding the full name, both import the image under that name; with `ref.name`
holding only the tag (how `docker save` writes it, next to `io.containerd.image.name`), ctr names the
image `import-<date>:<tag>` and podman `localhost/<tag>:latest`, and without annotations the image
arrives nameless. A nameless or misnamed image makes kubelet try to pull.

One image per archive: podman refuses an OCI archive whose index lists more than one manifest unless told
which, and `podman load` cannot be told.

Determinism: entries sorted, owner root, mode fixed, mtime SOURCE_DATE_EPOCH (default 0); layers
gzip-compressed with a zero gzip timestamp; JSON with sorted keys.
"""

import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

# uname -m -> the OCI/Go architecture name containerd matches against its own platform.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}

CHUNK = 1 << 20


def epoch():
    """The timestamp of every entry and of the image config: SOURCE_DATE_EPOCH, else 0."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def architecture():
    machine = os.uname().machine
    return GOARCH.get(machine, machine)


def tag_of(name):
    """The tag of `registry/path:tag` (a port in the registry part is not a tag); every name needs one."""
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        sys.exit(f"{name}: an image name needs an explicit tag")
    return last.rsplit(":", 1)[1]


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _info(name, size=0, kind=tarfile.REGTYPE, mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = epoch()
    return info


class Blob:
    """Content addressed by its sha256: bytes in memory, or a file (large layers)."""

    def __init__(self, media_type, data=None, path=None):
        self.media_type = media_type
        self.data = data
        self.path = path
        digest = hashlib.sha256()
        if data is not None:
            digest.update(data)
            self.size = len(data)
        else:
            self.size = 0
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    self.size += len(chunk)
        self.digest = "sha256:" + digest.hexdigest()

    def descriptor(self, annotations=None):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if annotations:
            d["annotations"] = annotations
        return d

    def open(self):
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")


def layer_from_dir(root, tar_path, empty_dirs=("dev", "proc", "sys", "run", "tmp")):
    """Writes the tree under ROOT as an uncompressed layer tar: sorted, every mtime SOURCE_DATE_EPOCH,
    owners numeric, hard links kept. The directories in EMPTY_DIRS go in without their content: the
    runtime mounts its own there (debootstrap leaves device nodes in dev/)."""
    stamp = epoch()

    def normalize(info):
        info.mtime = stamp
        info.uname = info.gname = ""
        return info

    with tarfile.open(tar_path, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for current, dirs, files in os.walk(root):
            dirs.sort()
            rel = os.path.relpath(current, root)
            if rel in empty_dirs:
                dirs.clear()
                files = []
            for entry in sorted(dirs + files):
                path = os.path.join(current, entry)
                arcname = os.path.normpath(os.path.join(rel, entry))
                mode = os.lstat(path).st_mode
                if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
                    continue
                tar.add(path, arcname=arcname, recursive=False, filter=normalize)


def gzip_layer(tar_path, out_dir):
    """Compresses an uncompressed layer tar; returns (diff_id, blob) for the config and the manifest."""
    diff_id = Blob(LAYER_GZIP, path=tar_path).digest
    gz_path = os.path.join(out_dir, os.path.basename(tar_path) + ".gz")
    with open(tar_path, "rb") as src, open(gz_path, "wb") as raw:
        # filename="" and mtime=0: nothing of the build machine or time goes into the gzip header.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(src, gz, CHUNK)
    return diff_id, Blob(LAYER_GZIP, path=gz_path)


def image_config(diff_ids, container_config, created_by, labels=None):
    """An image config: platform, runtime defaults, layer diff IDs and one history entry per layer."""
    config = dict(container_config)
    if labels:
        config["Labels"] = dict(labels)
    stamp = _rfc3339(epoch())
    return {
        "architecture": architecture(),
        "os": "linux",
        "created": stamp,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": stamp, "created_by": created_by} for _ in diff_ids],
    }


def _rfc3339(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write(out, name, config, layers, manifest_annotations=None):
    """Writes the archive OUT for image NAME from its config (a dict or a Blob) and layer Blobs."""
    tag_of(name)
    config_blob = config if isinstance(config, Blob) else Blob(CONFIG, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if manifest_annotations:
        manifest["annotations"] = dict(manifest_annotations)
    manifest_blob = Blob(MANIFEST, canonical_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [manifest_blob.descriptor({NAME_ANNOTATION: name, REF_ANNOTATION: name})],
    }
    blobs = {b.digest: b for b in [config_blob, manifest_blob, *layers]}
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
        layout = canonical_json({"imageLayoutVersion": "1.0.0"})
        tar.addfile(_info("oci-layout", len(layout)), io.BytesIO(layout))
        index_bytes = canonical_json(index)
        tar.addfile(_info("index.json", len(index_bytes)), io.BytesIO(index_bytes))
        for d in ["blobs", "blobs/sha256"]:
            tar.addfile(_info(d, kind=tarfile.DIRTYPE, mode=0o755))
        for digest in sorted(blobs):
            blob = blobs[digest]
            with blob.open() as f:
                tar.addfile(_info("blobs/sha256/" + digest.split(":", 1)[1], blob.size), f)
    os.replace(tmp, out)
    return manifest_blob.digest


def repack(layout_dir, out, name):
    """Rewrites an OCI layout directory holding one image as a deterministic, named archive."""

    def blob_path(digest):
        algorithm, hexdigest = digest.split(":", 1)
        return os.path.join(layout_dir, "blobs", algorithm, hexdigest)

    with open(os.path.join(layout_dir, "index.json"), "rb") as f:
        index = json.load(f)
    manifests = index.get("manifests", [])
    if len(manifests) != 1 or manifests[0].get("mediaType") != MANIFEST:
        sys.exit(f"{layout_dir}: expected exactly one OCI image manifest, found {manifests}")
    with open(blob_path(manifests[0]["digest"]), "rb") as f:
        manifest = json.load(f)
    config = Blob(manifest["config"]["mediaType"], path=blob_path(manifest["config"]["digest"]))
    layers = [Blob(layer["mediaType"], path=blob_path(layer["digest"])) for layer in manifest["layers"]]
    for want, got in zip([manifest["config"], *manifest["layers"]], [config, *layers]):
        if want["digest"] != got.digest:
            sys.exit(f"{layout_dir}: blob {want['digest']} does not match its content ({got.digest})")
    return write(out, name, config, layers, manifest.get("annotations"))


def names(archive):
    """The image names an archive carries in its index (what the importers will call the image)."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    return [m.get("annotations", {}).get(NAME_ANNOTATION, "") for m in index.get("manifests", [])]


def from_rootfs(root, out, name, container_config):
    """A one-layer image of the tree under ROOT."""
    with open(container_config) as f:
        config = json.load(f)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        layer_tar = os.path.join(tmp, "layer.tar")
        layer_from_dir(root, layer_tar)
        diff_id, blob = gzip_layer(layer_tar, tmp)
        os.unlink(layer_tar)
        return write(out, name, image_config([diff_id], config, "install/image/oci_archive.py rootfs"), [blob])


def main(argv):
    if len(argv) == 5 and argv[1] == "repack":
        digest = repack(argv[2], argv[3], argv[4])
        print(f"{argv[4]} {digest} {argv[3]}")
    elif len(argv) == 6 and argv[1] == "rootfs":
        digest = from_rootfs(argv[2], argv[3], argv[4], argv[5])
        print(f"{argv[4]} {digest} {argv[3]}")
    elif len(argv) == 3 and argv[1] == "names":
        print("\n".join(names(argv[2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
