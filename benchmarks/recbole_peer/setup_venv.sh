#!/usr/bin/env bash
# Creates the RecBole 1.2.1 venv for the peer benchmark, OUTSIDE the repo (default ../recbole-venv).
#   bash benchmarks/recbole_peer/setup_venv.sh [VENV_DIR]
# RecBole pins ray<=2.6.3 and predates numpy 2 / pandas 3 / setuptools 81 (pkg_resources) / the
# torch>=2.6 weights_only default, hence the caps below (and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 at run time).
set -euo pipefail
venv=${1:-../recbole-venv}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet)
"${pip[@]}" --upgrade pip "setuptools<81" wheel
# torch first, pinned: the machine's pip config caps torch and a local CPU wheel exists; a bare `torch`
# could resolve to a CUDA build.
"${pip[@]}" "torch==2.13.0"
caps=("setuptools<81" "numpy<2" "pandas<3" "scipy<1.14" "scikit-learn<1.6" "torch==2.13.0")
if ! "${pip[@]}" "recbole==1.2.1" "${caps[@]}"; then
    # ray<=2.6.3 may have no wheel for this Python: ray is imported only by recbole.quick_start
    # (hyper-parameter tuning), which run_recbole.py does not use. Install recbole without deps and
    # its runtime deps by hand (from its METADATA), ray left out.
    echo "setup_venv: full install failed; installing recbole --no-deps and its runtime deps without ray" >&2
    "${pip[@]}" --no-deps "recbole==1.2.1"
    "${pip[@]}" "${caps[@]}" "tqdm>=4.48.2" "colorlog==4.7.2" "colorama==0.4.4" "pyyaml>=5.1.0" \
        "tensorboard>=2.5.0" "thop>=0.1.1.post2207130030" "tabulate>=0.8.10" "plotly>=4.0.0" \
        "texttable>=0.9.0" "psutil>=5.9.0"
fi
"$venv/bin/python" -c "import recbole, torch; print('recbole', recbole.__version__, 'torch', torch.__version__)"
"$venv/bin/python" -c "from recbole.config import Config; from recbole.data import create_dataset; \
from recbole.model.sequential_recommender import SASRec; from recbole.trainer import Trainer; print('recbole imports ok')"
