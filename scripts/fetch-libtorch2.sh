#!/usr/bin/env bash
# Downloads the LibTorch 2.x development headers of Debian trixie (CPU:
# main/libtorch-dev; CUDA: contrib/libtorch-cuda-dev) and unpacks them, without
# installing anything, for scripts/check-libtorch2.sh (ctest
# libtorch2_compile_check; docs/gpu.md). scripts/install-deps.sh runs it.
#
# The package versions, file names and SHA256 sums come from trixie's
# Packages.xz indexes, whose SHA256 sums come from the suite's InRelease,
# verified with gpgv against the Debian archive keyring: a new trixie point
# release needs no change here. Each package is unpacked with `dpkg-deb -x`
# into DIR/cpu or DIR/cuda (about 50 MB each, almost all headers; the .so
# entries of the -dev packages are dangling symlinks, the libraries are not
# downloaded). A variant whose version is already there is not downloaded
# again; the indexes are cached in DIR/.index and fetched again only when
# InRelease lists other sums. Without network, an unpacked variant is kept
# (with a note) and a missing one is an error. About 15 MB of downloads the
# first time (two indexes, two 2.4 MB packages), 140 kB afterwards.
#
# Usage: scripts/fetch-libtorch2.sh
#   FTUNE_LIBTORCH2_DIR    destination (default /opt/ftune/libtorch2)
#   FTUNE_DEBIAN_MIRROR    Debian mirror (default http://deb.debian.org/debian)
#   FTUNE_LIBTORCH2_SUITE  suite (default trixie)
#   FTUNE_DEBIAN_KEYRING   keyring for InRelease
#                          (default /usr/share/keyrings/debian-archive-keyring.gpg)
set -euo pipefail
dest=${FTUNE_LIBTORCH2_DIR:-/opt/ftune/libtorch2}
mirror=${FTUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${FTUNE_LIBTORCH2_SUITE:-trixie}
keyring=${FTUNE_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
arch=$(dpkg --print-architecture)
# variant  component  package
variants=(
  "cpu main libtorch-dev"
  "cuda contrib libtorch-cuda-dev"
)

SUDO=""
if ! mkdir -p "$dest" 2>/dev/null || [[ ! -w $dest ]]; then
  if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "fetch-libtorch2: cannot write $dest (set FTUNE_LIBTORCH2_DIR)" >&2; exit 1
  fi
  $SUDO mkdir -p "$dest"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { curl -fsS --retry 3 --connect-timeout 20 -o "$2" "$1"; }

# Keep what is there when the mirror cannot be reached.
if ! fetch "$mirror/dists/$suite/InRelease" "$tmp/InRelease"; then
  missing=0
  for v in "${variants[@]}"; do
    read -r variant _ _ <<<"$v"
    if [[ -f $dest/$variant/.ftune-version ]]; then
      echo "fetch-libtorch2: offline; keeping $(cat "$dest/$variant/.ftune-version")"
    else
      missing=1
    fi
  done
  if ((missing)); then
    echo "fetch-libtorch2: cannot reach $mirror and $dest is incomplete" >&2
    exit 1
  fi
  exit 0
fi
gpgv --quiet --keyring "$keyring" --output "$tmp/Release" "$tmp/InRelease" 2>"$tmp/gpgv.log" || {
  cat "$tmp/gpgv.log" >&2
  echo "fetch-libtorch2: bad signature on $suite/InRelease" >&2
  exit 1
}

# The SHA256 sum that Release lists for a path, e.g. main/binary-amd64/Packages.xz.
release_sha256() {
  awk -v path="$1" '/^SHA256:/ { s = 1; next } /^[^ ]/ { s = 0 }
                    s && $3 == path { print $1 }' "$tmp/Release"
}

$SUDO mkdir -p "$dest/.index"
for v in "${variants[@]}"; do
  read -r variant component package <<<"$v"
  index_path=$component/binary-$arch/Packages.xz
  index_sha=$(release_sha256 "$index_path")
  [[ -n $index_sha ]] || { echo "fetch-libtorch2: $suite has no $index_path" >&2; exit 1; }
  index=$dest/.index/$suite-$component-$arch-Packages.xz
  if [[ ! -f $index ]] || [[ $(sha256sum <"$index" | cut -d' ' -f1) != "$index_sha" ]]; then
    fetch "$mirror/dists/$suite/$index_path" "$tmp/Packages.xz"
    [[ $(sha256sum <"$tmp/Packages.xz" | cut -d' ' -f1) == "$index_sha" ]] || {
      echo "fetch-libtorch2: $index_path does not match InRelease" >&2; exit 1; }
    $SUDO cp "$tmp/Packages.xz" "$index"
  fi

  # Version, Filename and SHA256 of the package's stanza (the suite has one).
  read -r version filename sha256 < <(xz -dc "$index" | awk -v pkg="$package" '
    /^Package: / { p = ($2 == pkg) }
    p && /^Version: / { v = $2 }
    p && /^Filename: / { f = $2 }
    p && /^SHA256: / { s = $2 }
    /^$/ && p && f != "" { print v, f, s; exit }
    END { if (p && f != "") print v, f, s }' | head -1) || true
  if [[ -z ${filename:-} || -z ${sha256:-} ]]; then
    echo "fetch-libtorch2: no $package in $suite/$component" >&2
    exit 1
  fi
  stamp="$package $version $sha256"
  if [[ -f $dest/$variant/.ftune-version ]] &&
     [[ $(cat "$dest/$variant/.ftune-version") == "$stamp" ]]; then
    echo "fetch-libtorch2: $package $version present in $dest/$variant"
    continue
  fi

  deb=$tmp/$(basename "$filename")
  fetch "$mirror/$filename" "$deb"
  [[ $(sha256sum <"$deb" | cut -d' ' -f1) == "$sha256" ]] || {
    echo "fetch-libtorch2: $(basename "$filename"): SHA256 mismatch" >&2; exit 1; }
  # Unpack beside the old tree, then swap, so a failure leaves the old one.
  rm -rf "$tmp/unpack"
  dpkg-deb -x "$deb" "$tmp/unpack"
  [[ -f $tmp/unpack/usr/include/torch/csrc/api/include/torch/version.h ]] || {
    echo "fetch-libtorch2: $package has no torch/version.h" >&2; exit 1; }
  echo "$stamp" >"$tmp/unpack/.ftune-version"
  $SUDO rm -rf "$dest/$variant.new" "$dest/$variant.old"
  $SUDO cp -a "$tmp/unpack" "$dest/$variant.new"
  [[ ! -e $dest/$variant ]] || $SUDO mv "$dest/$variant" "$dest/$variant.old"
  $SUDO mv "$dest/$variant.new" "$dest/$variant"
  $SUDO rm -rf "$dest/$variant.old"
  echo "fetch-libtorch2: $package $version unpacked into $dest/$variant"
done
