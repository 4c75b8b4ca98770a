"""Test support: the witness service (``witness.py``) and its ledger checks (``witness_check.py``)."""
