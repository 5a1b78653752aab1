def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "integration: starts real PostgreSQL/S3/MLflow processes on loopback (slow, needs the "
        "PostgreSQL 15 server binaries and the project venv)",
    )
