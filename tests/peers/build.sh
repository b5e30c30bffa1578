#!/usr/bin/env bash
# make peers: builds every test peer pinned under tests/peers/<family>/ that the cache lacks, then prints
# one line per binary (name, version, path) and writes manifest.json for the tests.
#
# Usage: tests/peers/build.sh [FAMILY...]     (default: every family)
# Cache: $ROSLAN_PEERS_DIR (default /var/cache/roslan/peers), one directory per module and version:
#   <name>@<version>/bin/<binary>, <name>@<version>/<files copied from the module>, <name>@<version>/.recipe
# A version directory appears only by an atomic rename after all its binaries built, so an interrupted
# build never looks complete. Its .recipe is a hash of what it was built from (go.mod, go.sum, peer.conf,
# the Go toolchain, the flags below); a different hash rebuilds it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
peers_dir=${ROSLAN_PEERS_DIR:-/var/cache/roslan/peers}
# Static, small, no absolute paths of this machine in the binaries: they run in chroots and images too.
build_flags=(-trimpath -buildvcs=false)
base_ldflags="-s -w"
export CGO_ENABLED=0

die() { echo "peers: $*" >&2; exit 1; }

command -v go >/dev/null || die "no go command (Go 1.26 with the module proxy is needed to build the peers)"
case "$peers_dir" in *[\"\\]*) die "ROSLAN_PEERS_DIR must not contain quotes or backslashes" ;; esac
mkdir -p "$peers_dir" || die "cannot create $peers_dir (run as root, or set ROSLAN_PEERS_DIR)"

# One build at a time per cache; a second `make peers` waits for the first and then finds everything.
exec 9>"$peers_dir/.lock"
flock 9
rm -rf "$peers_dir"/.building.* "$peers_dir"/.old.*

go_version=$(go env GOVERSION)

families=("$@")
if [ ${#families[@]} -eq 0 ]; then
	for conf in "$here"/*/peer.conf; do families+=("$(basename "$(dirname "$conf")")"); done
fi

# peer.conf, one directive a line ('#' starts a comment):
#   module <path>            the module whose version names the cache directory
#   name <dir-name>          the cache directory's name before '@'
#   bin <name> <package>     a binary and the main package it is built from
#   ldflags <flags>          extra -ldflags; ${VERSION}, ${MAJOR} and ${MINOR} become the module's version
#                            (v1.34.12), its major (1) and its minor (34) number
#   files <glob> <subdir>    files of the module (glob relative to its root) copied into <subdir>
read_conf() {
	module="" cache_name="" ldflags="" bins=() files=()
	local key rest
	while read -r key rest; do
		case "$key" in
		"" | \#*) ;;
		module) module=$rest ;;
		name) cache_name=$rest ;;
		bin) bins+=("$rest") ;;
		ldflags) ldflags="$ldflags ${rest}" ;;
		files) files+=("$rest") ;;
		*) die "$1: unknown directive '$key'" ;;
		esac
	done <"$1"
	[ -n "$module" ] && [ -n "$cache_name" ] && [ ${#bins[@]} -gt 0 ] || die "$1: needs module, name and bin"
}

# The version of $module that go.mod requires (a plain read, without the go command: the no-op path stays fast).
module_version() {
	awk -v m="$module" '$1 == "require" { $1 = ""; $0 = substr($0, 2) } $1 == m { print $2; exit }' "$1"
}

manifest_entries=()
for family in "${families[@]}"; do
	fdir="$here/$family"
	[ -f "$fdir/peer.conf" ] || die "no such peer family: $family (expected $fdir/peer.conf)"
	read_conf "$fdir/peer.conf"
	version=$(module_version "$fdir/go.mod")
	[ -n "$version" ] || die "$fdir/go.mod does not require $module"
	major=${version#v} major=${major%%.*} minor=${version#v*.} minor=${minor%%.*}
	ldflags=${ldflags//\$\{VERSION\}/$version} ldflags=${ldflags//\$\{MAJOR\}/$major} ldflags=${ldflags//\$\{MINOR\}/$minor}
	recipe=$({
		cat "$fdir/go.mod" "$fdir/go.sum" "$fdir/peer.conf"
		echo "$go_version ${build_flags[*]} $base_ldflags CGO_ENABLED=$CGO_ENABLED"
	} | sha256sum | cut -d' ' -f1)
	dest="$peers_dir/$cache_name@$version"

	complete=false
	if [ -f "$dest/.recipe" ] && [ "$(cat "$dest/.recipe")" = "$recipe" ]; then
		complete=true
		for b in "${bins[@]}"; do [ -x "$dest/bin/${b%% *}" ] || complete=false; done
	fi

	if ! $complete; then
		echo "peers: building $family ($module $version) into $dest" >&2
		start=$(date +%s)
		tmp=$(mktemp -d "$peers_dir/.building.$cache_name@$version.XXXXXX")
		chmod 755 "$tmp" && mkdir -p "$tmp/bin"
		for b in "${bins[@]}"; do
			name=${b%% *} pkg=${b#* }
			(cd "$fdir" && go build "${build_flags[@]}" -ldflags "$base_ldflags$ldflags" -o "$tmp/bin/$name" "$pkg") ||
				die "building $name from $pkg failed (the cache is unchanged)"
		done
		if [ ${#files[@]} -gt 0 ]; then
			mod_root=$(cd "$fdir" && go list -m -f '{{.Dir}}' "$module")
			for f in "${files[@]}"; do
				glob=${f%% *} sub=${f#* }
				mkdir -p "$tmp/$sub"
				# shellcheck disable=SC2086 # the glob is meant to expand
				cp $mod_root/$glob "$tmp/$sub/" || die "$module has no $glob"
				chmod -R u+w "$tmp/$sub"
			done
		fi
		echo "$recipe" >"$tmp/.recipe"
		# rename(2) cannot replace a non-empty directory: move a stale one aside first.
		[ -e "$dest" ] && mv -T "$dest" "$(mktemp -u "$peers_dir/.old.$cache_name@$version.XXXXXX")"
		mv -T "$tmp" "$dest"
		rm -rf "$peers_dir"/.old.*
		echo "peers: $family built in $(($(date +%s) - start)) s" >&2
	fi

	bin_json=() file_json=()
	for b in "${bins[@]}"; do
		name=${b%% *}
		printf '%-24s %-9s %s\n' "$name" "$version" "$dest/bin/$name"
		bin_json+=("\"$name\": \"$dest/bin/$name\"")
	done
	for f in "${files[@]}"; do file_json+=("\"${f#* }\": \"$dest/${f#* }\""); done
	manifest_entries+=("$(
		object() { [ $# -eq 0 ] && printf '{}' || printf '{\n%s\n    }' "$(printf '      %s\n' "$@" | sed '$! s/$/,/')"; }
		printf '  "%s": {\n    "module": "%s",\n    "version": "%s",\n    "dir": "%s",\n' "$family" "$module" "$version" "$dest"
		printf '    "bin": %s,\n    "files": %s\n  }' "$(object "${bin_json[@]}")" "$(object "${file_json[@]}")"
	)")
done

# The manifest is what the tests read (tests/src/peers.rs); only a full run rewrites it, and only when it
# changed.
if [ $# -eq 0 ]; then
	manifest="$peers_dir/manifest.json"
	new="{"
	sep=""
	for e in "${manifest_entries[@]}"; do new="$new$sep"$'\n'"$e" sep=","; done
	new="$new"$'\n'"}"
	if [ ! -f "$manifest" ] || [ "$(cat "$manifest")" != "$new" ]; then
		printf '%s\n' "$new" >"$manifest.tmp"
		mv "$manifest.tmp" "$manifest"
	fi
fi
