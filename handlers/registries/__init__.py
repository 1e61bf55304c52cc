"""Registry backends: each module implements bot.core.registry.Registry for one kind of registry.

oci_layout.py  a directory of OCI image layouts on local disk (the demo, air-gapped copies)
oci.py         any registry speaking the OCI distribution API, over httpx (auth.py: Basic/Bearer)
acr.py         Azure Container Registry through the Azure SDKs (data plane and ARM)
"""
