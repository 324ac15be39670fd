"""onshi: load testing and protocol conformance for オンライン資格確認 (online eligibility)."""

__version__ = "0.1.0"
