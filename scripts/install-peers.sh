#!/usr/bin/env bash
# Installs the real peers the tests talk to (Debian packages): dcmtk, Orthanc + DICOMweb plugin,
# Chromium + driver, PostgreSQL; and Triton Inference Server (the nvidia-pytriton wheel's
# tritonserver, into the project's virtualenv). Best effort: without root, apt or the package index
# the tests that need a peer are skipped with the reason, never reported as passed.
set -u
# Triton: only its server binary and Python-backend stubs are used (serving/replica/triton/server.py). The
# wheel pins numpy<2, which its Python API needs and we do not use, so it goes in without its
# dependencies (version pinned in requirements.lock).
VENV_PY="${VENV:-.venv}/bin/python"
if [ -x "$VENV_PY" ] && ! "$VENV_PY" -c 'import importlib.util,sys; sys.exit(importlib.util.find_spec("pytriton") is None)' 2>/dev/null; then
  triton_pin=$(grep -E '^nvidia-pytriton==' requirements.lock || echo nvidia-pytriton)
  echo "[peers] installing $triton_pin (tritonserver) ..."
  "$VENV_PY" -m pip install -q --no-deps "$triton_pin" || echo "[peers] could not install $triton_pin; Triton tests will be skipped"
fi
want=(dcmtk orthanc orthanc-dicomweb chromium chromium-driver postgresql)
missing=()
for pkg in "${want[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[peers] all present: ${want[*]}"
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "[peers] cannot install ${missing[*]} (need root + apt-get); tests needing them will be skipped"
  exit 0
fi
echo "[peers] installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || echo "[peers] apt-get update failed"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || echo "[peers] apt-get install failed for some of: ${missing[*]}"
# Debian starts services on install where it can; the tests start their own instances on loopback ports.
for svc in orthanc postgresql; do
  command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1 || true
done
exit 0
