"""Real servers the test session starts on 127.0.0.1 (loaded as pytest plugins from tests/conftest.py)."""
