#!/usr/bin/env bash
# Installs what the server's tests (crates/server/tests) need, when missing:
#   redis-cli and redis-benchmark (Debian's redis-tools), redis-server (scripts/bench-server.sh),
#   the Python packages redis (5 or later), pytest and numpy, and moto's S3 server
#   (moto[server], for the remote tests of the `s3` feature: tests/remote.rs).
# Idempotent and silent when everything is there; called by scripts/test. Needs root (or sudo)
# for apt-get, and pip for the Python packages.
set -euo pipefail

apt_pkgs=()
command -v redis-server >/dev/null 2>&1 || apt_pkgs+=(redis-server)
if ! command -v redis-cli >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    apt_pkgs+=(redis-tools)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        echo "setup-test-deps: installing ${apt_pkgs[*]} with apt-get" >&2
        "${sudo[@]}" apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
    else
        echo "setup-test-deps: no apt-get here; install ${apt_pkgs[*]} by hand" >&2
    fi
fi

if command -v python3 >/dev/null 2>&1; then
    if ! python3 - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
v = m.version("redis")
m.version("pytest")
sys.exit(0 if int(v.split(".")[0]) >= 5 else 1)
PY
    then
        echo "setup-test-deps: installing the Python packages redis and pytest with pip" >&2
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'redis>=5' pytest >/dev/null
    fi
    # numpy, for the numpy array tests (scripts/gen_numpy_pickles.py makes their pickles)
    if ! python3 -c 'import numpy' 2>/dev/null; then
        echo "setup-test-deps: installing numpy with pip" >&2
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore numpy >/dev/null
    fi
    # moto's server: an S3-compatible server on loopback that honours If-None-Match: *.
    if ! python3 -c 'import moto.server, flask, flask_cors' 2>/dev/null; then
        echo "setup-test-deps: installing moto[server] with pip" >&2
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'moto[server]>=5' >/dev/null
    fi
fi
