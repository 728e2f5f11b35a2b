#!/usr/bin/env bash
# Install everything ksmtrace and its tests need on a fresh Debian 12 host, as root.
# Idempotent: packages already present are not reinstalled, the venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-bpfcc      # bcc for /usr/bin/python3 (never the PyPI package named bcc)
  bpftool            # independent oracle for the BTF reader tests
  python3-venv
  tmux               # real-terminal smoke test of the terminal UI
  prometheus         # real Prometheus server for the exporter and dashboard tests
  qemu-system-x86    # real guests for the VM attribution tests
  busybox-static     # the guests' initramfs
  gcc                # compiles the guests' program (ksmtrace/guest/memfill.c) with -static
  libc6-dev          # the static C library for it
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: run as root (apt-get, kernel headers, BPF)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian starts and enables the prometheus service on install; the tests start their own
# server on a free port, so no packaged one may keep running (systemd or sysvinit hosts).
if [[ -d /run/systemd/system ]]; then
  if systemctl is-enabled --quiet prometheus 2>/dev/null || systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
elif [[ -x /etc/init.d/prometheus ]]; then
  if /etc/init.d/prometheus status >/dev/null 2>&1; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
  update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

if [[ ! -x .venv/bin/python ]]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

.venv/bin/ksmtrace headers --install
# The test guests' kernel (apt-get download, unpacked, not installed) and initramfs, cached
# in /var/cache/ksmtrace/guest.
.venv/bin/python -m ksmtrace.vmlab prepare >/dev/null
