#!/usr/bin/env bash
# Create the virtual environment that runs bqemulator (the BigQuery emulator the tests write to).
#
# bqemulator pins DuckDB 1.5.5 while the project uses a current DuckDB, so it lives in a venv of
# its own. Offline it also needs the spatial extension as a wheel (else it tries to download it;
# ../../../shared/FACTS.md). Tests find the venv through $MAMMOBEAM_BQEMULATOR_VENV, else
# <repo>/.venv-bqemu (tests/bqemu.py).
#
# usage: infra/ci/bqemulator-venv.sh [VENV_DIR]     (default: $MAMMOBEAM_BQEMULATOR_VENV or .venv-bqemu)
# Idempotent: an existing venv with the right versions is kept.
set -euo pipefail

VENV="${1:-${MAMMOBEAM_BQEMULATOR_VENV:-.venv-bqemu}}"
PYTHON="${PYTHON:-python3.11}"
# numpy: bqemulator registers numpy UDFs at start-up but does not declare it.
PINS=(bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 duckdb-extensions numpy)

if ! { [ -x "$VENV/bin/bqemulator" ] && "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
m.version("numpy")
sys.exit(0 if m.version("duckdb") == "1.5.5" and m.version("bqemulator") == "1.4.0" else 1)
PY
}; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
  "$VENV/bin/python" -m pip check
fi

# bqemulator runs `INSTALL spatial; LOAD spatial` at start-up. Installing the wheel's copy into
# DuckDB's extension folder (~/.duckdb/extensions/v1.5.5/...) first makes that INSTALL a no-op
# instead of a download.
"$VENV/bin/python" - <<'PY'
import duckdb
from duckdb_extensions import import_extension
con = duckdb.connect()
import_extension("spatial", con=con)
con.execute("LOAD spatial")
PY
echo "bqemulator venv ready: $VENV ($("$VENV/bin/bqemulator" --version 2>/dev/null || echo bqemulator 1.4.0))"
