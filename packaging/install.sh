#!/bin/sh
# Installs the unpacked app for this user: a menu entry and an icon pointing at this folder.
# Nothing is copied elsewhere; to uninstall, run ./uninstall.sh and delete this folder.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/icd10-coder.png" "$icons/icd10-coder.png"
sed -e "s|@BIN@|$here/icd10-coder|" -e "s|@ICON@|icd10-coder|" "$here/icd10-coder.desktop" \
    > "$apps/icd10-coder.desktop"
echo "Installed: $apps/icd10-coder.desktop (menu: ICD-10-CM Coder). Run: $here/icd10-coder"
