#!/usr/bin/env bash
# Make Fashion-MNIST available to tinynet. If tinynet already finds it (TINYNET_DATA, the
# user cache or /usr/share/datasets), do nothing. Otherwise install Debian's
# dataset-fashion-mnist package when apt-get can be used (root, or sudo without a
# password); failing that, tinynet downloads the official files on first use.
set -u
py=${1:-python3}
if "$py" -c "import sys, tinynet.data as d; sys.exit(d.find('fashion-mnist','train') is None or d.find('fashion-mnist','test') is None)"; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
  if [ "$sudo" != none ]; then
    echo "Installing Fashion-MNIST from Debian (apt-get install dataset-fashion-mnist)..."
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null && exit 0
    echo "apt-get could not install dataset-fashion-mnist; tinynet will download the files."
  fi
fi
echo "Fashion-MNIST not found locally; tinynet will download it on first use."
