"""Tests of deepline.report."""
