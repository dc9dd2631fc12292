#!/usr/bin/env bash
# The side environment in which DrizzlePac 3.11's runsinglehap/runmultihap run (bench_svm.py).
#
# drizzlepac 3.11 crashes in its catalog step with photutils 3 (what hapdask needs), so the
# reference runs in a venv that sees the main environment's packages (drizzlepac 3.11, stwcs,
# astropy, ...) but has its own photutils < 3 in front of them. Offline use goes through
# benchmarks/_runsinglehap_offline.py (local reference catalog, network blocked).
#
# Usage: bash benchmarks/setup_drizzlepac_env.sh [VENV]    (default /work/venvs/dp311)
# Isolated variant (no system packages; slower, downloads everything):
#        DP_ISOLATED=1 bash benchmarks/setup_drizzlepac_env.sh [VENV]
set -euo pipefail
VENV=${1:-/work/venvs/dp311}
PY=${PYTHON:-python3}
if [ "${DP_ISOLATED:-0}" = 1 ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install "drizzlepac==3.11.0" "photutils<3"
else
    "$PY" -c "import drizzlepac, sys; v = drizzlepac.__version__; \
sys.exit(0 if v.startswith('3.11') else f'main environment has drizzlepac {v}, want 3.11 \
(pip install -e .[test] first, or DP_ISOLATED=1)')"
    "$PY" -m venv --system-site-packages "$VENV"
    "$VENV/bin/python" -m pip install "photutils<3"
fi
"$VENV/bin/python" - <<'PY'
import drizzlepac, photutils, stwcs
assert drizzlepac.__version__.startswith("3.11"), drizzlepac.__version__
assert int(photutils.__version__.split(".")[0]) < 3, photutils.__version__
from drizzlepac import runsinglehap, runmultihap  # noqa: F401  (imports succeed)
print(f"side environment ready: drizzlepac {drizzlepac.__version__}, "
      f"photutils {photutils.__version__}, stwcs {stwcs.__version__}")
PY
