"""Stateful HTTP fakes of ATLAS ETRM and the Gotransverse AR Ledger, for the demo, tests and
benchmarks. Plain WSGI apps (werkzeug), served on loopback by integration.sandbox.server."""
