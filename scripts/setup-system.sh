#!/usr/bin/env bash
# Installs the system packages the test tiers need on Debian 12 (bookworm):
#   - Mesa lavapipe from bookworm-backports (Mesa 25; bookworm's Mesa 22 is too old for Dawn)
#   - Debian's chromium (browser tier; its SwiftShader is the fallback Vulkan driver)
#   - python3 (tests read exported files back with Python's standard library)
#   - python3-torch (tests run the PyTorch continuation, train.py, on the CPU)
#   - python3-onnx (the ONNX export is checked by onnx.checker with /usr/bin/python3)
#   - with WITH_PYTHON=1: python3-torch and python3-nltk (only to regenerate golden files;
#     never at run time, never in CI)
# Run as root. Without root it prints the exact commands to run instead.
set -euo pipefail

want_python=${WITH_PYTHON:-0}
need=()
[ -f /usr/share/vulkan/icd.d/lvp_icd.json ] || need+=(lavapipe)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Some tests read our files back with an independent Python (standard library only).
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The exported PyTorch project's train.py is tested with Debian's PyTorch (CPU, gloo).
/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1 || need+=(torch)
/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1 || need+=(python3-onnx)
if [ "$want_python" = 1 ]; then
  /usr/bin/python3 -c 'import torch, nltk' >/dev/null 2>&1 || need+=(python)
fi
[ ${#need[@]} -eq 0 ] && { echo "system packages: all present"; exit 0; }

backports=/etc/apt/sources.list.d/backports.sources
if [ "$(id -u)" != 0 ]; then
  cat >&2 <<MSG
Missing system packages: ${need[*]}. Run as root:
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > $backports
  apt-get update
  apt-get install -y -t bookworm-backports mesa-vulkan-drivers
  apt-get install -y chromium python3 python3-torch python3-numpy python3-onnx
MSG
  exit 1
fi

if [ ! -f "$backports" ]; then
  # The first stanza of debian.sources (its URIs and Signed-By as they are), with the backports suite.
  src=/etc/apt/sources.list.d/debian.sources
  uris=$(awk '/^URIs:/{print; exit}' "$src" 2>/dev/null || true)
  signed=$(awk '/^Signed-By:/{print; exit}' "$src" 2>/dev/null || true)
  [ -n "$uris" ] || uris="URIs: http://deb.debian.org/debian"
  [ -n "$signed" ] || signed="Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  printf 'Types: deb\n%s\nSuites: bookworm-backports\nComponents: main\n%s\n' "$uris" "$signed" > "$backports"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
pkgs=()
for n in "${need[@]}"; do
  case $n in
    lavapipe) apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers ;;
    chromium) pkgs+=(chromium) ;;
    python3) pkgs+=(python3) ;;
    torch) pkgs+=(python3-torch python3-numpy) ;;
    python3-onnx) pkgs+=(python3-onnx) ;;
    python) pkgs+=(python3-torch python3-nltk python3-numpy) ;;
  esac
done
[ ${#pkgs[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${pkgs[@]}" fonts-dejavu-core
echo "system packages: installed ${need[*]}"
