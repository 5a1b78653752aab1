"""Start-up module of the MLflow container (on PYTHONPATH, mounted from a ConfigMap by MlflowServer).

MLflow 3.17+ advertises presigned multipart transfers in /server-info whenever the artifact
destination is S3. Clients then upload and download straight from the S3 endpoint the *server*
uses: MinIO's in-cluster name behind a private CA, which a user outside the cluster can neither
resolve nor trust, so downloads hang retrying. The platform keeps every artifact transfer on the
authenticated proxied path (`--serve-artifacts`) by reporting both capabilities as off.

Fails closed: if MLflow's internals change, the server refuses to start (instead of silently
advertising presigned transfers again), and the upgrade is caught by the readiness probe.
"""

import importlib.abc
import importlib.util
import sys

TARGET_MODULE = "mlflow.server.handlers"
TARGET_FUNCTION = "build_server_info_payload"
PROXIED_ONLY = ("multipart_uploads_enabled", "multipart_downloads_enabled")


def _proxied_only(build):
    def build_server_info_payload(*args, **kwargs):
        payload = build(*args, **kwargs)
        missing = [flag for flag in PROXIED_ONLY if flag not in payload]
        if missing:
            raise RuntimeError(f"mlflow-platform start-up module: /server-info lacks {missing}; update it")
        payload.update(dict.fromkeys(PROXIED_ONLY, False))
        return payload

    return build_server_info_payload


class _PatchHandlers(importlib.abc.MetaPathFinder):
    """Wraps the payload builder right after mlflow.server.handlers executes, before anyone imports it."""

    def find_spec(self, name, path, target=None):
        if name != TARGET_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            original = getattr(module, TARGET_FUNCTION, None)
            if original is None:
                raise ImportError(f"mlflow-platform start-up module: {TARGET_MODULE}.{TARGET_FUNCTION} is gone; update it")
            setattr(module, TARGET_FUNCTION, _proxied_only(original))

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchHandlers())
