"""The rendered stack's containers run as real processes on 127.0.0.0/8: no cluster, no container runtime.

services.py starts PostgreSQL, MinIO (engine/bin), `mlflow server` and the rendered Jobs with the
configuration the program renders; operators.py does what the operators would (CloudNativePG's roles
and databases, pulumi-postgresql's grants); wiring.py ties them to one evaluated stack
(tools/mock_engine.py); pyshim/ maps in-cluster names to loopback addresses inside child processes.
Used by the integration tests (tests/integration) and the server benchmark (bench/server).
"""
