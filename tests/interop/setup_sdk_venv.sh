#!/usr/bin/env bash
# Installs the official SageMaker bidi client (aws-sdk-sagemaker-runtime-http2 0.12.0 with awscrt)
# into .venv-sdk312 (Python >= 3.12 from pyenv), idempotently. tests/test_gateway_interop.py runs
# the scripts beside this file with that interpreter against the gateway.
#
# Exits non-zero with a clear message when it cannot (no Python 3.12, no PyPI): in CI the interop
# test then FAILS, it does not skip. Override the interpreter with SDK_PY312=/path/to/python3.12.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIDE=.venv-sdk312
PKG='aws-sdk-sagemaker-runtime-http2[awscrt]==0.12.0'
die() { echo "setup_sdk_venv: $*" >&2; exit 1; }

if [ -x "$SIDE/bin/python" ] && "$SIDE/bin/python" - <<'PY' 2>/dev/null; then exit 0; fi
import importlib.metadata as m, sys
assert sys.version_info >= (3, 12)
assert m.version("aws-sdk-sagemaker-runtime-http2") == "0.12.0"
import awscrt, aws_sdk_sagemaker_runtime_http2.client, smithy_http.aio.crt  # noqa: F401
PY

py312="${SDK_PY312:-}"
if [ -z "$py312" ] && command -v pyenv >/dev/null 2>&1; then
    for v in 3.12.1 3.12; do
        cand="$(pyenv root)/versions/$v/bin/python"
        if [ -x "$cand" ]; then py312="$cand"; break; fi
    done
fi
if [ -z "$py312" ] && command -v python3.12 >/dev/null 2>&1; then py312="$(command -v python3.12)"; fi
[ -n "$py312" ] || die "no Python 3.12 found (pyenv 3.12.1, python3.12 or SDK_PY312)"

echo "setup_sdk_venv: creating $SIDE from $py312" >&2
rm -rf "$SIDE"
timeout 120 "$py312" -m venv "$SIDE" || die "could not create $SIDE with $py312"
timeout 600 "$SIDE/bin/pip" install --quiet --disable-pip-version-check "$PKG" \
    || die "pip install '$PKG' failed (is PyPI reachable?)"
"$SIDE/bin/python" -c 'import awscrt, aws_sdk_sagemaker_runtime_http2.client, smithy_http.aio.crt' \
    || die "$SIDE: the client does not import"
echo "setup_sdk_venv: $SIDE ready" >&2
