#!/bin/sh
# Removes the menu entry and icon. Settings (~/.config/icd10-coder), the audit log
# (~/.local/share/icd10-coder/audit.jsonl) and this folder are left for you to delete.
set -eu
rm -f "${XDG_DATA_HOME:-$HOME/.local/share}/applications/icd10-coder.desktop" \
      "${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps/icd10-coder.png"
echo "Menu entry removed. Delete this folder to remove the app."
