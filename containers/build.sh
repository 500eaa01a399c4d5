#!/usr/bin/env bash
# Builds the project's images (what `make images` runs):
#
#   containers/build.sh [IMAGE...]     IMAGE: listener segmenter registrar risk triton-cpu models
#                                      (default: all), tagged spinemets/IMAGE:<project version>
#
# The base image is the build argument BASE_IMAGE of every Containerfile. Unset, the project's
# own Debian base is built first (containers/base.sh; cached) and used, since this machine may
# pull from no registry; BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm (the
# Containerfiles' default) builds on the public image instead.
#
# pip in the builder stages trusts the image's CA bundle; where the host has one (CA_BUNDLE,
# default $PIP_CERT or /etc/ssl/certs/ca-certificates.crt) it is lent to the build as the secret
# "ca-certificates" instead, so that a TLS-intercepting proxy's CA works; a secret is mounted for
# the RUN steps only and never stored in an image.
#
# Environment: ENGINE (podman, else docker where its engine answers `docker info`), ENGINE_FLAGS (global engine options; podman:
# "--runtime runc"), BUILD_FLAGS (build options; default: the ulimits below), VERSION (the
# project version from pyproject.toml), BASE_IMAGE, CA_BUNDLE.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${ENGINE:-} ]]; then
  if command -v podman >/dev/null; then ENGINE=podman
  elif docker info >/dev/null 2>&1; then ENGINE=docker
  else echo "neither podman nor a running Docker engine (make images installs podman)" >&2; exit 1; fi
fi
export ENGINE
if [[ -z ${ENGINE_FLAGS+set} ]]; then
  [[ $(basename "$ENGINE") == podman ]] && ENGINE_FLAGS="--runtime runc" || ENGINE_FLAGS=""
fi
export ENGINE_FLAGS
read -r -a engine_flags <<< "$ENGINE_FLAGS"
read -r -a build_flags <<< "${BUILD_FLAGS:---ulimit nofile=20000:20000 --ulimit nproc=32768:32768}"
VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)}
CA_BUNDLE=${CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
[[ -f $CA_BUNDLE ]] && build_flags+=(--secret "id=ca-certificates,src=$CA_BUNDLE")
ALL=(listener segmenter registrar risk triton-cpu models)
images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=("${ALL[@]}")
for image in "${images[@]}"; do
  [[ -f containers/$image.Containerfile ]] || { echo "unknown image $image (${ALL[*]})" >&2; exit 1; }
done

start=$SECONDS
BASE_IMAGE=${BASE_IMAGE:-$(containers/base.sh)}
echo "base image $BASE_IMAGE ($((SECONDS - start)) s)"
for image in "${images[@]}"; do
  start=$SECONDS
  "$ENGINE" "${engine_flags[@]}" build "${build_flags[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
    -f "containers/$image.Containerfile" -t "spinemets/$image:$VERSION" .
  echo "built spinemets/$image:$VERSION ($((SECONDS - start)) s)"
done
