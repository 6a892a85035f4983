#!/usr/bin/env bash
# Set up .venv with the project, its test and export extras, and the npm packages the export tests run
# TensorFlow.js packages with; with --test, then run the whole test suite.
#
#   ./scripts/dev-setup.sh                 # create/refresh .venv (editable install + '.[test,export]', tests/tfjs)
#   ./scripts/dev-setup.sh --test [ARGS]   # same, then: .venv/bin/python -m pytest [ARGS]
#
# Environment: PYTHON (interpreter to build the venv with, default python3, needs >= 3.11),
# OCV_TEST_DATABASE_URL (run the suite on PostgreSQL instead of SQLite; see .ci/run).
# This is the command README.md and .ci/run both use, so the two cannot drift.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

run_tests=0
if [[ ${1:-} == "--test" ]]; then
    run_tests=1
    shift
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--test [pytest args...]]" >&2
    exit 2
fi

python=${PYTHON:-python3}
venv=$root/.venv
stamp=$venv/.ocv-setup-stamp

if ! command -v "$python" >/dev/null 2>&1; then
    echo "dev-setup: '$python' not found; install Python >= 3.11 (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "dev-setup: $("$python" --version 2>&1) is too old; the project needs Python >= 3.11 (set PYTHON=...)" >&2
    exit 1
fi

# A venv whose interpreter no longer runs (moved, or its Python removed) is rebuilt.
if [[ -e $venv ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "dev-setup: $venv is broken; recreating it"
    rm -rf "$venv"
fi
if [[ ! -x $venv/bin/python ]]; then
    echo "dev-setup: creating $venv with $("$python" --version 2>&1)"
    if ! "$python" -m venv "$venv"; then
        echo "dev-setup: '$python -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

# Reinstall only when pyproject.toml (the dependency pins) or the interpreter changed.
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$venv/bin/python" -c 'import sys; print(sys.version)' | head -n1)"
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]] || ! "$venv/bin/python" -c 'import opencustomvision, pytest, onnx2tf, tensorflowjs' >/dev/null 2>&1; then
    echo "dev-setup: installing the project with its test and export extras into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,export]"
    # Converters whose metadata pins versions older than the project's (they run with these): no dependencies.
    mapfile -t nodeps < <("$venv/bin/python" -c 'import tomllib; [print(p) for p in tomllib.load(open("pyproject.toml", "rb"))["tool"]["opencustomvision"]["export-without-dependencies"]]')
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${nodeps[@]}"
    printf '%s\n' "$want" >"$stamp"
fi
# At install, once: the backbones' ONNX exports, which every new data folder then links instead of exporting.
"$venv/bin/ocv" prepare >/dev/null || echo "dev-setup: 'ocv prepare' failed; the service will export the backbones when it starts" >&2

# TensorFlow.js exports are checked with node and @tensorflow/tfjs (tests/tfjs, from its package-lock.json).
tfjs=$root/tests/tfjs
tfjs_stamp=$tfjs/node_modules/.ocv-lock-stamp
if command -v npm >/dev/null 2>&1; then
    lock="$(sha256sum "$tfjs/package-lock.json" | cut -d' ' -f1)"
    if [[ ! -f $tfjs_stamp || $(cat "$tfjs_stamp") != "$lock" ]]; then
        echo "dev-setup: installing tests/tfjs (npm ci)"
        npm ci --prefix "$tfjs" --no-audit --no-fund --loglevel=error
        printf '%s\n' "$lock" >"$tfjs_stamp"
    fi
else
    echo "dev-setup: npm not found: the TensorFlow.js export checks will be skipped (Debian: apt-get install nodejs npm)" >&2
fi

if [[ $run_tests -eq 0 ]]; then
    echo "dev-setup: ready. Run the service: .venv/bin/ocv serve    Run the tests: ./scripts/dev-setup.sh --test"
    exit 0
fi

if [[ -n ${OCV_TEST_DATABASE_URL:-} ]]; then
    echo "dev-setup: test database: ${OCV_TEST_DATABASE_URL%%://*}://… (OCV_TEST_DATABASE_URL)"
else
    echo "dev-setup: test database: SQLite in a temporary folder"
fi
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "dev-setup: pytest collected no tests (exit code 5): treated as a failure" >&2
fi
exit "$rc"
