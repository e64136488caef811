#!/usr/bin/env bash
# Installs the real peers the tests talk to (Debian packages): dcmtk, Orthanc + DICOMweb plugin,
# Chromium + driver, PostgreSQL. Best effort: without root or apt the tests that need a peer are
# skipped with the reason, never reported as passed.
set -u
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
