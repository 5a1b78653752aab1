"""Auto-installs the Kubernetes DNS shim (see k8s_dns_shim.py) at interpreter start-up when this
directory is on PYTHONPATH and K8S_DNS_SHIM is set.

Python imports only the *first* ``sitecustomize`` on ``sys.path``. A container under test may
bring its own (the platform mounts ``sitecustomize.py`` from a ConfigMap and puts that directory
on ``PYTHONPATH``), and the shim must never hide it. So, after installing itself, this module
chain-loads the next ``sitecustomize.py`` on ``sys.path`` (skipping its own directory) and
executes it *as* the ``sitecustomize`` module: same module name, and it replaces this one in
``sys.modules`` -- exactly what the process would have imported without the shim. A failure in
the chained module propagates, so ``site`` reports it as it would without the shim.

``k8s_dns_shim.chained_sitecustomize`` records the path of the chained file (or None).
"""

import os as _os
import sys as _sys

_here = _os.path.dirname(_os.path.realpath(__file__))
if _here not in _sys.path:
    _sys.path.insert(0, _here)

import k8s_dns_shim as _shim  # noqa: E402

_shim.install_from_env()
_shim.chained_sitecustomize = None


def _next_sitecustomize():
    """Path of the first sitecustomize.py on sys.path after this one, or None."""
    own = _os.path.realpath(__file__)
    for entry in _sys.path:
        if not entry or not _os.path.isdir(entry) or _os.path.realpath(entry) == _here:
            continue
        candidate = _os.path.join(entry, "sitecustomize.py")
        if _os.path.isfile(candidate) and _os.path.realpath(candidate) != own:
            return candidate
    return None


def _chain_next_sitecustomize():
    import importlib.util

    path = _next_sitecustomize()
    if path is None:
        return
    spec = importlib.util.spec_from_file_location("sitecustomize", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    shim_module = _sys.modules.get("sitecustomize")
    # While it runs (and afterwards: the import system returns what sys.modules holds once this
    # module finished executing) the chained file *is* the sitecustomize module.
    _sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if shim_module is not None:
            _sys.modules["sitecustomize"] = shim_module
        raise
    _shim.chained_sitecustomize = path


_chain_next_sitecustomize()
