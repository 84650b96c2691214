#!/usr/bin/env bash
# Installs Autobahn|Testsuite (Python 2.7 only) into .venv-autobahn, idempotently (~65 s).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv-autobahn/bin/wstest ]; then exit 0; fi
py27="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/2.7.18/bin/python"
[ -x "$py27" ] || { echo "Autobahn needs Python 2.7 (pyenv 2.7.18); not found at $py27" >&2; exit 1; }
python3 -m venv .venv-tools
.venv-tools/bin/pip install --quiet "virtualenv<20.22"    # the last line that creates py2.7 envs
.venv-tools/bin/virtualenv --quiet -p "$py27" .venv-autobahn
.venv-autobahn/bin/pip install --quiet --disable-pip-version-check autobahntestsuite==25.10.1 2>&1 \
    | grep -v DEPRECATION || true
.venv-autobahn/bin/wstest --help > /dev/null
