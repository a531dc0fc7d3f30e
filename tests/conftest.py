"""Shared fixtures. Each area keeps its fixtures in its own module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.atlas_sandbox",
    "tests.fixtures.gotransverse_sandbox",
    "tests.fixtures.payment_case",
]
