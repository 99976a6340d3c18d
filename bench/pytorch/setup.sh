#!/usr/bin/env bash
# bench/pytorch/setup.sh: make sure a python3 with torch (and OpenBLAS under it) exists for
# the PyTorch baseline (md4.py). On a fresh Debian/Ubuntu machine or in CI it installs
# python3-torch, python3-numpy and libopenblas0-pthread with apt (as root, or through sudo
# when available); elsewhere it says what to install. Exit status 0 when torch imports.
set -u
py=${MDM_PYTHON:-/usr/bin/python3}
if "$py" -c 'import torch, numpy' 2>/dev/null; then
  "$py" -c 'import torch; print("torch", torch.__version__, "in", __import__("sys").executable)'
  exit 0
fi
pkgs="python3-torch python3-numpy libopenblas0-pthread"
if command -v apt-get >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "setup.sh: torch is missing; install it with: sudo apt-get install -y $pkgs" >&2
      exit 1
    fi
  fi
  echo "setup.sh: installing $pkgs with apt-get" >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $pkgs >&2 || exit 1
  exec "$py" -c 'import torch; print("torch", torch.__version__)'
fi
echo "setup.sh: torch is missing and there is no apt-get; install PyTorch for $py (or set MDM_PYTHON)" >&2
exit 1
