from tests.cli.support import api, ha  # noqa: F401 - fixtures for every CLI test
