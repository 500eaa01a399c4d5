"""listener package."""
