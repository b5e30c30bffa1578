#!/bin/bash
# Builds roslan's image without a registry: the final stage of install/Dockerfile, run by Debian's podman
# on the static binaries of `make release`, written as a named OCI archive (`make image`).
#
#   install/image/roslan.sh RELEASE_DIR OUT.oci.tar
#
# The Dockerfile's build stage compiles in `rust:*-bookworm`, which only a registry has; here
# `make release` has already built the same static binaries. So the Containerfile used is the
# Dockerfile's final stage itself (FROM scratch, labels, entrypoint), with its one
# `COPY --from=build /image/ /` pointed at a context laid out as the build stage lays out /image/.
# Any other change to the final stage comes along by construction.
#
# podman runs through install/image/podman-private.sh, with its configuration, storage and caches under a
# scratch directory removed at the end: the machine's /var/lib/containers and /etc/containers are
# neither read nor written. `--pull=never`: nothing is pulled.
#
# Deterministic: every file and the image's creation time carry SOURCE_DATE_EPOCH (the Makefile passes
# the last commit's time), layers are gzip'ed without a timestamp, and oci_archive.py writes the
# archive in a fixed order. The same binaries and epoch give the same bytes.
set -euo pipefail

release_dir=${1:?usage: install/image/roslan.sh RELEASE_DIR OUT.oci.tar}
out=${2:?usage: install/image/roslan.sh RELEASE_DIR OUT.oci.tar}
repo=$(cd "$(dirname "$0")/../.." && pwd)
epoch=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH=$epoch

command -v podman >/dev/null || { echo "podman is missing: apt-get install --no-install-recommends podman (make deps)" >&2; exit 1; }

# The tag is the DaemonSet's image, and it must be this workspace's version.
name=$(sed -n 's/^ *image: *\([^ ]*roslan\/roslan:[^ ]*\) *$/\1/p' "$repo/manifests/daemonset.yaml")
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml")
if [ -z "$name" ] || [ "${name##*:}" != "$version" ]; then
    echo "manifests/daemonset.yaml names image '$name', but Cargo.toml's workspace version is '$version'" >&2
    exit 1
fi

for bin in roslan roslan-ipam roslan-install; do
    [ -x "$release_dir/$bin" ] || { echo "$release_dir/$bin is missing: run make release" >&2; exit 1; }
    # The image has no libc and no loader: a dynamically linked binary would not start in it.
    if readelf -l "$release_dir/$bin" | grep -q 'Requesting program interpreter'; then
        echo "$release_dir/$bin is dynamically linked; make release builds them static" >&2; exit 1
    fi
done

mkdir -p "$(dirname "$out")"
work=$(cd "$(mktemp -d "$(dirname "$out")/.build-roslan.XXXXXX")" && pwd)
pod() { "$repo/install/image/podman-private.sh" "$work/podman" "$@"; }
trap 'pod system reset --force >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# The context: what the build stage puts in /image/.
ctx=$work/context
install -D -m 0755 "$release_dir/roslan" "$ctx/image/opt/roslan/bin/roslan"
install -D -m 0755 "$release_dir/roslan-ipam" "$ctx/image/opt/roslan/bin/roslan-ipam"
install -D -m 0755 "$release_dir/roslan-install" "$ctx/image/usr/local/bin/roslan-install"
find "$ctx" -type d -exec chmod 0755 {} +
find "$ctx" -exec touch -h -d "@$epoch" {} +

# The Dockerfile's final stage, from its last FROM to the end, with the one COPY from the build stage
# pointed at the context.
final=$(awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END{printf "%s", stage}' "$repo/install/Dockerfile")
case "$final" in "FROM scratch"*) ;; *) echo "install/Dockerfile's final stage is not FROM scratch" >&2; exit 1;; esac
[ "$(grep -c '^COPY --from=build /image/ /$' <<<"$final")" = 1 ] || {
    echo "install/Dockerfile's final stage must have exactly one 'COPY --from=build /image/ /'" >&2; exit 1; }
sed 's|^COPY --from=build /image/ /$|COPY image/ /|' <<<"$final" >"$work/Containerfile"

pod build --quiet --pull=never --timestamp "$epoch" --identity-label=false --format oci \
    -t "$name" -f "$work/Containerfile" "$ctx" >/dev/null
pod push --quiet --compression-format gzip "$name" "oci:$work/layout"
python3 "$repo/install/image/oci_archive.py" repack "$work/layout" "$out" "$name"
