#!/usr/bin/env bash
# Builds rotator's Debian package from this checkout (Debian 12; see docs/deploy-package.md):
#
#   bash packaging/deb/build.sh        ->  dist/rotator_<version>_<arch>.deb
#
# The version is pyproject.toml's, the architecture dpkg's. rotator runs from a venv of its own
# in /opt/rotator, made with Debian's python3 (3.11), never another python3 on PATH. In it: the
# runtime dependencies exactly as pinned and hash-checked in requirements/runtime.txt (made by
# requirements/lock.sh, the same pins and hashes as lock.txt), then rotator's wheel built from
# this checkout (--no-deps). The venv is made in a staging directory and moved to /opt/rotator
# by rewriting the few files that name it (the scripts' #! lines, pyvenv.cfg); the build fails
# if the staging path is left anywhere. No .pyc is shipped: postinst compiles, prerm removes.
#
# Needs: python3-venv, dpkg-dev (dpkg-shlibdeps), and PyPI (pip downloads the pinned files).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
HERE="$ROOT/packaging/deb"

PY="$(readlink -f /usr/bin/python3)"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "build.sh: /usr/bin/python3 is not Python 3.11 (Debian 12's): $PY" >&2
  exit 1
fi
for tool in dpkg-shlibdeps strip; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (apt-get install dpkg-dev)" >&2; exit 1; }
done

VERSION="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
ARCH="$(dpkg --print-architecture)"
PREFIX=/opt/rotator
# the date of the last commit (or now, outside git): the changelog's, and every file's mtime
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH
# the package's Maintainer (set DEB_MAINTAINER to your own team's address)
DEB_MAINTAINER="${DEB_MAINTAINER:-rotator maintainers <rotator-maintainers@example.org>}"
export DEB_MAINTAINER

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/root"
venv="$stage$PREFIX"
log="$work/pip.log"
pip_quiet() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build.sh: failed: $*" >&2
    exit 1
  fi
}

echo "build.sh: rotator $VERSION ($ARCH) with $PY" >&2
# 1-2. The wheels (packaging/wheels.sh: the pinned build tools, rotator's wheel from this
# checkout, every runtime dependency as pinned and hash-checked), and the build venv whose pip
# installs them
bash packaging/wheels.sh "$work/wheels" "$work/build"
BPIP=("$work/build/bin/python" -m pip --disable-pip-version-check --no-input)

