#!/usr/bin/env bash
# Makes sure a Python with dbm.gnu and dbm.ndbm is at hand: `pickleshelf import` reads
# gdbm and ndbm shelves through one, and crates/cli/tests/cli_dbm.rs writes them with
# it. Looks at python3 and /usr/bin/python3 (a pyenv or venv python3 often lacks _gdbm;
# Debian's has it once python3-gdbm is installed); when neither has the modules and
# this runs as root with apt-get, installs python3-gdbm. Quiet when nothing is to do;
# never fails (the tests then skip, or fail under CI, saying why).
set -uo pipefail

has_dbm() {
    command -v "$1" >/dev/null 2>&1 && "$1" -c 'import dbm.gnu, dbm.ndbm' >/dev/null 2>&1
}

for py in python3 /usr/bin/python3; do
    has_dbm "$py" && exit 0
done

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq python3-gdbm >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1
        apt-get install -y -qq python3-gdbm >/dev/null 2>&1
    fi
    has_dbm /usr/bin/python3 && exit 0
fi
echo "note: no Python with dbm.gnu and dbm.ndbm; install python3-gdbm (Debian, Ubuntu) for the gdbm/ndbm import tests" >&2
exit 0
