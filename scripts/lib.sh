# shellcheck shell=bash
# Shared helpers for scripts/test and scripts/demo. Source it, don't run it.
#
# After sourcing: the cwd is the repository root, $ROOT is its path and
# $VENV / $VPY point at the project's virtualenv and its python.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

VENV="$ROOT/.venv"
VPY="$VENV/bin/python"

export PIP_DISABLE_PIP_VERSION_CHECK=1
# Playwright's Python package must never fetch its own browser: the tests use
# the system Chromium (BILLHIVE_CHROMIUM).
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

say() { printf '== %s\n' "$*"; }
warn() { printf '!! %s\n' "$*" >&2; }
die() {
    warn "$@"
    exit 1
}

# Create .venv with `python3 -m venv` unless a working one is already there.
ensure_venv() {
    if [[ -x "$VPY" ]] && "$VPY" -c '' 2>/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 ||
        die "python3 not found; install Python >= 3.11 first"
    if [[ -e "$VENV" ]]; then
        warn ".venv exists but its python does not run; recreating it"
        rm -rf "$VENV"
    fi
    say "creating virtualenv .venv ($(python3 --version 2>&1))"
    python3 -m venv "$VENV" ||
        die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
}

# pip_install LABEL PIP-ARGS...
# Runs `pip install -q PIP-ARGS...` in the venv, unless the same install was
# already done against the same packaging metadata (stamp under .venv), which
# keeps warm runs fast. BILLHIVE_FORCE_INSTALL=1 always reinstalls.
pip_install() {
    local label="$1"
    shift
    local stamp="$VENV/.billhive-installed-$label"
    local key
    key="$(
        {
            printf '%s\n' "$*"
            "$VPY" -c 'import sys; print(sys.version)'
            local f
            for f in pyproject.toml setup.cfg setup.py \
                examples/*/pyproject.toml examples/*/setup.cfg examples/*/setup.py; do
                [[ -f "$f" ]] || continue
                printf '%s\n' "$f"
                cat "$f"
            done
        } | sha256sum | cut -d' ' -f1
    )"
    if [[ "${BILLHIVE_FORCE_INSTALL:-0}" != 1 && -f "$stamp" &&
        "$(cat "$stamp")" == "$key" ]] &&
        "$VPY" -c 'import importlib.metadata as m; m.distribution("billhive")' 2>/dev/null; then
        say "python packages up to date ($label; BILLHIVE_FORCE_INSTALL=1 to reinstall)"
        return 0
    fi
    say "installing python packages ($label): pip install $*"
    rm -f "$stamp"
    "$VPY" -m pip install -q "$@"
    printf '%s\n' "$key" >"$stamp"
}

# Print a TCP port on 127.0.0.1 that is free right now.
free_port() {
    "$VPY" - <<'EOF'
import socket

s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}
