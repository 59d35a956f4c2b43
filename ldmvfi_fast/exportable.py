"""Moved to :mod:`ldmvfi_fast.export.specs`; kept so that existing imports work."""
from .export.specs import DecoderExport, EncoderExport, ExportSpec, UNetStepExport, export_specs  # noqa: F401
