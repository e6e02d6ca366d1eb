#!/usr/bin/env bash
# Builds rotator's OCI image with buildah (Debian's package; no daemon):
#
#   bash packaging/oci/build.sh [BUILDAH BUD OPTIONS...]   -> localhost/rotator:<version>
#
# IMAGE names the image; BUILDAH is the buildah command with its global options (e.g.
# "buildah --storage-driver vfs --root DIR --runroot DIR"). The build runs with
# --isolation chroot, so it needs no user namespaces of its own and no container runtime
# daemon; the Containerfile's base image (debian:bookworm-slim) must be pullable or already in
# buildah's storage (--pull=never). See packaging/oci/Containerfile.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="$(readlink -f /usr/bin/python3)"
VERSION="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
IMAGE="${IMAGE:-localhost/rotator:$VERSION}"
read -r -a buildah <<<"${BUILDAH:-buildah}"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
bash packaging/wheels.sh "$ctx/wheels"
install -m 0644 packaging/oci/Containerfile "$ctx/Containerfile"
install -d "$ctx/etc/policies"
install -m 0644 deploy/rotator.toml "$ctx/etc/rotator.toml"
install -m 0644 policies/default.toml "$ctx/etc/policies/default.toml"
"${buildah[@]}" bud --isolation chroot --layers=false -f "$ctx/Containerfile" -t "$IMAGE" "$@" "$ctx"
echo "oci/build.sh: built $IMAGE" >&2
