#!/usr/bin/env bash
# Install the system packages coinfer needs to build and test, only those that are missing.
# Debian/Ubuntu (apt-get); uses sudo when not root. Used by scripts/demo.sh and .ci/run.
set -euo pipefail

packages=(
  # FFmpeg libraries and headers for ffmpeg-next (all seven with its default features)
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavdevice-dev libavfilter-dev
  # bindgen (ffmpeg-sys-next) needs libclang; pkg-config finds the FFmpeg libraries
  clang libclang-dev pkg-config
  # the ffmpeg CLI: tests make their clips with it, and it is the documented way to pipe a camera
  ffmpeg
  # OCR: the overlay tests read the drawn label back from the video (tests/visual_overlay.rs)
  tesseract-ocr
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "install-deps: missing ${missing[*]}, and there is no apt-get here; install them by hand" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo not found; install a Rust toolchain (1.89 or newer) first" >&2
  exit 1
fi
