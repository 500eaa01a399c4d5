#!/usr/bin/env bash
# The project's local base image, for machines that cannot pull from a registry: a minimal Debian
# root filesystem made with debootstrap, with Python 3 and the shared libraries the images need,
# imported as an image. Prints the image reference on stdout (progress goes to stderr).
#
#   containers/base.sh            build localhost/spinemets/base:<release> unless it is current
#
# Cached twice: the image is also tagged <release>-<recipe hash> (this file, release, mirrors,
# packages), and when that tag exists nothing is built; and it is saved to
# $BASE_CACHE_DIR/base-<release>-<recipe hash>.tar.gz (default .cache/images; about 70 MB), loaded
# from there by a machine whose container storage is fresh but whose cache folder is kept (CI).
# Debian's security updates do not change the recipe: BASE_REBUILD=1 builds it anew with them.
# Building needs root (debootstrap, chroot) and podman (or docker: ENGINE=docker).
#
# Environment: ENGINE (podman), DEBIAN_RELEASE (bookworm), DEBIAN_MIRROR
# (http://deb.debian.org/debian; a snapshot.debian.org URL pins the packages),
# DEBIAN_SECURITY_MIRROR (http://deb.debian.org/debian-security), ENGINE_FLAGS (global engine
# options, e.g. "--runtime runc"), BASE_CACHE_DIR (empty: no saved copy), BASE_REBUILD.
set -euo pipefail

ENGINE=${ENGINE:-podman}
read -r -a ENGINE_FLAGS <<< "${ENGINE_FLAGS:-}"
# Bookworm: its Python is the project's (3.11, as the public default python:3.11-slim-bookworm
# and the Triton Python-backend stub that the images use).
DEBIAN_RELEASE=${DEBIAN_RELEASE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# python3-venv: venvs with pip in the builder stages; libpython3.11: the Triton Python-backend
# stub links it; libgomp1: OpenMP of onnxruntime and SimpleITK; netbase: /etc/services,
# /etc/protocols; ca-certificates: TLS to PACS and registries.
PACKAGES=python3,python3-venv,libpython3.11,libgomp1,ca-certificates,netbase
IMAGE=localhost/spinemets/base:${DEBIAN_RELEASE}

recipe=$( { cat "$0"; echo "$DEBIAN_RELEASE $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR $PACKAGES"; } \
          | sha256sum | cut -c1-12)
engine() { "$ENGINE" "${ENGINE_FLAGS[@]}" "$@"; }
BASE_CACHE_DIR=${BASE_CACHE_DIR-$(cd "$(dirname "$0")/.." && pwd)/.cache/images}
saved=${BASE_CACHE_DIR:+$BASE_CACHE_DIR/base-$DEBIAN_RELEASE-$recipe.tar.gz}
if [[ -n ${BASE_REBUILD:-} ]]; then
  engine rmi "$IMAGE-$recipe" >/dev/null 2>&1 || true
  [[ -z $saved ]] || rm -f "$saved"
fi
if ! engine image inspect "$IMAGE-$recipe" >/dev/null 2>&1 && [[ -n $saved && -f $saved ]]; then
  echo "loading base image $IMAGE from $saved" >&2
  gzip -dc "$saved" | engine load >&2 || echo "cannot load $saved; building the base image" >&2
fi
if engine image inspect "$IMAGE-$recipe" >/dev/null 2>&1; then
  echo "base image $IMAGE is current (recipe $recipe)" >&2
  engine tag "$IMAGE-$recipe" "$IMAGE" >&2
  echo "$IMAGE"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "debootstrap is not installed (make images installs it)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "debootstrap needs root" >&2; exit 1; }

rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/spinemets-base.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $DEBIAN_RELEASE from $DEBIAN_MIRROR into $rootfs" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$DEBIAN_RELEASE" "$rootfs" "$DEBIAN_MIRROR" \
  > "$rootfs.log" 2>&1 || { tail -30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# The release's updates and security updates (debootstrap installs the release as published).
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $DEBIAN_RELEASE main
deb $DEBIAN_MIRROR $DEBIAN_RELEASE-updates main
deb $DEBIAN_SECURITY_MIRROR $DEBIAN_RELEASE-security main
SOURCES
echo "upgrading from $DEBIAN_RELEASE-updates and $DEBIAN_RELEASE-security" >&2
chroot "$rootfs" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get upgrade -y -qq >&2

# What an image needs no copy of: package caches and lists, documentation (but the packages'
# copyright files), logs, the host's resolver configuration and hostname (the engine's).
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
: > "$rootfs/etc/resolv.conf"; : > "$rootfs/etc/hostname"; : > "$rootfs/etc/machine-id"

echo "importing $IMAGE" >&2
tar --numeric-owner --xattrs -C "$rootfs" -c . \
  | engine import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      - "$IMAGE-$recipe" >&2
engine tag "$IMAGE-$recipe" "$IMAGE" >&2
if [[ -n $saved ]]; then
  mkdir -p "$BASE_CACHE_DIR"
  rm -f "$BASE_CACHE_DIR"/base-"$DEBIAN_RELEASE"-*.tar.gz
  engine save "$IMAGE-$recipe" | gzip -1 > "$saved.tmp" && mv "$saved.tmp" "$saved"
  echo "saved base image to $saved" >&2
fi
echo "$IMAGE"
