"""mlgate: a tracked AutoML pipeline on MLflow and DVC, gated by the model registry."""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Models registered before the modules moved into packages pickled their classes under the old
# module names (``mlgate.features.InputGuard``); a registered champion must still load and serve.
_MOVED = {
    "mlgate.features": "mlgate.modelling.features",
    "mlgate.models": "mlgate.modelling.models",
    "mlgate.compiled": "mlgate.modelling.compiled",
    "mlgate.ensemble": "mlgate.modelling.ensemble",
    "mlgate.metrics": "mlgate.modelling.metrics",
    "mlgate.data": "mlgate.modelling.data",
    "mlgate.schema": "mlgate.modelling.schema",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as the module it became (the same object, so classes compare equal)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in _MOVED else None

    def create_module(self, spec):
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module):
        pass


sys.meta_path.append(_MovedModules())
