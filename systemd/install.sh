#!/usr/bin/env bash
# Installs ringdrop: binaries, systemd units, the sysusers snippet, an
# example config, man pages and shell completions.
#
#   ./systemd/install.sh                 # system: /usr/local, /etc/systemd/system (as root)
#   ./systemd/install.sh --user          # one user: ~/.local/bin, ~/.config/systemd/user
#   DESTDIR=/tmp/pkg ./systemd/install.sh --prefix /usr   # staging for a package
#
# Options: --user, --prefix DIR, --bin-dir DIR (take ringdropd/ringdropctl
# from there instead of target/release), --no-build.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=system
PREFIX=
BIN_SRC=
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --user) MODE=user ;;
        --prefix) PREFIX=$2; shift ;;
        --bin-dir) BIN_SRC=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
DESTDIR=${DESTDIR:-}

if [ -z "$BIN_SRC" ]; then
    BIN_SRC=target/release
    if [ "$BUILD" = 1 ] && { [ ! -x "$BIN_SRC/ringdropd" ] || [ ! -x "$BIN_SRC/ringdropctl" ]; }; then
        cargo build --release --locked --bins
    fi
fi
for b in ringdropd ringdropctl; do
    [ -x "$BIN_SRC/$b" ] || { echo "install.sh: $BIN_SRC/$b not found (build with cargo build --release)" >&2; exit 1; }
done

if [ "$MODE" = user ]; then
    PREFIX=${PREFIX:-$HOME/.local}
    CONF_HOME=${XDG_CONFIG_HOME:-$HOME/.config}
    UNIT_DIR=$CONF_HOME/systemd/user
    CONF_DIR=$CONF_HOME/ringdrop
    UNIT_SRC=systemd/user
else
    PREFIX=${PREFIX:-/usr/local}
    UNIT_DIR=/etc/systemd/system
    CONF_DIR=/etc/ringdrop
    UNIT_SRC=systemd
fi
BINDIR=$PREFIX/bin

install -d "$DESTDIR$BINDIR" "$DESTDIR$UNIT_DIR" "$DESTDIR$CONF_DIR" \
    "$DESTDIR$PREFIX/share/man/man1" "$DESTDIR$PREFIX/share/bash-completion/completions" \
    "$DESTDIR$PREFIX/share/zsh/site-functions" "$DESTDIR$PREFIX/share/fish/vendor_completions.d"
install -m 0755 "$BIN_SRC/ringdropd" "$BIN_SRC/ringdropctl" "$DESTDIR$BINDIR/"
for unit in ringdropd.service ringdropd.socket; do
    sed "s|@BINDIR@|$BINDIR|g" "$UNIT_SRC/$unit" > "$DESTDIR$UNIT_DIR/$unit"
    chmod 0644 "$DESTDIR$UNIT_DIR/$unit"
done
# The page is every user's own (a user unit), for either daemon.
WEB_UNIT_DIR=$UNIT_DIR
[ "$MODE" = user ] || WEB_UNIT_DIR=/etc/systemd/user
install -d "$DESTDIR$WEB_UNIT_DIR"
sed "s|@BINDIR@|$BINDIR|g" systemd/user/ringdrop-web.service > "$DESTDIR$WEB_UNIT_DIR/ringdrop-web.service"
chmod 0644 "$DESTDIR$WEB_UNIT_DIR/ringdrop-web.service"
if [ "$MODE" = system ]; then
    install -d "$DESTDIR/etc/sysusers.d"
    install -m 0644 systemd/sysusers.d/ringdrop.conf "$DESTDIR/etc/sysusers.d/ringdrop.conf"
fi
# Never overwrite a config the admin edited.
if [ -e "$DESTDIR$CONF_DIR/ringdropd.toml" ]; then
    install -m 0644 systemd/ringdropd.toml "$DESTDIR$CONF_DIR/ringdropd.toml.example"
else
    install -m 0644 systemd/ringdropd.toml "$DESTDIR$CONF_DIR/ringdropd.toml"
fi
"$BIN_SRC/ringdropd" --print-man > "$DESTDIR$PREFIX/share/man/man1/ringdropd.1"
"$BIN_SRC/ringdropctl" man --out "$DESTDIR$PREFIX/share/man/man1"
"$BIN_SRC/ringdropctl" completions bash > "$DESTDIR$PREFIX/share/bash-completion/completions/ringdropctl"
"$BIN_SRC/ringdropctl" completions zsh > "$DESTDIR$PREFIX/share/zsh/site-functions/_ringdropctl"
"$BIN_SRC/ringdropctl" completions fish > "$DESTDIR$PREFIX/share/fish/vendor_completions.d/ringdropctl.fish"

echo "installed ringdrop ($MODE) under ${DESTDIR:-/}: $BINDIR, $UNIT_DIR, $CONF_DIR"
if [ -z "$DESTDIR" ]; then
    if [ "$MODE" = user ]; then
        echo "next: systemctl --user daemon-reload && systemctl --user enable --now ringdropd.socket"
    else
        echo "next: systemd-sysusers && systemctl daemon-reload && systemctl enable --now ringdropd.socket"
        echo "      usermod -aG ringdrop \$USER   # to use ringdropctl without sudo"
    fi
fi
