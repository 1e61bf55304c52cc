#!/usr/bin/env bash
# Install the real servers the tests run against, once: Debian's docker-registry (CNCF
# distribution 2.8) and Azurite 3.35 (the last release that runs on Node 20).
# Called by `make test` and .ci/run; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-registry >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
  else
    echo "install-services: please install docker-registry (apt-get install docker-registry)" >&2
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
