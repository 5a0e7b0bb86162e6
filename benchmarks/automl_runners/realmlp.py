"""Neural baseline: RealMLP with its tuned defaults (pytabkit RealMLP_TD_*), on CPU (the budget does not apply).

Optional: run only when named (--systems realmlp); its venv holds PyTorch. Protocol: _shared/automl_protocol.py.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != HERE] + [os.path.join(HERE, "_shared")]

import neural  # noqa: E402
from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor  # noqa: E402

if __name__ == "__main__":
    neural.run(__doc__.splitlines()[0], RealMLP_TD_Classifier, RealMLP_TD_Regressor)
