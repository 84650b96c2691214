#!/usr/bin/env bash
# Set up the peers that cannot live in .venv, idempotently (make bench calls this every time).
#
# smithy-aws-event-stream (the event-stream codec of the AWS SDK the SageMaker bidi client runs
# on) needs Python >= 3.12, and .venv is 3.11. So: a side venv .venv-bench312 with smithy,
# numpy and OUR extension built for that interpreter, so that ours and smithy are timed in the
# same 3.12 process (benchmarks/run.py runs it as a subprocess and merges its JSON).
#
# Rebuilds our wheel only when the Rust or package sources change (a content hash stamp); builds
# into its own target dir (target/bench312) so it never invalidates the 3.11 build of `make dev`.
# Never fails the benchmark run: without Python 3.12 or PyPI it prints why and exits 0, and
# run.py then reports the smithy peer as skipped.
#
# Override the interpreter with BENCH_PY312=/path/to/python3.12.
set -uo pipefail
cd "$(dirname "$0")/.."

SIDE=.venv-bench312
skip() { echo "setup_peers: $* -- the smithy side run will be skipped" >&2; exit 0; }

py312="${BENCH_PY312:-}"
if [ -z "$py312" ] && command -v pyenv >/dev/null 2>&1; then
    for v in 3.12.1 3.12; do
        cand="$(pyenv root)/versions/$v/bin/python"
        if [ -x "$cand" ]; then py312="$cand"; break; fi
    done
fi
if [ -z "$py312" ] && command -v python3.12 >/dev/null 2>&1; then py312="$(command -v python3.12)"; fi
[ -n "$py312" ] || skip "no Python 3.12 found (set BENCH_PY312)"

if [ ! -x "$SIDE/bin/python" ]; then
    echo "setup_peers: creating $SIDE from $py312" >&2
    timeout 120 "$py312" -m venv "$SIDE" || skip "could not create $SIDE"
fi
side_py="$SIDE/bin/python"
"$side_py" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null \
    || skip "$SIDE is not Python >= 3.12"

if ! "$side_py" -c 'import smithy_aws_event_stream, numpy' 2>/dev/null; then
    echo "setup_peers: installing smithy-aws-event-stream and numpy into $SIDE" >&2
    timeout 300 "$side_py" -m pip install --quiet --disable-pip-version-check \
        'smithy-aws-event-stream>=0.3' 'numpy>=1.26' || skip "pip install failed (offline?)"
fi

# Our extension for 3.12: rebuild when the sources that go into the wheel change.
src_hash="$(
    { find rust/src -type f -name '*.rs'; ls Cargo.toml Cargo.lock rust/Cargo.toml pyproject.toml \
        python/sagebidi_perf/*.py python/sagebidi_perf/*.pyi; } 2>/dev/null \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
)"
stamp="$SIDE/.ours-$src_hash"
if [ ! -e "$stamp" ] || ! "$side_py" -c 'import sagebidi_perf._native' 2>/dev/null; then
    echo "setup_peers: building our extension for $("$side_py" -V 2>&1) (cached in target/bench312)" >&2
    rm -rf target/wheels-bench312
    timeout 1200 .venv/bin/maturin build --release --quiet -i "$side_py" \
        -o target/wheels-bench312 --target-dir target/bench312 \
        || skip "maturin build for $side_py failed"
    wheel="$(ls -t target/wheels-bench312/*.whl 2>/dev/null | head -n 1)"
    [ -n "$wheel" ] || skip "no wheel produced"
    # --no-deps: the codec benchmark needs numpy only (installed above), not the runtime deps.
    timeout 300 "$side_py" -m pip install --quiet --disable-pip-version-check --force-reinstall \
        --no-deps "$wheel" || skip "installing $wheel failed"
    rm -f "$SIDE"/.ours-*
    touch "$stamp"
fi
echo "setup_peers: $SIDE ready ($("$side_py" -V 2>&1), smithy-aws-event-stream $("$side_py" -c \
    'from importlib.metadata import version; print(version("smithy-aws-event-stream"))'))" >&2
