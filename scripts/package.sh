#!/usr/bin/env bash
# `make package`: Debian packages for both binaries, built with dpkg-deb into dist/.
#   rwsplit-proxy_VERSION_ARCH.deb          /usr/bin/rwsplit-proxy + its systemd unit
#   rwsplit-binlog-reader_VERSION_ARCH.deb  /usr/bin/rwsplit-binlog-reader + its systemd unit
#   rwsplit-common_VERSION_all.deb          /etc/rwsplit/rwsplit.yaml and rwsplit.env (conffiles, shared), docs
# Why dpkg-deb and not cargo-deb: it is on every Debian already, where `cargo install cargo-deb`
# compiles a few hundred crates; and three packages sharing one conffile set, with maintainer
# scripts of our own, are as short to say here as in [package.metadata.deb].
# PROFILE=release (default) builds with `cargo build --release`; PROFILE=debug packages the
# debug binaries as they are (the package test, which needs no optimised build). OUT=dir,
# DEB_COMPRESS=xz|gzip|none.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROFILE=${PROFILE:-release}
OUT=${OUT:-$ROOT/dist}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
ARCH=$(dpkg --print-architecture)
GLIBC=$(ldd --version 2>/dev/null | awk 'NR == 1 {print $NF}')
MAINTAINER="rwsplit maintainers <rwsplit@localhost>"

if [ "$PROFILE" = release ]; then
  cargo build --release --locked -p proxy -p binlog-reader --bins
else
  [ -x "$TARGET_DIR/$PROFILE/rwsplit-proxy" ] && [ -x "$TARGET_DIR/$PROFILE/rwsplit-ctl" ] && [ -x "$TARGET_DIR/$PROFILE/rwsplit-binlog-reader" ] \
    || cargo build --locked -p proxy -p binlog-reader --bins
fi
BIN="$TARGET_DIR/$PROFILE"
mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

control() { # name arch depends description
  mkdir -p "$STAGE/$1/DEBIAN"
  cat > "$STAGE/$1/DEBIAN/control" <<CONTROL
Package: $1
Version: $VERSION
Architecture: $2
Maintainer: $MAINTAINER
Section: database
Priority: optional
Depends: $3
Description: $4
CONTROL
}

# rwsplit-common: the shared configuration, as conffiles (kept on upgrade and remove, gone on purge).
c="$STAGE/rwsplit-common"
control rwsplit-common all "" "rwsplit configuration shared by rwsplit-proxy and rwsplit-binlog-reader
 /etc/rwsplit/rwsplit.yaml (the servers, routing, listeners) and /etc/rwsplit/rwsplit.env
 (the passwords, mode 0600, read by systemd), and the production guide."
sed -i '/^Depends: $/d' "$c/DEBIAN/control"
install -D -m 0644 packaging/etc/rwsplit.yaml "$c/etc/rwsplit/rwsplit.yaml"
install -D -m 0600 packaging/etc/rwsplit.env "$c/etc/rwsplit/rwsplit.env"
install -D -m 0644 docs/PRODUCTION.md "$c/usr/share/doc/rwsplit-common/PRODUCTION.md"
install -D -m 0644 docs/ADMIN.md "$c/usr/share/doc/rwsplit-common/ADMIN.md"
install -D -m 0644 README.md "$c/usr/share/doc/rwsplit-common/README.md"
printf '/etc/rwsplit/rwsplit.yaml\n/etc/rwsplit/rwsplit.env\n' > "$c/DEBIAN/conffiles"

for name in rwsplit-proxy rwsplit-binlog-reader; do
  d="$STAGE/$name"
  case $name in
    rwsplit-proxy) what="MySQL/MariaDB read/write-splitting proxy
 Applications connect to it as to MySQL; writes, transactions and session-bound
 statements go to the primary, safe reads to the least-loaded healthy replica
 within the lag limit, preferring the proxy's own location." ;;
    *) what="binlog reader measuring replica lag for rwsplit
 Streams the primary's binlog as a replica would and compares commit times with
 what each replica applied: lag to the millisecond, served to rwsplit proxies." ;;
  esac
  control "$name" "$ARCH" "libc6 (>= $GLIBC), rwsplit-common (= $VERSION)" "$what"
  install -D -m 0755 "$BIN/$name" "$d/usr/bin/$name"
  if [ "$PROFILE" = release ]; then strip "$d/usr/bin/$name"; fi
  if [ "$name" = rwsplit-proxy ]; then
    # The operator's CLI over the proxy's admin API (docs/ADMIN.md) ships with the proxy.
    install -D -m 0755 "$BIN/rwsplit-ctl" "$d/usr/bin/rwsplit-ctl"
    if [ "$PROFILE" = release ]; then strip "$d/usr/bin/rwsplit-ctl"; fi
  fi
  install -D -m 0644 "packaging/systemd/$name.service" "$d/lib/systemd/system/$name.service"
  # Maintainer scripts: tell systemd about the unit; never start it unasked (the servers in
  # /etc/rwsplit/rwsplit.yaml must be edited first); stop it before removal.
  cat > "$d/DEBIAN/postinst" <<SCRIPT
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
if [ "\$1" = configure ] && [ -n "\$2" ] && [ -d /run/systemd/system ] && systemctl is-active --quiet $name; then
  systemctl try-restart $name || true
fi
SCRIPT
  cat > "$d/DEBIAN/prerm" <<SCRIPT
#!/bin/sh
set -e
if [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now $name || true
fi
SCRIPT
  cat > "$d/DEBIAN/postrm" <<SCRIPT
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SCRIPT
  chmod 0755 "$d/DEBIAN/postinst" "$d/DEBIAN/prerm" "$d/DEBIAN/postrm"
done

for name in rwsplit-common rwsplit-proxy rwsplit-binlog-reader; do
  arch=$ARCH; [ $name = rwsplit-common ] && arch=all
  size=$(du -sk --exclude=DEBIAN "$STAGE/$name" | cut -f1)
  echo "Installed-Size: $size" >> "$STAGE/$name/DEBIAN/control"
  dpkg-deb --root-owner-group "-Z${DEB_COMPRESS:-xz}" --build "$STAGE/$name" "$OUT/${name}_${VERSION}_${arch}.deb" >/dev/null
  echo "package: $OUT/${name}_${VERSION}_${arch}.deb"
done
