"""Other video frame interpolation methods, measured beside LDMVFI by the benchmark scripts.

``rife``: RIFE 4.25-style IFNet (Practical-RIFE 4.2x), written here from the published
architecture, loading Practical-RIFE ``flownet.pkl`` weights strictly.
"""