# 3. The venv, in the staging directory, with nothing but those wheels (no index, no
# dependency resolution, no bytecode)
"$PY" -m venv --without-pip "$venv"
pip_quiet "${BPIP[@]}" --python "$venv/bin/python" install --no-index --no-deps --no-compile \
  "$work/wheels"/*.whl
"$venv/bin/python" -I -B -c 'import rotator.cli, dkim, nacl, cryptography, pydantic_core'

# 4. Relocate it to /opt/rotator
for f in "$venv"/bin/*; do
  if [ -f "$f" ] && [ ! -L "$f" ] && head -c 2 "$f" | grep -q '^#!'; then
    sed -i "1s|^#!$venv/bin/|#!$PREFIX/bin/|" "$f"
  fi
done
rm -f "$venv"/bin/activate "$venv"/bin/activate.csh "$venv"/bin/activate.fish \
  "$venv"/bin/Activate.ps1
sed -i "s|$venv|$PREFIX|g" "$venv/pyvenv.cfg"
# where each wheel came from (file:///tmp/...): provenance of the build machine, not of the host
find "$venv" -name direct_url.json -path '*.dist-info/*' -delete
find "$venv" \( -name '*.pyc' -o -name '*.pyo' \) -delete
find "$venv" -name __pycache__ -type d -empty -delete
# shared objects stripped as dh_strip does (their debug symbols are of no use here); the
# modules are data: no executable bit below site-packages (the .so files need none either)
find "$venv" -type f -name '*.so*' -exec strip --remove-section=.comment \
  --remove-section=.note --strip-unneeded {} +
find "$venv/lib" -type f -exec chmod 0644 {} +
if grep -rlaF "$work" "$stage" >"$work/left" 2>/dev/null; then
  echo "build.sh: the staging path is still named in:" >&2
  cat "$work/left" >&2
  exit 1
fi

# 5. The rest of the package: the command, the units, the installer's launcher, the polkit
# rule, the example config and policy (conffiles), the docs
install -d "$stage/usr/bin"
ln -s "$PREFIX/bin/rotator" "$stage/usr/bin/rotator"
install -d "$stage/lib/systemd/system"
install -m 0644 deploy/rotator.service deploy/rotator-install-opendkim@.service \
  deploy/rotator-install-opendkim.socket deploy/rotator-install-opendkim@.socket \
  "$stage/lib/systemd/system/"
install -d "$stage/usr/lib/rotator"
install -m 0755 deploy/rotator-install-opendkim "$stage/usr/lib/rotator/install-opendkim"
installer="$(cd "$venv" && echo lib/python3.11/site-packages/rotator/adapters/signers/installer)"
[ -f "$venv/$installer/__main__.py" ] || { echo "build.sh: no installer in the venv" >&2; exit 1; }
ln -s "$PREFIX/$installer" "$stage/usr/lib/rotator/installer"
install -d "$stage/etc/polkit-1/rules.d"
install -m 0644 deploy/50-rotator-signers.rules "$stage/etc/polkit-1/rules.d/"
install -d "$stage/etc/rotator/policies"
install -m 0644 deploy/rotator.toml "$stage/etc/rotator/rotator.toml"
install -m 0644 policies/default.toml "$stage/etc/rotator/policies/default.toml"
doc="$stage/usr/share/doc/rotator"
install -d "$doc/examples/signers" "$doc/examples/bind" "$doc/examples/policies"
install -m 0644 deploy/signers/* "$doc/examples/signers/"
install -m 0644 deploy/bind/* "$doc/examples/bind/"
install -m 0644 policies/*.toml "$doc/examples/policies/"
install -m 0644 README.md "$doc/README.md"
install -m 0644 docs/deploy-package.md "$doc/deploy-package.md"
"$PY" "$HERE/copyright.py" "$venv" "$VERSION" >"$doc/copyright"
"$PY" "$HERE/changelog.py" "$VERSION" >"$doc/changelog"
gzip -9n "$doc/README.md" "$doc/deploy-package.md" "$doc/changelog"
install -d "$stage/usr/share/lintian/overrides"
install -m 0644 "$HERE/lintian-overrides" "$stage/usr/share/lintian/overrides/rotator"

# 6. DEBIAN/: control (the shared libraries' dependencies from dpkg-shlibdeps), maintainer
# scripts, conffiles
install -d "$stage/DEBIAN"
install -m 0755 "$HERE/postinst" "$HERE/prerm" "$HERE/postrm" "$stage/DEBIAN/"
find "$stage/etc" -type f -printf '/etc/%P\n' | sort >"$stage/DEBIAN/conffiles"
mkdir -p "$work/shlibs/debian"
printf 'Source: rotator\n\nPackage: rotator\nArchitecture: any\n' >"$work/shlibs/debian/control"
mapfile -t objects < <(find "$venv" -type f -name '*.so*' | sort)
libdirs=()
while IFS= read -r d; do libdirs+=(-l"$d"); done \
  < <(find "$venv" -type d -name '*.libs' | sort)
(cd "$work/shlibs" && dpkg-shlibdeps -O --ignore-missing-info "${libdirs[@]}" \
  -e"${objects[@]}" 2>"$work/shlibdeps.log") >"$work/shlibs.out" || {
  cat "$work/shlibdeps.log" >&2
  exit 1
}
shlibs="$(sed -n 's/^shlibs:Depends=//p' "$work/shlibs.out")"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SHLIBS@|$shlibs|" \
  -e "s|@SIZE@|$size|" -e "s|@MAINTAINER@|$DEB_MAINTAINER|" "$HERE/control.in" >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
  | xargs -0 md5sum) >"$work/md5sums"
install -m 0644 "$work/md5sums" "$stage/DEBIAN/md5sums"

# 7. Modes (files 0644, programs 0755, directories 0755; owners root via --root-owner-group),
# one mtime, and the archive
chmod -R u+rwX,go+rX,go-w "$stage"
find "$stage" -depth -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
mkdir -p dist
out="dist/rotator_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "build.sh: wrote $out ($(du -h "$out" | cut -f1))" >&2
