"""metabase-provisioner: Metabase-as-code for demo and analytics teams."""

__version__ = "0.1.0"
