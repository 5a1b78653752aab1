"""Auto-installs the Kubernetes DNS shim (see k8s_dns_shim.py) at interpreter start-up when this
directory is on PYTHONPATH and K8S_DNS_SHIM is set. Any other sitecustomize further down
sys.path is chained so we never hide one."""

import os as _os
import sys as _sys

_here = _os.path.dirname(_os.path.abspath(__file__))
if _here not in _sys.path:
    _sys.path.insert(0, _here)

import k8s_dns_shim as _shim  # noqa: E402

_shim.install_from_env()


def _chain_other_sitecustomize():
    import importlib.util

    for entry in _sys.path:
        if not entry or _os.path.abspath(entry) == _here:
            continue
        candidate = _os.path.join(entry, "sitecustomize.py")
        if _os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_chained_sitecustomize", candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return


_chain_other_sitecustomize()
