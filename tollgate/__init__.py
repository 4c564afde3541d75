"""Tollgate: a gated KFP v2 training pipeline for tabular classification, served by KServe."""

__version__ = "0.1.0"
