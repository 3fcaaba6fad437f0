#!/usr/bin/env bash
# The peer harness's own environment (../shared/bench/README.md): Surprise, LensKit, implicit, pandas 2.
# Kept outside the project's .venv because its pins (pandas 2.3, torch) differ from ours.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/../.venv-peers"
bench="$here/../shared/bench"
test -x "$venv/bin/python" || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet torch==2.13.0
"$venv/bin/pip" install --quiet -r "$bench/requirements.txt"
echo "peer harness Python: $venv/bin/python"
