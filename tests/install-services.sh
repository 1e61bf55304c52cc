#!/usr/bin/env bash
# Install the real servers the tests run against, once: Debian's docker-registry (CNCF
# distribution 2.8), skopeo and hyperfine (peers measured on it), PostgreSQL, and Azurite 3.35 (the last
# release that runs on Node 20).
# Called by `make test` and .ci/run; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the registry, and the peers the bench measures against on it (skopeo,
# hyperfine), and PostgreSQL (the server store's tests start their own cluster from its
# binaries in /usr/lib/postgresql/VERSION/bin). Only the missing ones are installed.
missing=()
for pkg in docker-registry skopeo hyperfine; do
  command -v "$pkg" >/dev/null || missing+=("$pkg")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install-services: please install ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

if [ ! -x .cache/azurite/node_modules/.bin/azurite-blob ]; then
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
      echo "install-services: please install Node.js and npm" >&2
      exit 1
    fi
  fi
  mkdir -p .cache/azurite
  npm install --prefix .cache/azurite --no-audit --no-fund --loglevel=error azurite@3.35 >/dev/null
fi
