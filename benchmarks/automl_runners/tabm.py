"""Neural baseline: TabM with its defaults (pytabkit TabM_D_*), on CPU (the budget does not apply).

Optional: run only when named (--systems tabm); its venv holds PyTorch. Protocol: _shared/automl_protocol.py.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != HERE] + [os.path.join(HERE, "_shared")]

import neural  # noqa: E402
from pytabkit import TabM_D_Classifier, TabM_D_Regressor  # noqa: E402

if __name__ == "__main__":
    neural.run(__doc__.splitlines()[0], TabM_D_Classifier, TabM_D_Regressor)
