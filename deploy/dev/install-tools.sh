#!/usr/bin/env bash
# Installs the standard tools the test suite checks our artefacts with (xmllint, xmlsec1, openssl) and
# Debian's Chromium for the browser tests (tests/e2e, driven by Playwright: its own browser download is not used),
# when they are missing and this machine can install Debian packages.
set -euo pipefail
missing=()
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-liberation)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Instalando herramientas: ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "Faltan herramientas (${missing[*]}); instálelas con el gestor de paquetes del sistema." >&2
fi
