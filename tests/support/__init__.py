"""Support code for the tests, one subject a module; the tests themselves are the ``test_*.py``
files above."""
