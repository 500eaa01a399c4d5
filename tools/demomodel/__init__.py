"""demomodel package."""
